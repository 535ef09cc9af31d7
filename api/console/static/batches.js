// The batch list: progress, accuracy, tokens and rate of the caller's batches, polled
// while any of them has jobs queued or running; cancel, requeue and retry call the API.
"use strict";

(() => {
  const { el, api, num, pct, when } = ttcq;
  const POLL_MS = 2000;
  let timer = null;

  function states(counts) {
    return Object.entries(counts).filter(([, n]) => n > 0)
      .map(([state, n]) => el("span", { class: `state ${state}` }, `${state} ${num(n)}`));
  }

  function progress(batch) {
    const share = batch.total ? batch.done / batch.total : 0;
    return el("div", { class: "progress", title: `${batch.done} of ${batch.total} done` },
      el("div", { class: "bar", style: `width:${(100 * share).toFixed(1)}%` }),
      el("span", {}, `${num(batch.done)} / ${num(batch.total)}`));
  }

  async function act(batch, action) {
    const message = document.getElementById("message");
    try {
      const after = await api(`/v1/batches/${batch.id}/${action}`, { method: "POST" });
      message.textContent = `${action}: ${after.name || batch.id} — ${after.warning || "done"}`;
    } catch (error) {
      message.textContent = `${action} failed: ${error.message}`;
    }
    refresh();
  }

  function row(batch) {
    const open = batch.counts.queued + batch.counts.running;
    const actions = el("td", { class: "actions" },
      el("button", { type: "button", disabled: open === 0, onclick: () => act(batch, "cancel") }, "Cancel"),
      el("button", { type: "button", disabled: batch.counts.queued === 0, onclick: () => act(batch, "requeue"),
        title: "send queued jobs to the queue again" }, "Requeue"),
      el("button", { type: "button", disabled: !batch.counts.failed, onclick: () => act(batch, "retry"),
        title: "run failed jobs again" }, "Retry failed"));
    return el("tr", { "data-batch-id": batch.id },
      el("td", {}, el("a", { href: `/batches/${batch.id}` }, batch.name || batch.id)),
      el("td", {}, batch.strategy),
      el("td", {}, progress(batch)),
      el("td", { class: "num" }, pct(batch.accuracy)),
      el("td", { class: "num" }, num(batch.tokens)),
      el("td", { class: "num" }, batch.jobs_per_minute === null ? "–" : batch.jobs_per_minute.toFixed(1)),
      el("td", {}, ...states(batch.counts)),
      el("td", {}, when(batch.created_at)),
      actions);
  }

  async function refresh() {
    clearTimeout(timer);
    const batches = await api("/v1/batches?limit=100");
    document.querySelector("#batches tbody").replaceChildren(...batches.map(row));
    document.getElementById("empty").hidden = batches.length > 0;
    const live = batches.some((b) => b.counts.queued + b.counts.running > 0);
    document.getElementById("live").textContent = live ? "live" : "";
    if (live) timer = setTimeout(() => refresh().catch(() => {}), POLL_MS);
  }

  ttcq.start(refresh);
})();
