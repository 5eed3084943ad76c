/* Keys: the keys the signed-in key may see (admins and finops all, anyone else its own user's);
   admins create (the secret is shown once), revoke, and set allowed tiers and expiry.
   Every change is a ledger RPC as the signed-in key, so it is checked and audited there. */
"use strict";
Rationer.page("keys", async function (root, ctx) {
  const R = Rationer;
  const revoked = ctx.params.get("revoked") === "1";
  const d = await R.api("GET", "keys", { revoked: revoked ? "1" : "" });
  const notice = R.el("div", { id: "notice" });
  const editor = R.el("div", { id: "editor" });

  const columns = [
    { key: "key_id", label: "key" }, { key: "prefix", label: "prefix", fmt: (k) => k.prefix + "…" },
    { key: "name", label: "name" }, { key: "owner", label: "owner" }, { key: "role", label: "role" },
    { key: "allowed_tiers", label: "tiers", fmt: (k) => k.allowed_tiers.length ? k.allowed_tiers.join(", ") : "every tier",
      sort: (k) => k.allowed_tiers.join(",") },
    { key: "project", label: "project" },
    { key: "expires_at", label: "expires", fmt: (k) => k.expires_at ? k.expires_at.slice(0, 10) : "never" },
    { key: "state", label: "state" },
  ];
  const table = R.table(columns, d.keys, {
    id: "keys", sortKey: "key_id",
    onRow: d.can_manage ? (k) => edit(k) : null, canDrill: (k) => k.state === "active",
  });
  const toggle = R.el("a", { href: location.pathname + (revoked ? "" : "?revoked=1"), id: "show-revoked" },
    revoked ? "Hide revoked keys" : "Show revoked keys");
  root.replaceChildren(
    R.el("h1", {}, "Keys"),
    R.el("p", { class: "muted" }, d.can_manage ? "Click a key to change its tiers or expiry, or revoke it."
      : "Your own keys (read-only). Ask an admin to create, change or revoke keys."),
    notice, R.el("div", { class: "toolbar" }, toggle),
    d.keys.length ? table : R.el("p", { class: "muted", id: "empty" }, "No keys."),
    editor, d.can_manage ? createForm() : null,
  );

  function show(kind, ...children) {
    notice.replaceChildren(R.el("div", { class: kind, role: kind === "error" ? "alert" : "status" }, ...children));
  }
  async function attempt(fn) {
    try { await fn(); } catch (err) { show("error", err.message || String(err)); }
  }

  function tierBoxes(name, chosen) {
    return R.el("fieldset", { id: name }, R.el("legend", {}, "Allowed tiers (none ticked: every tier)"),
      d.tiers.map((t) => R.el("label", {}, R.el("input", { type: "checkbox", name: name, value: t,
        checked: chosen.indexOf(t) >= 0 }), " " + t)));
  }
  const ticked = (form, name) => Array.from(form.querySelectorAll("input[name=" + name + "]:checked")).map((x) => x.value);

  function edit(k) {
    const form = R.el("form", { id: "edit-key", class: "panel" },
      R.el("h2", {}, "Key " + k.key_id), tierBoxes("edit-tiers", k.allowed_tiers),
      R.el("label", {}, "Expires (UTC day, empty: never) ",
        R.el("input", { type: "date", name: "expires", value: k.expires_at ? k.expires_at.slice(0, 10) : "" })),
      R.el("button", { type: "submit", id: "save-key" }, "Save"), " ",
      R.el("button", { type: "button", id: "revoke-key", class: "danger" }, "Revoke"));
    form.addEventListener("submit", (e) => { e.preventDefault(); attempt(async () => {
      const body = { allowed_tiers: ticked(form, "edit-tiers"), expires: form.elements["expires"].value };
      const out = await R.api("PATCH", "keys/" + encodeURIComponent(k.key_id), body);
      show("ok", "Saved " + out.key.key_id + ".");
      location.reload();
    }); });
    form.querySelector("#revoke-key").addEventListener("click", () => attempt(async () => {
      if (!window.confirm("Revoke " + k.key_id + "? Calls with it stop working.")) return;
      await R.api("POST", "keys/" + encodeURIComponent(k.key_id) + "/revoke", {});
      location.reload();
    }));
    editor.replaceChildren(form);
  }

  function createForm() {
    const field = (label, name, attrs) => R.el("label", {}, label + " ",
      R.el("input", Object.assign({ name: name, autocomplete: "off" }, attrs || {})));
    const role = R.el("select", { name: "role" }, d.roles.map((r) => R.el("option", { value: r }, r)));
    const form = R.el("form", { id: "create-key", class: "panel" }, R.el("h2", {}, "Create a key"),
      field("User id", "user_id", { placeholder: "acme/eng/alice@acme.com" }),
      R.el("p", { class: "muted" }, "or a team service key:"),
      field("Team id", "team_id", { placeholder: "acme/eng" }), field("Service account", "service_account"),
      field("Name", "name", { maxlength: "128" }), field("Project", "project", { maxlength: "128" }),
      R.el("label", {}, "Role ", role), tierBoxes("create-tiers", []),
      field("Expires after (days, 0: never)", "ttl_days", { type: "number", min: "0", max: "36500", value: "0" }),
      R.el("button", { type: "submit", id: "create" }, "Create key"));
    form.addEventListener("submit", (e) => { e.preventDefault(); attempt(async () => {
      const v = (n) => form.elements[n].value;
      const out = await R.api("POST", "keys", { user_id: v("user_id"), team_id: v("team_id"),
        service_account: v("service_account"), name: v("name"), project: v("project"), role: v("role"),
        allowed_tiers: ticked(form, "create-tiers"), ttl_days: Number(v("ttl_days") || 0) });
      form.reset();
      show("ok", "Created " + out.key.key_id + ". Copy the secret now: it is shown once and never again. ",
        R.el("code", { id: "secret" }, out.secret));
    }); });
    return form;
  }
});
