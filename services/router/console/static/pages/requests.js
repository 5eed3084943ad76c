/* Requests: recent calls newest first (time, key, team, tier, model, tokens, cost, savings, cache, latency,
   status), searchable and paged by the ledger's cursor. Prompt text only where the org logs prompts. */
"use strict";
Rationer.page("requests", async function (root, ctx) {
  const R = Rationer;
  const p = ctx.params;
  const FILTERS = ["key", "team", "org", "tier", "model", "status", "cache", "page_size"];
  const query = { from: ctx.period.from, to: ctx.period.to, cursor: p.get("cursor") || "" };
  FILTERS.forEach((f) => { if (p.get(f)) query[f] = p.get(f); });
  const d = await R.api("GET", "requests", query);

  const input = (label, name, attrs) => R.el("label", {}, label + " ",
    R.el("input", Object.assign({ name: name, value: p.get(name) || "", autocomplete: "off" }, attrs || {})));
  const select = (label, name, options) => R.el("label", {}, label + " ", R.el("select", { name: name },
    options.map(([v, text]) => R.el("option", { value: v, selected: (p.get(name) || "") === v }, text))));
  const form = R.el("form", { id: "search", class: "search" },
    input("Key", "key", { placeholder: "k_…" }), input("Team", "team", { placeholder: "acme/eng" }),
    input("Org", "org"), input("Tier", "tier"), input("Model", "model"),
    select("Status", "status", [["", "any"], ["200", "200 ok"], ["499", "499 partial"], ["429", "429 denied"]]),
    select("Cache", "cache", [["", "any"], ["hit", "hit"], ["miss", "miss"]]),
    input("Per page", "page_size", { type: "number", min: "1", max: "500", placeholder: "50" }),
    R.el("button", { type: "submit", id: "go" }, "Search"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const next = { from: p.get("from"), to: p.get("to") };
    FILTERS.forEach((f) => { const v = form.elements[f].value.trim(); if (v) next[f] = v; });
    location.assign(location.pathname + R.query(next));
  });

  const int = (k, label) => ({ key: k, label: label, num: true, fmt: (r) => R.int(r[k]) });
  const columns = [{ key: "time", label: "time (UTC)", fmt: (r) => r.time.replace("T", " ").slice(0, 19) },
    { key: "key_id", label: "key" }, { key: "team_id", label: "team" }, { key: "tier", label: "tier" },
    { key: "model", label: "model" }, int("tokens", "tokens"),
    { key: "cost_nano_usd", label: "cost", num: true, fmt: (r) => R.usd(r.cost_usd) },
    { key: "savings_nano_usd", label: "savings", num: true, fmt: (r) => R.usd(r.savings_usd) },
    { key: "cache", label: "cache" }, int("latency_ms", "latency ms"), { key: "status", label: "status", num: true },
    { key: "kind", label: "kind" }];
  if (d.requests.some((r) => r.prompt)) {
    columns.push({ key: "prompt", label: "prompt", fmt: (r) => R.el("span", { class: "prompt",
      title: r.prompt_truncated ? "truncated" : null }, r.prompt + (r.prompt_truncated ? " …" : "")) });
  }
  const here = (extra) => location.pathname + R.query(Object.assign({ from: p.get("from"), to: p.get("to") },
    Object.fromEntries(FILTERS.filter((f) => p.get(f)).map((f) => [f, p.get(f)])), extra));
  const nav = R.el("div", { class: "toolbar" },
    p.get("cursor") ? R.el("a", { href: here({}), id: "newest" }, "« Newest") : null, " ",
    d.next_cursor ? R.el("a", { href: here({ cursor: d.next_cursor }), id: "next" }, "Older »") : null);
  root.replaceChildren(R.el("h1", {}, "Requests"), form,
    d.requests.length ? R.table(columns, d.requests, { id: "requests", sortKey: "time" })
      : R.el("p", { class: "muted", id: "empty" }, "No requests match in this period."),
    nav, R.el("p", { class: "muted" }, "Prompt text is not logged unless an admin turns prompt logging on "
      + "for the org (rationer orgs prompt-logging ORG --on)."));
});
