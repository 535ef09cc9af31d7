// Line charts as inline SVG, drawn from the report's numbers: accuracy (with its 95%
// interval as a band) against the budget or the tokens per problem, on a log x axis.
"use strict";

const charts = (() => {
  const NS = "http://www.w3.org/2000/svg";
  const W = 460, H = 280, M = { left: 50, right: 14, top: 26, bottom: 40 };
  const COLOURS = ["#2563eb", "#dc2626", "#16a34a", "#9333ea", "#ea580c", "#0891b2"];

  function svg(tag, attrs, text) {
    const node = document.createElementNS(NS, tag);
    for (const [name, value] of Object.entries(attrs)) node.setAttribute(name, value);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function ticks(low, high) {
    // Powers of two (budgets) or of ten (tokens) between the ends of the log axis.
    const base = high / Math.max(low, 1e-9) > 64 ? 10 : 2;
    const out = [];
    for (let t = base ** Math.floor(Math.log(low) / Math.log(base)); t <= high * 1.0001; t *= base) {
      if (t >= low / 1.0001) out.push(t);
    }
    return out.length ? out : [low];
  }

  function label(value) {
    return value >= 1e6 ? `${+(value / 1e6).toFixed(1)}M` : value >= 1e3 ? `${+(value / 1e3).toFixed(1)}k` : `${+value.toFixed(2)}`;
  }

  // series: [{name, points: [{x, y, lo, hi}]}], y in [0, 1]; x > 0 (log scale).
  function lineChart(figure, { title, xLabel, series }) {
    const xs = series.flatMap((s) => s.points.map((p) => p.x)).filter((x) => x > 0);
    figure.replaceChildren();
    if (!xs.length) { figure.append(document.createTextNode(`${title}: no finished jobs yet`)); return; }
    let [low, high] = [Math.min(...xs), Math.max(...xs)];
    if (low === high) { low /= 2; high *= 2; }
    const px = (x) => M.left + (Math.log(x) - Math.log(low)) / (Math.log(high) - Math.log(low)) * (W - M.left - M.right);
    const py = (y) => H - M.bottom - y * (H - M.top - M.bottom);
    const chart = svg("svg", { viewBox: `0 0 ${W} ${H}`, class: "chart", role: "img" });
    chart.append(svg("text", { x: W / 2, y: 16, "text-anchor": "middle", class: "title" }, title));
    for (const y of [0, 0.25, 0.5, 0.75, 1]) {
      chart.append(svg("line", { x1: M.left, x2: W - M.right, y1: py(y), y2: py(y), class: "gridline" }));
      chart.append(svg("text", { x: M.left - 6, y: py(y) + 4, "text-anchor": "end" }, `${y * 100}%`));
    }
    for (const x of ticks(low, high)) {
      chart.append(svg("text", { x: px(x), y: H - M.bottom + 16, "text-anchor": "middle" }, label(x)));
    }
    chart.append(svg("text", { x: W / 2, y: H - 6, "text-anchor": "middle" }, xLabel));
    series.forEach((s, i) => {
      const colour = COLOURS[i % COLOURS.length];
      const points = s.points.filter((p) => p.x > 0 && p.y !== null).sort((a, b) => a.x - b.x);
      if (!points.length) return;
      const band = [...points.map((p) => `${px(p.x)},${py(p.hi ?? p.y)}`),
        ...points.slice().reverse().map((p) => `${px(p.x)},${py(p.lo ?? p.y)}`)];
      chart.append(svg("polygon", { points: band.join(" "), fill: colour, opacity: 0.12 }));
      chart.append(svg("polyline", { points: points.map((p) => `${px(p.x)},${py(p.y)}`).join(" "),
        fill: "none", stroke: colour, "stroke-width": 2 }));
      for (const p of points) {
        const dot = svg("circle", { cx: px(p.x), cy: py(p.y), r: 3.5, fill: colour });
        dot.append(svg("title", {}, `${s.name}: ${(100 * p.y).toFixed(1)}% at ${label(p.x)}`));
        chart.append(dot);
      }
      chart.append(svg("text", { x: M.left + 8, y: M.top + 14 + 14 * i, fill: colour, class: "legend" }, s.name));
    });
    figure.append(chart);
  }

  // The report's all-problems points as two charts: by budget and by tokens per problem.
  function drawReport(report, budgetFigure, tokensFigure) {
    const lines = report.lines.map((line) => {
      const points = report.points.filter((p) => p.configuration === line.configuration && p.level === null);
      return { name: line.configuration, points };
    });
    const as = (key) => lines.map((l) => ({ name: l.name,
      points: l.points.map((p) => ({ x: p[key], y: p.accuracy, lo: p.ci_low, hi: p.ci_high })) }));
    lineChart(budgetFigure, { title: "Accuracy vs budget", xLabel: "budget n", series: as("budget") });
    lineChart(tokensFigure, { title: "Accuracy vs tokens", xLabel: "tokens per problem", series: as("tokens_per_problem") });
  }

  return { lineChart, drawReport };
})();
