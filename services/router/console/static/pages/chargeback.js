/* Chargeback: spend per org → team → user → key (click a row), per project, model, tier or day;
   sortable columns; CSV identical to `rationer report chargeback --format csv`. */
"use strict";
Rationer.page("chargeback", async function (root, ctx) {
  const R = Rationer;
  const by = ctx.params.get("by") || "team";
  const scope = ctx.params.get("scope") || "";
  const up = ctx.params.getAll("up");
  const query = { from: ctx.period.from, to: ctx.period.to, by: by, scope: scope };
  const d = await R.api("GET", "chargeback", query);
  const here = (params) => location.pathname + R.query(Object.assign({ from: ctx.params.get("from"),
    to: ctx.params.get("to") }, params));

  const picker = R.el("select", { name: "by", id: "by" },
    ["org", "team", "user", "key", "project", "model", "tier", "day"].map((b) =>
      R.el("option", { value: b, selected: b === by }, "by " + b)));
  picker.addEventListener("change", () => location.assign(here({ by: picker.value, scope: scope, up: up })));
  const crumbs = R.el("nav", { class: "crumbs", "aria-label": "Drill-down" },
    R.el("a", { href: here({ by: "org" }) }, "All"));
  up.forEach((s, i) => R.append(crumbs, [" › ", R.el("a", { href: here({ by: drillOf(s), scope: s,
    up: up.slice(0, i) }) }, s)]));
  if (scope) R.append(crumbs, [" › ", R.el("span", { class: "here" }, scope)]);
  const csv = R.el("a", { class: "button", id: "csv", download: true,
    href: "/console/api/chargeback.csv" + R.query(query) }, "Export CSV");

  const usd = (k) => ({ key: k + "_nano_usd", label: k.replace("_", " "), num: true, fmt: (r) => R.usd(r[k + "_usd"]) });
  const int = (k, label) => ({ key: k, label: label, num: true, fmt: (r) => R.int(r[k]) });
  const columns = [{ key: "label", label: by }, int("requests", "requests"), int("tokens", "tokens"),
    int("cache_hits", "cache hits"), usd("spend"), usd("savings"), usd("cache_savings"), usd("routing_savings"),
    usd("overage"), int("denials", "denials"), int("wrong_hits", "wrong hits")];
  const total = Object.assign({ label: "TOTAL" }, d.total);
  const table = R.table(columns, d.rows, {
    id: "chargeback", sortKey: "spend_nano_usd", total: total,
    onRow: d.drill ? (row) => location.assign(here({ by: d.drill, scope: by + ":" + row.id,
      up: scope ? up.concat([scope]) : up })) : null,
    canDrill: (row) => row.id !== "",
  });
  root.replaceChildren(
    R.el("h1", {}, "Chargeback"),
    R.el("div", { class: "toolbar" }, picker, crumbs, csv),
    d.rows.length ? table : R.el("p", { class: "muted", id: "empty" }, "No usage in this period and scope."),
    d.drill ? R.el("p", { class: "muted" }, "Click a row to see its " + d.drill + "s.") : null,
  );

  function drillOf(s) {
    const kind = s.split(":", 1)[0];
    return { org: "team", team: "user", user: "key" }[kind] || "team";
  }
});
