// The console's shared parts: the token, calls to the /v1 API, and building elements.
// Model output (problems, steps, answers, errors) is only ever set as text, never as HTML.
"use strict";

const ttcq = (() => {
  const KEY = "ttcq-token";

  class NotFound extends Error {}

  function token() { return sessionStorage.getItem(KEY); }

  // el("td", {class: "x", title: "..."}, "text", child): attributes and text, no HTML.
  function el(tag, attrs, ...children) {
    const node = document.createElement(tag);
    for (const [name, value] of Object.entries(attrs || {})) {
      if (value === null || value === undefined || value === false) continue;
      if (name.startsWith("on")) node.addEventListener(name.slice(2), value);
      else node.setAttribute(name, value === true ? "" : String(value));
    }
    for (const child of children) {
      if (child === null || child === undefined) continue;
      node.append(child instanceof Node ? child : document.createTextNode(String(child)));
    }
    return node;
  }

  async function api(path, options = {}) {
    const response = await fetch(path, {
      ...options,
      headers: { ...(options.headers || {}), Authorization: `Bearer ${token()}` },
    });
    if (response.status === 401) { showLogin("That token is not known to this API."); throw new Error("401"); }
    if (response.status === 404) throw new NotFound(path);
    if (!response.ok) {
      const body = await response.text();
      throw new Error(`${response.status}: ${body.slice(0, 300)}`);
    }
    return response.json();
  }

  function showLogin(error) {
    sessionStorage.removeItem(KEY);
    document.getElementById("main").hidden = true;
    document.getElementById("login").hidden = false;
    document.getElementById("login-error").textContent = error || "";
    document.getElementById("token").focus();
  }

  // Another owner's batch looks exactly like a missing one: nothing of it is shown.
  function showNotFound() {
    document.getElementById("main").hidden = true;
    document.getElementById("not-found").hidden = false;
    document.body.dataset.ready = "404";
  }

  // Run the page's start function once a token is there, mapping a 404 to "not found".
  function start(run) {
    const go = async () => {
      document.getElementById("login").hidden = true;
      document.getElementById("main").hidden = false;
      document.getElementById("logout").hidden = false;
      try {
        await run();
        document.body.dataset.readyMs = performance.now().toFixed(1);  // since navigation
        document.body.dataset.ready = "1";
      } catch (error) {
        if (error instanceof NotFound) showNotFound();
        else if (error.message !== "401") failed(error);
      }
    };
    document.getElementById("login-form").addEventListener("submit", (event) => {
      event.preventDefault();
      sessionStorage.setItem(KEY, document.getElementById("token").value.trim());
      go();
    });
    document.getElementById("logout").addEventListener("click", () => {
      sessionStorage.removeItem(KEY);
      location.href = "/";
    });
    if (token()) go(); else showLogin();
  }

  function failed(error) {
    const main = document.getElementById("main");
    main.prepend(el("p", { class: "error" }, `Could not load: ${error.message}`));
  }

  const integer = new Intl.NumberFormat("en-US");
  function num(value) { return value === null || value === undefined ? "–" : integer.format(Math.round(value)); }
  function pct(value) { return value === null || value === undefined ? "–" : `${(100 * value).toFixed(1)}%`; }
  function score(value) { return value === null || value === undefined ? "–" : value.toFixed(3); }
  function when(text) { return text ? new Date(text).toLocaleString() : "–"; }
  function short(id) { return String(id).slice(0, 8); }

  return { NotFound, el, api, start, num, pct, score, when, short };
})();
