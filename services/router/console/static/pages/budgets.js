/* Budgets: each budget's burn-down (an SVG image drawn by the gateway) against its period, the soft,
   alert and hard lines, the run-out forecast, the alerts raised; for admin and finops also the
   forms that create, change and remove budgets and webhooks (every change is a ledger RPC as the
   signed-in key, so it is audited), the "send test" button and each webhook's delivery log. */
"use strict";
Rationer.page("budgets", async function (root, ctx) {
  const R = Rationer;
  const d = await R.api("GET", "budgets");
  const parts = [R.el("h1", {}, "Budgets")];
  if (!d.budgets.length) parts.push(R.el("p", { class: "muted", id: "empty" }, "No budgets visible to this key."));
  d.budgets.forEach((b, i) => parts.push(section(R, b, i, d.can_edit)));
  if (d.can_edit) {
    parts.push(R.el("h2", {}, "New budget"), budgetForm(R, null, "new-budget"));
    parts.push(R.el("h2", {}, "Org webhooks (alerts of every budget of the org)"),
      hookList(R, d.org_webhooks, "org"), hookForm(R, { org: true }, "new-org-hook"));
  }
  root.replaceChildren(...parts);
});

function section(R, b, i, canEdit) {
  const img = document.createElement("img");  /* same-origin URL built here; an <img> runs nothing */
  img.setAttribute("src", "/console/api/budgets/burndown.svg" + R.query({ id: b.id }));
  img.setAttribute("alt", "Burn-down of " + b.id);
  img.setAttribute("class", "burndown");
  const runsOut = b.runs_out_at ? b.runs_out_at.slice(0, 16).replace("T", " ") + " UTC" : "never at this rate";
  const cards = R.cards([
    { metric: "spent", label: "Spent this period", value: b.text.spent, note: "of " + b.text.hard_limit },
    { metric: "rate", label: "Rate", value: b.text.rate_per_day + "/day", note: "since " + b.rate_since.slice(0, 10) },
    { metric: "runs-out", label: "Runs out", value: runsOut,
      note: b.runs_out_before_period_end ? "before the period ends" : (b.period_end ? "after the period ends" : "lifetime budget") },
    { metric: "lines", label: "Lines", value: "soft " + R.pct(b.soft_fraction),
      note: "alerts at " + b.alert_fractions.map((f) => R.pct(f)).join(", ") },
  ]);
  const out = R.el("section", { class: "budget" + (b.runs_out_before_period_end ? " warn" : ""), "data-budget": b.id,
    id: "budget-" + i },
    R.el("h2", {}, b.scope.kind + " " + b.scope.id + " · " + b.unit + " · " + b.period),
    cards, img,
    R.el("h3", {}, "Alerts this period"),
    b.alerts.length ? R.table([{ key: "time", label: "time", fmt: (a) => a.time.slice(0, 19).replace("T", " ") },
      { key: "kind", label: "kind" }, { key: "fraction", label: "line", num: true, fmt: (a) => R.pct(a.fraction) },
      { key: "text", label: "alert" }], b.alerts, { id: "alerts-" + i, sortKey: "time" })
      : R.el("p", { class: "muted" }, "No alerts raised this period."));
  if (canEdit) {
    out.append(R.el("h3", {}, "Webhooks"), hookList(R, b.webhooks, i), hookForm(R, { budget_id: b.id }, "hook-form-" + i),
      R.el("h3", {}, "Change"), budgetForm(R, b, "edit-" + i), removeButton(R, b, i));
  }
  return out;
}

/* Submit a form's fields as JSON; show the ledger's message on refusal; reload on success unless told. */
function wire(R, form, path, extra, after) {
  const msg = R.el("p", { class: "form-msg", role: "status" });
  form.append(msg);
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    const data = Object.assign(Object.fromEntries(new FormData(form).entries()), extra || {});
    msg.textContent = "Saving…";
    try {
      const res = await R.api("POST", path, data);
      if (after) after(res, msg); else location.reload();
    } catch (err) {
      msg.setAttribute("class", "form-msg error");
      msg.textContent = err.message + (err.status ? " (" + err.status + ")" : "");
    }
  });
  return form;
}

function field(R, label, name, value, attrs) {
  return R.el("label", {}, label + " ", R.el("input", Object.assign({ name: name, value: value }, attrs || {})));
}

