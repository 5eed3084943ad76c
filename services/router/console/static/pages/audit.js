/* Audit (admins): who changed what, when, with the before and after; filter by action and period;
   CSV identical to `rationer report audit --format csv`. */
"use strict";
Rationer.page("audit", async function (root, ctx) {
  const R = Rationer;
  const action = ctx.params.get("action") || "";
  const query = { from: ctx.period.from, to: ctx.period.to, action: action };
  const d = await R.api("GET", "audit", query);
  const json = (v) => R.el("pre", { class: "json" }, v === null ? "null" : JSON.stringify(v, null, 1));
  const columns = [{ key: "time", label: "time (UTC)", fmt: (e) => e.time.replace("T", " ").slice(0, 19) },
    { key: "actor", label: "who" }, { key: "action", label: "action" }, { key: "target", label: "target" },
    { key: "before", label: "before", fmt: (e) => json(e.before), sort: (e) => JSON.stringify(e.before) },
    { key: "after", label: "after", fmt: (e) => json(e.after), sort: (e) => JSON.stringify(e.after) }];
  const form = R.el("form", { id: "audit-filter", class: "search" },
    R.el("label", {}, "Action ", R.el("input", { name: "action", value: action, placeholder: "keys.revoke" })),
    R.el("button", { type: "submit" }, "Filter"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    location.assign(location.pathname + R.query({ from: ctx.params.get("from"), to: ctx.params.get("to"),
      action: form.elements["action"].value.trim() }));
  });
  const csv = R.el("a", { class: "button", id: "csv", download: true, href: "/console/api/audit.csv" + R.query(query) },
    "Export CSV");
  root.replaceChildren(R.el("h1", {}, "Audit log"), R.el("div", { class: "toolbar" }, form, csv),
    d.entries.length ? R.table(columns, d.entries, { id: "audit", sortKey: "time", sortDir: -1 })
      : R.el("p", { class: "muted", id: "empty" }, "No changes in this period."));
});
