/* Small inline-SVG charts (no library): Rationer.chart.line and Rationer.chart.bars.
   Labels go in through textContent; colours come from CSS classes (s0, s1, ...). */
"use strict";
(function (R) {
  const NS = "http://www.w3.org/2000/svg";
  function svg(tag, attrs, text) {
    const n = document.createElementNS(NS, tag);
    for (const [k, v] of Object.entries(attrs || {})) n.setAttribute(k, String(v));
    if (text !== undefined) n.textContent = String(text);
    return n;
  }
  function niceMax(v) {
    if (!(v > 0)) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  /* series: [{name, values: [number]}], labels: [string] (one per value); fmt(v) labels the axis. */
  function line(title, labels, series, fmt) {
    fmt = fmt || ((v) => R.int(v));
    const W = 560, H = 200, L = 64, B = 28, T = 26, Rt = 12;
    const max = niceMax(Math.max(0, ...series.flatMap((s) => s.values.map(Number))));
    const n = Math.max(1, labels.length - 1);
    const x = (i) => L + (W - L - Rt) * (labels.length === 1 ? 0.5 : i / n);
    const y = (v) => T + (H - T - B) * (1 - Number(v) / max);
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart", role: "img" });
    root.appendChild(svg("title", {}, title));
    root.appendChild(svg("text", { x: L, y: 16, class: "chart-title" }, title));
    for (const f of [0, 0.5, 1]) {
      root.appendChild(svg("line", { x1: L, x2: W - Rt, y1: y(max * f), y2: y(max * f), class: "gridline" }));
      root.appendChild(svg("text", { x: L - 6, y: y(max * f) + 4, class: "axis", "text-anchor": "end" }, fmt(max * f)));
    }
    if (labels.length) {
      root.appendChild(svg("text", { x: x(0), y: H - 8, class: "axis" }, labels[0]));
      root.appendChild(svg("text", { x: x(labels.length - 1), y: H - 8, class: "axis", "text-anchor": "end" },
        labels[labels.length - 1]));
    }
    series.forEach((s, k) => {
      const pts = s.values.map((v, i) => x(i).toFixed(1) + "," + y(v).toFixed(1)).join(" ");
      root.appendChild(svg("polyline", { points: pts, class: "series s" + k, "data-series": s.name }));
      s.values.forEach((v, i) => {
        const dot = svg("circle", { cx: x(i).toFixed(1), cy: y(v).toFixed(1), r: 2.5, class: "dot s" + k });
        dot.appendChild(svg("title", {}, labels[i] + " · " + s.name + ": " + (s.text ? s.text[i] : fmt(v))));
        root.appendChild(dot);
      });
      if (series.length > 1) {
        root.appendChild(svg("rect", { x: W - Rt - 150, y: 6 + k * 14, width: 10, height: 4, class: "key s" + k }));
        root.appendChild(svg("text", { x: W - Rt - 134, y: 12 + k * 14, class: "axis" }, s.name));
      }
    });
    return root;
  }

  /* Horizontal bars: items [{label, value, text}] (text: what to print beside the bar). */
  function bars(title, items) {
    const W = 1100, row = 26, L = 170, T = 24;
    const H = T + row * Math.max(1, items.length) + 6;
    const max = Math.max(1e-12, ...items.map((i) => Number(i.value)));
    const root = svg("svg", { viewBox: "0 0 " + W + " " + H, class: "chart bars", role: "img" });
    root.appendChild(svg("title", {}, title));
    root.appendChild(svg("text", { x: 10, y: 16, class: "chart-title" }, title));
    items.forEach((it, k) => {
      const yy = T + k * row;
      const w = Math.max(1, (W - L - 260) * Number(it.value) / max);
      root.appendChild(svg("text", { x: L - 8, y: yy + 15, class: "axis", "text-anchor": "end" }, it.label));
      root.appendChild(svg("rect", { x: L, y: yy + 4, width: w.toFixed(1), height: 16, class: "bar s" + (k % 6) }));
      root.appendChild(svg("text", { x: L + w + 6, y: yy + 16, class: "axis" }, it.text));
    });
    return root;
  }

  R.chart = { line: line, bars: bars };
})(window.Rationer);
