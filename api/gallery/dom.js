// A tiny element builder (nothing is parsed as HTML, so names and numbers from the API are
// always text, never markup) and the number formats every page shares.

export function h(tag, attrs = {}, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (name.startsWith("on")) el.addEventListener(name.slice(2), value);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === undefined || child === null || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

export function clear(el) { el.replaceChildren(); return el; }

export const short = (id) => (id ? id.slice(0, 8) : "");

export function percent(fraction, digits = 1) {
  return fraction === null || fraction === undefined ? "–" : `${(100 * fraction).toFixed(digits)}%`;
}

export function num(value, digits = 3) {
  if (value === null || value === undefined) return "–";
  if (typeof value === "boolean") return value ? "yes" : "no";
  if (typeof value !== "number") return String(value);
  if (Number.isInteger(value)) return value.toLocaleString("en");
  const abs = Math.abs(value);
  return abs !== 0 && (abs < 1e-3 || abs >= 1e5) ? value.toExponential(2) : value.toFixed(digits);
}

export function eta(seconds) {
  if (seconds === null || seconds === undefined) return "–";
  const s = Math.round(seconds);
  if (s >= 3600) return `${Math.floor(s / 3600)} h ${String(Math.floor((s % 3600) / 60)).padStart(2, "0")} min`;
  if (s >= 60) return `${Math.floor(s / 60)} min ${String(s % 60).padStart(2, "0")} s`;
  return `${s} s`;
}

export function when(iso) {
  if (!iso) return "–";
  return new Date(iso).toLocaleString(undefined, { dateStyle: "medium", timeStyle: "short" });
}

export function badge(status) {
  return h("span", { class: `badge ${status}` }, status);
}

export function progressBar(fraction, label) {
  const bar = h("div", { class: "progress", role: "progressbar", "aria-valuemin": 0, "aria-valuemax": 100,
                         "aria-valuenow": Math.round(100 * (fraction || 0)), title: label || "",
                         "aria-label": label || "progress" },
                h("div", { class: "fill" }));
  bar.firstChild.style.width = `${Math.min(100, Math.max(0, 100 * (fraction || 0)))}%`;
  return bar;
}

export function errorBox(error) {
  const box = h("div", { class: "error", role: "alert" }, h("strong", {}, error.title || "Error"),
                error.detail ? ` ${error.detail}` : (error.title ? "" : ` ${error.message || error}`));
  if (error.errors && error.errors.length) {
    box.append(h("ul", {}, error.errors.map((e) => h("li", {}, h("code", {}, e.field), ` ${e.message}`))));
  }
  return box;
}
