// The job page (one view) and the compare page (two side by side, each its own 404).
"use strict";

(() => {
  const views = [...document.querySelectorAll(".job-view")].filter((v) => v.dataset.jobId);

  async function run() {
    if (views.length === 1 && document.body.dataset.page === "job") {
      await tree.renderJob(views[0], views[0].dataset.jobId);  // a 404 shows "not found"
      return;
    }
    await Promise.all(views.map((view) => tree.renderJob(view, view.dataset.jobId).catch((error) => {
      view.replaceChildren(ttcq.el("p", { class: "not-found" },
        error instanceof ttcq.NotFound ? `job ${view.dataset.jobId}: not found` : String(error.message)));
    })));
  }

  ttcq.start(run);
})();
