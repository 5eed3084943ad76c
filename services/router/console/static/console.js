/* The console's helpers and shell (window.Rationer); pages register with Rationer.page(slug, render).
   Every piece of data reaches the DOM through textContent or setAttribute on a safe attribute:
   never as HTML markup, so a name like <script> or "><img onerror=...> shows as text. */
"use strict";
(function () {
  const R = {};
  const pages = {};
  const SAFE_ATTR = /^(class|id|href|title|type|name|value|role|for|colspan|download|selected|checked|disabled|required|placeholder|min|max|step|maxlength|autocomplete|tabindex|aria-[a-z-]+|data-[a-z-]+)$/;

  class ApiError extends Error {
    constructor(status, message, code) { super(message); this.status = status; this.code = code || ""; }
  }
  R.ApiError = ApiError;

  R.page = function (slug, render) { pages[slug] = render; };
  R.csrf = function () {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : "";
  };

  R.query = function (params) {
    const q = new URLSearchParams();
    for (const [k, v] of Object.entries(params || {})) {
      if (Array.isArray(v)) v.forEach((x) => q.append(k, x));
      else if (v !== undefined && v !== null && v !== "") q.set(k, String(v));
    }
    const s = q.toString();
    return s ? "?" + s : "";
  };

  /* GET sends data as the query; other methods as a JSON body with the CSRF header. */
  R.api = async function (method, path, data) {
    let url = "/console/api/" + path;
    const opts = { method: method, credentials: "same-origin", headers: { Accept: "application/json" } };
    if (method === "GET") url += R.query(data);
    else {
      opts.headers["Content-Type"] = "application/json";
      opts.headers["X-CSRF-Token"] = R.csrf();
      opts.body = JSON.stringify(data || {});
    }
    const resp = await fetch(url, opts);
    const isJson = (resp.headers.get("Content-Type") || "").indexOf("json") >= 0;
    const body = isJson ? await resp.json() : await resp.text();
    if (resp.status === 401) {
      const back = location.pathname + location.search;
      location.assign("/console/login?error=expired&next=" + encodeURIComponent(back));
    }
    if (!resp.ok) {
      const err = body && body.error ? body.error : { message: String(body) };
      throw new ApiError(resp.status, err.message, err.code);
    }
    return body;
  };

  /* R.el("a", {href: u, class: "x"}, "text", child, ...): text children become text nodes. */
  R.el = function (tag, attrs) {
    const node = document.createElement(tag);
    for (const [k, v] of Object.entries(attrs || {})) {
      if (v === undefined || v === null || v === false) continue;
      if (!SAFE_ATTR.test(k)) throw new Error("Rationer.el: attribute " + k + " is not allowed");
      node.setAttribute(k, v === true ? "" : String(v));
    }
    for (let i = 2; i < arguments.length; i++) R.append(node, arguments[i]);
    return node;
  };
  R.append = function (node, child) {
    if (child === undefined || child === null || child === false) return;
    if (Array.isArray(child)) child.forEach((c) => R.append(node, c));
    else if (child instanceof Node) node.appendChild(child);
    else node.appendChild(document.createTextNode(String(child)));
  };

  R.int = (n) => Number(n).toLocaleString("en-US");
  R.usd = (text) => "$" + text;  /* the server's exact decimal text, never a float */
  R.pct = (x) => (Number(x) * 100).toFixed(1) + "%";

  R.fail = function (root, err) {
    const status = err && err.status ? " (" + err.status + ")" : "";
    root.replaceChildren(R.el("div", { class: "error", role: "alert" },
      R.el("strong", {}, "Cannot show this page" + status + ": "), err && err.message ? err.message : String(err)));
  };

  /* Stat cards: [{metric, label, value, note}] */
  R.cards = function (items) {
    return R.el("div", { class: "cards" }, items.map((c) => R.el("div", { class: "card", "data-metric": c.metric },
      R.el("div", { class: "label" }, c.label), R.el("div", { class: "value" }, c.value),
      c.note ? R.el("div", { class: "note" }, c.note) : null)));
  };

  /* A sortable table. columns: [{key, label, num, fmt(row), sort(row)}]; opts.onRow(row) makes rows links. */
  R.table = function (columns, rows, opts) {
    opts = opts || {};
    const state = { key: opts.sortKey || null, dir: opts.sortDir || -1 };
    const table = R.el("table", { class: "grid" + (opts.onRow ? " drill" : ""), id: opts.id });
    const body = R.el("tbody");
    const cell = (col, row) => R.el("td", { class: col.num ? "num" : null, "data-col": col.key },
      col.fmt ? col.fmt(row) : row[col.key]);
    const fill = function () {
      const col = columns.find((c) => c.key === state.key);
      const sorted = rows.slice();
      if (col) {
        const val = col.sort || ((r) => r[col.key]);
        sorted.sort((a, b) => (val(a) < val(b) ? -1 : val(a) > val(b) ? 1 : 0) * state.dir);
      }
      body.replaceChildren(...sorted.map((row) => {
        const tr = R.el("tr", {}, columns.map((c) => cell(c, row)));
        if (opts.onRow && (!opts.canDrill || opts.canDrill(row))) {
          tr.setAttribute("class", "link");
          tr.setAttribute("tabindex", "0");
          tr.addEventListener("click", () => opts.onRow(row));
          tr.addEventListener("keydown", (e) => { if (e.key === "Enter") opts.onRow(row); });
        }
        return tr;
      }));
    };
    const head = R.el("tr", {}, columns.map((c) => {
      const th = R.el("th", { class: c.num ? "num" : null, "data-col": c.key, title: "Sort by " + c.label },
        c.label);
      th.addEventListener("click", () => {
        state.dir = state.key === c.key ? -state.dir : (c.num ? -1 : 1);
        state.key = c.key;
        fill();
      });
      return th;
    }));
    table.append(R.el("thead", {}, head), body);
    if (opts.total) table.append(R.el("tfoot", {}, R.el("tr", {}, columns.map((c) => cell(c, opts.total)))));
    fill();
    return table;
  };

  /* The period in the URL (?from=&to=) or this month by the gateway's clock. */
  function readPeriod(session) {
    const q = new URLSearchParams(location.search);
    if (q.get("from") && q.get("to")) return { from: q.get("from"), to: q.get("to") };
    return session.this_month;
  }

  function setupPicker(period, session) {
    const form = document.getElementById("period");
    if (!form) return;
    form.elements["from"].value = period.from;
    form.elements["to"].value = period.to;
    const label = document.getElementById("period-label");
    if (label) label.textContent = "UTC days " + period.from + " to " + period.to +
      " (at most " + session.max_range_days + " days)";
    const go = function (from, to) {
      const q = new URLSearchParams(location.search);
      if (from) { q.set("from", from); q.set("to", to); } else { q.delete("from"); q.delete("to"); }
      const s = q.toString();
      location.assign(location.pathname + (s ? "?" + s : ""));
    };
    form.addEventListener("submit", (e) => { e.preventDefault(); go(form.elements["from"].value, form.elements["to"].value); });
    document.getElementById("this-month").addEventListener("click", () => go("", ""));
  }

  async function boot() {
    const slug = document.body.getAttribute("data-page");
    const main = document.getElementById("main");
    if (!slug || !main) return;
    let session;
    try { session = await R.api("GET", "session"); } catch (err) { R.fail(main, err); return; }
    const who = document.getElementById("who");
    who.replaceChildren(R.el("span", { class: "role", "data-role": session.role }, session.role), " ",
      session.key_id || "admin token", session.team_id ? " · " + session.team_id : "");
    const period = readPeriod(session);
    setupPicker(period, session);
    const render = pages[slug];
    if (!render) { R.fail(main, new Error("page " + slug + " has no script")); return; }
    const ctx = { session: session, period: period, params: new URLSearchParams(location.search) };
    try {
      await render(main, ctx);
      document.body.setAttribute("data-ready", "1");
    } catch (err) {
      R.fail(main, err);
      document.body.setAttribute("data-ready", "error");
    }
  }

  window.Rationer = R;
  document.addEventListener("DOMContentLoaded", boot);
})();
