// The job page (one view, and the caller's other jobs of its problem to compare it with)
// and the compare page (two side by side, each its own 404, under a summary of both).
"use strict";

(() => {
  const { el, api, num } = ttcq;
  const views = [...document.querySelectorAll(".job-view")].filter((v) => v.dataset.jobId);

  function verdict(correct) {
    if (correct === null || correct === undefined) return "–";
    return el("span", { class: `state ${correct ? "succeeded" : "failed"}` }, correct ? "correct" : "wrong");
  }

  // "Compare with…": the same problem in the caller's other batches, one link each.
  function twinsTable(jobId, twins) {
    const section = el("section", { id: "compare-with" }, el("h2", {}, "Compare with…"));
    if (!twins.length) {
      section.append(el("p", { class: "muted" }, "No other batch of yours has this problem."));
      return section;
    }
    const rows = twins.map((t) => el("tr", { "data-job-id": t.job_id },
      el("td", {}, el("a", { href: `/batches/${t.batch_id}` }, t.batch_name || ttcq.short(t.batch_id))),
      el("td", {}, ttcq.when(t.created_at)), el("td", {}, t.strategy), el("td", {}, t.correct === null ? t.state : verdict(t.correct)),
      el("td", {}, t.answer ?? "–"), el("td", { class: "num" }, num(t.tokens)),
      el("td", {}, el("a", { class: "compare-link", href: `/compare?a=${jobId}&b=${t.job_id}` }, "compare →"))));
    section.append(el("table", { class: "grid small" },
      el("thead", {}, el("tr", {}, ...["batch", "submitted", "strategy", "outcome", "answer", "tokens", ""].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows)));
    return section;
  }

  async function runJob(view) {
    const jobId = view.dataset.jobId;
    const [, twins] = await Promise.all([tree.renderJob(view, jobId),  // a 404 shows "not found"
      api(`/v1/jobs/${jobId}/same-problem`)]);
    view.querySelector("h2").before(twinsTable(jobId, twins));  // above the candidates
  }

  // The two jobs in a few rows, those that differ marked, to read the difference at once.
  function showSummary(a, b) {
    const facts = [
      ["batch", (d) => d.batch.name || ttcq.short(d.batch.id)], ["strategy", (d) => d.batch.strategy],
      ["answer", (d) => d.job.answer ?? "–"], ["correct", (d) => d.job.correct],
      ["tokens", (d) => tree.totalTokens(d)], ["nodes", (d) => d.nodes.length]];
    const show = (name, value) => name === "correct" ? verdict(value) : typeof value === "number" ? num(value) : value;
    const table = document.getElementById("summary");
    table.querySelector("tbody").replaceChildren(...facts.map(([name, of]) => {
      const [left, right] = [of(a), of(b)];
      return el("tr", { class: left === right ? "" : "differs", "data-fact": name }, el("th", {}, name),
        el("td", {}, show(name, left)), el("td", {}, show(name, right)));
    }));
    table.hidden = false;
  }

  async function runCompare() {
    const loaded = await Promise.all(views.map((view) => tree.renderJob(view, view.dataset.jobId).catch((error) => {
      view.replaceChildren(el("p", { class: "not-found" },
        error instanceof ttcq.NotFound ? `job ${view.dataset.jobId}: not found` : String(error.message)));
      return null;
    })));
    if (loaded.length === 2 && loaded.every(Boolean)) showSummary(...loaded);
  }

  ttcq.start(() => views.length === 1 && document.body.dataset.page === "job" ? runJob(views[0]) : runCompare());
})();
