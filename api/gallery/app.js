// The gallery's entry point: sign-in with an API key (kept in sessionStorage for this tab),
// and a hash router over the views. Each view gets a context whose timers stop when the
// person navigates away, so a page that is no longer shown never polls.

import { ApiError, getJSON, releaseImages, session, whenUnauthorized } from "./api.js";
import { errorBox, h } from "./dom.js";
import { jobView, jobsView } from "./jobs.js";
import { modelsView, modelView } from "./model.js";

const view = document.getElementById("view");
const nav = document.getElementById("nav");
let generation = 0;

function context() {
  const mine = ++generation;
  const alive = () => mine === generation;
  return {
    alive,
    // Calls fn every `ms` while the view is shown and fn reports work in progress (returns
    // true), and every 5×ms otherwise; wake() runs it again at once (after starting a job).
    every(ms, fn) {
      let timer = null;
      let running = false;
      let again = false;
      const tick = async () => {
        if (!alive()) return;
        if (running) { again = true; return; } // one loop only: a wake() mid-call runs it once more after
        clearTimeout(timer);
        running = true;
        let busy = true;
        try { busy = await fn(); } catch (error) { if (!(error instanceof ApiError)) console.error(error); }
        running = false;
        if (!alive()) return;
        timer = setTimeout(tick, again ? 0 : busy ? ms : 5 * ms);
        again = false;
      };
      timer = setTimeout(tick, ms);
      return { wake: tick };
    },
  };
}

function loginView(target, problem) {
  const input = h("input", { id: "api-key", name: "key", type: "password", autocomplete: "off", required: true,
                             placeholder: "kgan_…", size: 50 });
  const message = h("div", {}, problem ? errorBox(problem) : "");
  const form = h("form", { class: "login panel" },
    h("h1", {}, "Sign in"),
    h("p", {}, "Paste an API key. It is kept only in this browser tab and sent with each request; "
      + "`kgan serve` prints one on its first start, `kgan create-key` makes more."),
    h("label", {}, "API key ", input), h("button", { type: "submit" }, "Sign in"), message);
  form.addEventListener("submit", async (event) => {
    event.preventDefault();
    session.set(input.value);
    try {
      await getJSON("/v1/jobs?limit=1");
      const destination = target && target !== "#/login" ? target : "#/jobs";
      if (location.hash === destination) route();
      else location.hash = destination;
    } catch (error) {
      session.clear();
      message.replaceChildren(errorBox(error));
    }
  });
  view.replaceChildren(form);
  input.focus();
}

const routes = [
  [/^#\/jobs\/([\w-]+)$/, jobView],
  [/^#\/jobs$/, jobsView],
  [/^#\/models\/([\w-]+)$/, modelView],
  [/^#\/models$/, modelsView],
];

async function route() {
  const ctx = context();
  releaseImages();
  const hash = location.hash || "#/jobs";
  if (!session.key || hash === "#/login") {
    nav.hidden = true;
    loginView(hash);
    return;
  }
  nav.hidden = false;
  for (const link of nav.querySelectorAll("a[href^='#']")) {
    link.classList.toggle("current", hash.startsWith(link.getAttribute("href")));
  }
  const match = routes.map(([pattern, render]) => [hash.match(pattern), render]).find(([m]) => m);
  if (!match) {
    view.replaceChildren(errorBox({ title: "No such page", detail: `${hash} is not a page of the gallery.` }));
    return;
  }
  // Each page draws into an element of its own: one still waiting for the API when the person
  // moves on then finishes into a detached element, not over the page now shown.
  const page = h("div", { class: "page" }, h("p", { class: "muted" }, "Loading…"));
  view.replaceChildren(page);
  try {
    await match[1](page, ctx, ...match[0].slice(1));
  } catch (error) {
    if (ctx.alive()) page.replaceChildren(errorBox(error));
  }
}

whenUnauthorized((problem) => {
  session.clear();
  generation++; // stop the view's polling
  nav.hidden = true;
  loginView(location.hash, problem);
});

document.getElementById("sign-out").addEventListener("click", () => {
  session.clear();
  location.hash = "#/login";
});
window.addEventListener("hashchange", route);
route();