function select(R, label, name, options, value) {
  return R.el("label", {}, label + " ", R.el("select", { name: name },
    options.map((o) => R.el("option", { value: o, selected: o === value }, o))));
}

function budgetForm(R, b, id) {
  const usd = !b || b.unit === "usd";
  const limit = b ? String(usd ? b.hard_limit / 1e9 : b.hard_limit) : "";
  const form = R.el("form", { class: "budget-form", id: id },
    field(R, "Scope", "scope", b ? b.scope.kind + ":" + b.scope.id : "", { placeholder: "team:acme/eng", required: true }),
    select(R, "Unit", "unit", ["usd", "tokens"], b ? b.unit : "usd"),
    select(R, "Period", "period", ["monthly", "daily", "lifetime"], b ? b.period : "monthly"),
    field(R, "Hard limit (USD or tokens)", "hard_limit", limit, { required: true }),
    field(R, "Soft fraction", "soft_fraction", b ? String(b.soft_fraction) : "", { placeholder: "0.8" }),
    field(R, "Alert lines", "alert_fractions", b ? b.alert_fractions.join(", ") : "", { placeholder: "0.5, 0.8, 0.95" }),
    R.el("button", { type: "submit" }, b ? "Save" : "Create"));
  return wire(R, form, "budgets");
}

function removeButton(R, b, i) {
  const form = R.el("form", { class: "remove-budget", id: "remove-" + i },
    R.el("button", { type: "submit" }, "Remove this budget"));
  return wire(R, form, "budgets/remove", { id: b.id });
}

function hookForm(R, target, id) {
  const form = R.el("form", { class: "hook-form", id: id },
    target.org ? field(R, "Org", "org_id", "", { placeholder: "acme", required: true }) : null,
    field(R, "URL", "url", "", { placeholder: "https://hooks.slack.com/services/…", required: true }),
    field(R, "Name", "name", ""), R.el("button", { type: "submit" }, "Add webhook"));
  return wire(R, form, "webhooks", target.org ? {} : { budget_id: target.budget_id }, (res, msg) => {
    msg.replaceChildren("Added " + res.webhook.id + ". Its signing secret, shown only now: ",
      R.el("code", { class: "secret" }, res.secret), " ", R.el("a", { href: location.pathname }, "Done"));
  });
}

function hookList(R, hooks, tag) {
  if (!hooks.length) return R.el("p", { class: "muted" }, "No webhooks.");
  return R.el("ul", { class: "hooks", id: "hooks-" + tag }, hooks.map((w) => {
    const log = R.el("div", { class: "delivery-log" });
    const test = R.el("button", { type: "button", class: "test", "data-hook": w.id }, "Send test");
    const show = R.el("button", { type: "button", class: "log", "data-hook": w.id }, "Delivery log");
    const drop = R.el("button", { type: "button", class: "remove", "data-hook": w.id }, "Remove");
    const act = (fn) => async () => {
      try { await fn(); } catch (err) { log.replaceChildren(R.el("p", { class: "error" }, err.message)); }
    };
    test.addEventListener("click", act(async () => {
      const res = await R.api("POST", "webhooks/test", { webhook_id: w.id });
      const last = res.log[res.log.length - 1] || { status_code: 0, error: "" };
      log.replaceChildren(R.el("p", { class: "test-result", "data-state": res.state },
        "Test " + res.state + ": HTTP " + last.status_code + (last.error ? " " + last.error : "")));
    }));
    show.addEventListener("click", act(async () => {
      const res = await R.api("GET", "webhooks/deliveries", { webhook_id: w.id });
      const rows = [];
      res.deliveries.forEach((dv) => dv.log.forEach((a) => rows.push({ delivery: dv.alert_id || "test",
        state: dv.state, attempt: a.attempt, time: a.time.slice(0, 19).replace("T", " "), status: a.status_code,
        error: a.error })));
      log.replaceChildren(rows.length ? R.table(["delivery", "state", "attempt", "time", "status", "error"].map((k) =>
        ({ key: k, label: k, num: k === "attempt" || k === "status" })), rows, { sortKey: "time" })
        : R.el("p", { class: "muted" }, "Nothing sent yet."));
    }));
    drop.addEventListener("click", act(async () => {
      await R.api("POST", "webhooks/remove", { webhook_id: w.id });
      location.reload();
    }));
    return R.el("li", { "data-hook": w.id }, R.el("code", {}, w.url), w.name ? " " + w.name : "", " ",
      test, " ", show, " ", drop, log);
  }));
}
