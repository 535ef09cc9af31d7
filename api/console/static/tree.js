// A job drawn from /v1/jobs/{id}/tree: problem, gold and chosen answer, candidates, and the
// search tree as a collapsible list. Children are built when first opened, so a tree of
// thousands of nodes opens at once; a node's text is fetched when its details are opened.
"use strict";

const tree = (() => {
  const { el, api, num, score, short } = ttcq;
  const NOTES = new Set(["stop", "decision"]);  // nodes that say why, and hold no tokens

  function tokens(node) {
    return node.prompt_tokens + node.completion_tokens;
  }

  function nodeLabel(node) {
    const parts = [el("span", { class: "id" }, `#${node.node_id}`),
      el("span", { class: "kind" }, node.kind), el("span", { class: "status" }, node.status)];
    if (node.step_score !== null) parts.push(el("span", { class: "score", title: "step score" }, `s ${score(node.step_score)}`));
    if (node.agg_score !== null) parts.push(el("span", { class: "agg", title: "aggregated score" }, `agg ${score(node.agg_score)}`));
    if (node.visits !== null) parts.push(el("span", { class: "mcts" }, `N ${node.visits} Q ${score(node.q_value)}`));
    if (tokens(node)) parts.push(el("span", { class: "tokens", title: "prompt + completion tokens" }, `${num(tokens(node))} tok`));
    parts.push(el("span", { class: "preview" }, node.preview.replace(/\s+/g, " ")));
    return parts;
  }

  function build(container, data) {
    const children = new Map();
    for (const node of data.nodes) {
      if (!children.has(node.parent_id)) children.set(node.parent_id, []);
      children.get(node.parent_id).push(node);
    }
    let highlighted = new Set(data.chosen_path);
    const items = new Map();  // node id -> its <li>, once built

    async function details(li, node) {
      const open = li.querySelector(":scope > .details");
      if (open) { open.remove(); return; }
      const box = el("div", { class: "details" }, "loading…");
      li.querySelector(":scope > .row").after(box);
      const full = await api(`/v1/jobs/${data.job.id}/nodes/${node.node_id}`);
      box.replaceChildren(
        el("dl", {},
          el("dt", {}, "step score"), el("dd", { class: "step-score" }, score(full.step_score)),
          el("dt", {}, "aggregated"), el("dd", {}, score(full.agg_score)),
          el("dt", {}, "tokens"), el("dd", {}, `prompt ${num(full.prompt_tokens)} · cached ${num(full.cached_tokens)} · completion ${num(full.completion_tokens)}`)),
        el("pre", { class: "step-text" }, full.text));
    }

    function item(node) {
      const kids = children.get(node.node_id) || [];
      const li = el("li", { class: `node status-${node.status} kind-${node.kind}${highlighted.has(node.node_id) ? " on-path" : ""}${NOTES.has(node.kind) ? " note" : ""}`,
        "data-node-id": node.node_id });
      const toggle = el("button", { type: "button", class: "toggle", "aria-label": "children", disabled: !kids.length },
        kids.length ? "▸" : "·");
      const row = el("div", { class: "row", title: "show the step text and scores" }, toggle, ...nodeLabel(node));
      if (kids.length) row.append(el("span", { class: "count" }, `${kids.length} below`));
      toggle.addEventListener("click", (event) => { event.stopPropagation(); expand(li, node, li.classList.contains("open") ? false : true); });
      row.addEventListener("click", () => details(li, node));
      li.append(row);
      items.set(node.node_id, li);
      return li;
    }

    function expand(li, node, open) {
      const kids = children.get(node.node_id) || [];
      if (!kids.length) return;
      let list = li.querySelector(":scope > ul");
      if (!list && open) { list = el("ul", {}, ...kids.map(item)); li.append(list); }
      if (list) list.hidden = !open;
      li.classList.toggle("open", open);
      li.querySelector(":scope > .row > .toggle").textContent = open ? "▾" : "▸";
    }

    function follow(path) {
      for (const id of path) {
        const li = items.get(id);
        if (li) expand(li, data.nodes[index.get(id)], true);
      }
      const leaf = items.get(path[path.length - 1]);
      if (leaf) leaf.scrollIntoView({ block: "center" });
    }

    function highlight(path) {
      for (const li of container.querySelectorAll(".on-path")) li.classList.remove("on-path");
      highlighted = new Set(path);
      follow(path);
      for (const id of path) items.get(id)?.classList.add("on-path");
    }

    function expandAll(open) {
      for (const node of data.nodes) {
        const li = items.get(node.node_id);
        if (li) expand(li, node, open);
      }
    }

    const index = new Map(data.nodes.map((node, i) => [node.node_id, i]));
    const roots = children.get(null) || [];
    const list = el("ul", { class: "tree" }, ...roots.map(item));
    for (const root of roots) expand(items.get(root.node_id), root, true);
    follow(data.chosen_path);
    return { list, highlight, expandAll, follow: () => highlight(data.chosen_path) };
  }

  function pathOf(data, candidate) {
    const parents = new Map(data.nodes.map((n) => [n.node_id, n.parent_id]));
    const path = [];
    for (let id = candidate.leaf_node_id; id !== null && id !== undefined && path.length <= parents.size; id = parents.get(id)) path.push(id);
    return path.reverse();
  }

  function candidates(data, view) {
    const rows = data.candidates.map((c) => el("tr", { class: c.selected ? "chosen" : "", "data-idx": c.idx,
      title: "highlight this candidate's path", onclick: () => view.highlight(pathOf(data, c)) },
      el("td", {}, c.selected ? "★ " : "", c.idx), el("td", {}, c.grp), el("td", {}, c.answer ?? "–"),
      el("td", { class: "num" }, score(c.score)), el("td", {}, c.step_scores.map((s) => s.toFixed(2)).join(" ")),
      el("td", {}, c.finish), el("td", {}, c.correct === null ? "–" : c.correct ? "✓" : "✗")));
    return el("table", { class: "grid candidates" },
      el("thead", {}, el("tr", {}, ...["#", "group", "answer", "score", "step scores", "finish", "correct"].map((h) => el("th", {}, h)))),
      el("tbody", {}, ...rows));
  }

  function header(data) {
    const job = data.job, cost = data.cost;
    const verdict = job.correct === null ? "" : job.correct ? " ✓ correct" : " ✗ wrong";
    return [
      el("h1", {}, `Job ${job.line}`, el("small", {}, ` ${short(job.id)} · `,
        el("a", { href: `/batches/${data.batch.id}` }, data.batch.name || short(data.batch.id)), ` · ${data.batch.strategy} · ${job.state}`)),
      el("pre", { class: "problem" }, job.problem),
      el("p", { class: "answers" }, "gold ", el("b", {}, job.gold ?? "–"), " · chosen ", el("b", { class: "chosen-answer" }, job.answer ?? "–"), verdict),
      job.error ? el("pre", { class: "error-text" }, job.error) : null,
      cost ? el("p", { class: "muted" }, `${num(cost.prompt_tokens)} prompt (${num(cost.cached_tokens)} cached) · ${num(cost.completion_tokens)} completion · ${num(cost.verifier_tokens)} verifier tokens · ${cost.wall_seconds.toFixed(2)} s`) : null,
    ];
  }

  async function renderJob(container, jobId) {
    const started = performance.now();
    const data = await api(`/v1/jobs/${jobId}/tree`);
    const view = build(container, data);
    const tools = el("p", { class: "tools" },
      el("button", { type: "button", class: "follow", onclick: view.follow }, "Follow chosen path"),
      el("button", { type: "button", onclick: () => view.expandAll(true) }, "Expand all"),
      el("button", { type: "button", onclick: () => view.expandAll(false) }, "Collapse all"),
      el("span", { class: "legend" }, ...["expanded", "pruned", "finished", "truncated", "selected"].map((s) => el("span", { class: `swatch status-${s}` }, s === "expanded" ? "kept" : s)),
        el("span", { class: "swatch on-path" }, "chosen path"), el("span", { class: "swatch note" }, "stop / decision")));
    container.replaceChildren(...header(data).filter(Boolean), el("h2", {}, `Candidates (${data.candidates.length})`), candidates(data, view),
      el("h2", {}, `Search tree (${num(data.nodes.length)} nodes)`), tools, view.list);
    container.dataset.renderMs = (performance.now() - started).toFixed(1);
    return data;
  }

  // What a job spent: prompt, completion and verifier tokens (as the API's `tokens`).
  function totalTokens(data) {
    const cost = data.cost;
    return cost ? cost.prompt_tokens + cost.completion_tokens + cost.verifier_tokens : 0;
  }

  return { renderJob, totalTokens };
})();
