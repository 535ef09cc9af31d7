// One batch: config as YAML, states, cost, curves, failures and its problems a page at a time.
"use strict";

(() => {
  const { el, api, num, pct, short } = ttcq;
  const batchId = document.getElementById("batch").dataset.batchId;
  const PAGE = 50;
  const POLL_MS = 3000;
  let offset = 0;

  // YAML for the config's plain values; strings that YAML would read otherwise are quoted.
  function yaml(value, indent = "") {
    if (Array.isArray(value)) return value.length ? value.map((v) => `\n${indent}- ${yaml(v, indent + "  ")}`).join("") : "[]";
    if (value && typeof value === "object") {
      const keys = Object.keys(value);
      if (!keys.length) return "{}";
      return keys.map((k) => `\n${indent}${k}: ${yaml(value[k], indent + "  ")}`).join("");
    }
    if (typeof value === "string" && !/^[A-Za-z_][\w.\-/ ]*$/.test(value)) return JSON.stringify(value);
    if (typeof value === "string" && /^(true|false|null|yes|no|on|off|~)$/i.test(value)) return JSON.stringify(value);
    return value === null ? "null" : String(value);
  }

  function table(id, rows) {
    document.querySelector(`#${id} tbody`).replaceChildren(
      ...rows.map(([name, value]) => el("tr", {}, el("th", {}, name), el("td", { class: "num" }, value))));
  }

  function showBatch(batch) {
    document.title = `${batch.name || short(batch.id)} · ttcq console`;
    document.getElementById("batch-name").textContent = batch.name || batch.id;
    document.getElementById("batch-summary").textContent =
      `${batch.strategy} · ${num(batch.done)} of ${num(batch.total)} done · accuracy ${pct(batch.accuracy)} ` +
      `(${batch.correct} of ${batch.graded} graded) · ${num(batch.tokens)} tokens`;
    document.getElementById("config").textContent = yaml(batch.config).trimStart();
    table("states", Object.entries(batch.counts).map(([state, n]) => [state, num(n)]));
  }

  function showCost(cost) {
    table("cost", [
      ["jobs with a cost", num(cost.jobs)], ["prompt tokens", num(cost.prompt_tokens)],
      ["cached tokens", num(cost.cached_tokens)], ["cache-hit rate", pct(cost.cache_hit_rate)],
      ["completion tokens", num(cost.completion_tokens)], ["thinking tokens", num(cost.thinking_tokens)],
      ["verifier tokens", num(cost.verifier_tokens)], ["verifier cache-hit rate", pct(cost.verifier_cache_hit_rate)],
      ["total tokens", num(cost.total_tokens)], ["tokens per job", num(cost.tokens_per_job)],
      ["tokens per correct", num(cost.tokens_per_correct)], ["engine calls", num(cost.engine_calls)],
      ["verifier calls", num(cost.verifier_calls)], ["wasted tokens", num(cost.wasted_tokens)],
      ["wall seconds", cost.wall_seconds.toFixed(1)],
    ]);
  }

  function showFailures(batch, failed) {
    const box = document.getElementById("failures");
    if (!failed.length) return;
    const reasons = Object.entries(batch.failures).map(([reason, n]) => `${reason}: ${n}`).join(" · ");
    box.replaceChildren(el("p", {}, reasons), el("table", { class: "grid" },
      el("thead", {}, el("tr", {}, el("th", {}, "Line"), el("th", {}, "Reason"), el("th", {}, "Attempts"), el("th", {}, "Error"))),
      el("tbody", {}, ...failed.map((f) => el("tr", {},
        el("td", {}, el("a", { href: `/jobs/${f.job_id}` }, f.line)), el("td", {}, f.failure || "unknown"),
        el("td", { class: "num" }, f.attempts), el("td", {}, el("pre", { class: "error-text" }, f.error || "")))))));
  }

  function outcome(row) {
    if (row.correct === true) return el("span", { class: "state succeeded" }, "correct");
    if (row.correct === false) return el("span", { class: "state failed" }, "wrong");
    return el("span", { class: `state ${row.state}`, title: row.failure || "" }, row.failure ? `${row.state}: ${row.failure}` : row.state);
  }

  async function loadProblems() {
    const params = new URLSearchParams({ offset, limit: PAGE, sort: document.getElementById("sort").value });
    for (const name of ["outcome", "level"]) {
      const value = document.getElementById(name).value;
      if (value) params.set(name, value);
    }
    const page = await api(`/v1/batches/${batchId}/problems?${params}`);
    const level = document.getElementById("level");
    if (level.options.length === 1) level.append(...page.levels.map((l) => el("option", {}, l)));
    document.querySelector("#problems tbody").replaceChildren(...page.items.map((p) => el("tr", {},
      el("td", {}, el("a", { href: `/jobs/${p.job_id}` }, p.line)), el("td", {}, p.custom_id || ""),
      el("td", { class: "problem" }, p.problem), el("td", {}, p.level || ""), el("td", {}, outcome(p)),
      el("td", {}, p.gold || ""), el("td", {}, p.answer || ""), el("td", { class: "num" }, num(p.tokens)))));
    const last = Math.min(offset + PAGE, page.total);
    document.getElementById("page-info").textContent = page.total ? `${offset + 1}–${last} of ${num(page.total)}` : "none";
    document.getElementById("prev").disabled = offset === 0;
    document.getElementById("next").disabled = last >= page.total;
  }

  // While jobs run, the summary, states and cost follow them (the curves and problems
  // stay as loaded: they are redrawn by reloading the page).
  async function poll() {
    const [batch, cost] = await Promise.all([api(`/v1/batches/${batchId}`), api(`/v1/batches/${batchId}/cost`)]);
    showBatch(batch);
    showCost(cost);
    if (batch.done < batch.total) setTimeout(() => poll().catch(() => {}), POLL_MS);
  }

  async function run() {
    const batch = await api(`/v1/batches/${batchId}`);  // a 404 here shows "not found"
    showBatch(batch);
    if (batch.done < batch.total) setTimeout(() => poll().catch(() => {}), POLL_MS);
    const [cost, failed, report] = await Promise.all([
      api(`/v1/batches/${batchId}/cost`), api(`/v1/batches/${batchId}/failures`),
      api(`/v1/report?batch_id=${batchId}`), loadProblems()]);
    showCost(cost);
    showFailures(batch, failed);
    charts.drawReport(report, document.getElementById("curve-budget"), document.getElementById("curve-tokens"));
  }

  const reload = () => { offset = 0; loadProblems(); };
  for (const id of ["outcome", "level", "sort"]) document.getElementById(id).addEventListener("change", reload);
  document.getElementById("prev").addEventListener("click", () => { offset = Math.max(0, offset - PAGE); loadProblems(); });
  document.getElementById("next").addEventListener("click", () => { offset += PAGE; loadProblems(); });
  ttcq.start(run);
})();
