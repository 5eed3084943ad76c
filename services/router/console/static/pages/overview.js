/* Overview: totals, savings split, cache, tier mix, and a daily series of each (GET /console/api/overview). */
"use strict";
Rationer.page("overview", async function (root, ctx) {
  const R = Rationer;
  const d = await R.api("GET", "overview", ctx.period);
  const t = d.total;
  const days = d.daily.map((x) => x.day);
  const money = (v) => "$" + (Number(v) / 1e9).toFixed(2);  /* axis ticks only; figures use the exact text */
  const col = (k) => d.daily.map((x) => x[k]);
  const txt = (k) => d.daily.map((x) => R.usd(x[k]));
  const totalRequests = d.tiers.reduce((a, x) => a + x.requests, 0);
  root.replaceChildren(
    R.el("h1", {}, "Overview"),
    R.cards([
      { metric: "spend", label: "Spend", value: R.usd(t.spend_usd),
        note: t.overage_nano_usd ? "plus " + R.usd(t.overage_usd) + " over hard limits" : "charged to budgets" },
      { metric: "requests", label: "Requests", value: R.int(t.requests),
        note: R.int(t.denials) + " refused by budgets" },
      { metric: "tokens", label: "Tokens", value: R.int(t.tokens),
        note: R.int(t.prompt_tokens) + " prompt + " + R.int(t.completion_tokens) + " completion" },
      { metric: "savings", label: "Saved against all-frontier", value: R.usd(t.savings_usd),
        note: "would have cost " + R.usd(t.counterfactual_usd) },
      { metric: "cache-savings", label: "… from the cache", value: R.usd(t.cache_savings_usd) },
      { metric: "routing-savings", label: "… from routing", value: R.usd(t.routing_savings_usd) },
      { metric: "cache-hit-rate", label: "Cache hit rate", value: R.pct(t.cache_hit_rate),
        note: R.int(t.cache_hits) + " hits" },
      { metric: "wrong-hits", label: "Wrong-hit reports", value: R.int(t.wrong_hits),
        note: "cache answers a key reported wrong" },
    ]),
    R.el("h2", {}, "Routing mix per tier"),
    R.chart.bars("Requests per tier", d.tiers.map((x) => ({ label: x.tier, value: x.requests,
      text: R.int(x.requests) + " (" + R.pct(totalRequests ? x.requests / totalRequests : 0) + ") · " +
        R.usd(x.spend_usd) }))),
    R.table([
      { key: "tier", label: "Tier" },
      { key: "requests", label: "Requests", num: true, fmt: (r) => R.int(r.requests) },
      { key: "tokens", label: "Tokens", num: true, fmt: (r) => R.int(r.tokens) },
      { key: "cache_hits", label: "Cache hits", num: true, fmt: (r) => R.int(r.cache_hits) },
      { key: "spend_nano_usd", label: "Spend", num: true, fmt: (r) => R.usd(r.spend_usd) },
      { key: "savings_nano_usd", label: "Savings", num: true, fmt: (r) => R.usd(r.savings_usd) },
    ], d.tiers, { id: "tiers", sortKey: "requests" }),
    R.el("h2", {}, "Per day (UTC)"),
    R.el("div", { class: "charts" },
      R.chart.line("Spend", days, [{ name: "spend", values: col("spend_nano_usd"), text: txt("spend_usd") }], money),
      R.chart.line("Requests", days, [{ name: "requests", values: col("requests") }]),
      R.chart.line("Tokens", days, [{ name: "tokens", values: col("tokens") }]),
      R.chart.line("Savings", days, [
        { name: "cache", values: col("cache_savings_nano_usd"), text: txt("cache_savings_usd") },
        { name: "routing", values: col("routing_savings_nano_usd"), text: txt("routing_savings_usd") }], money),
      R.chart.line("Cache hit rate", days, [{ name: "hit rate", values: col("cache_hit_rate") }], R.pct),
      R.chart.line("Wrong-hit reports", days, [{ name: "wrong hits", values: col("wrong_hits") }])),
  );
});
