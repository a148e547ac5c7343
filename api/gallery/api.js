// Talking to /v1 with the API key kept in this tab's sessionStorage (gone when the tab closes).
// Images are fetched with the key too (an <img src> cannot carry a header) and shown from
// blob: URLs, which are released when the view changes.

const KEY = "kgan.apiKey";

export const session = {
  get key() { return sessionStorage.getItem(KEY); },
  set(key) { sessionStorage.setItem(KEY, key.trim()); },
  clear() { sessionStorage.removeItem(KEY); },
};

export class ApiError extends Error {
  // problem: the whole problem+json body, for fields a page acts on (a 409's `blocking` ids).
  constructor(status, title, detail, errors = [], problem = {}) {
    super(detail ? `${title}: ${detail}` : title);
    Object.assign(this, { status, title, detail, errors, problem });
  }

  static async from(response) {
    let problem = {};
    try { problem = await response.json(); } catch { /* not JSON: use the status line */ }
    return new ApiError(response.status, problem.title || response.statusText || `HTTP ${response.status}`,
                        problem.detail || "", problem.errors || [], problem);
  }
}

// Called when the key stops working (revoked, or typed wrong): the app sends the person to sign in.
let onUnauthorized = () => {};
export function whenUnauthorized(fn) { onUnauthorized = fn; }

export async function api(path, { method = "GET", body, headers = {}, signal } = {}) {
  const init = { method, signal, headers: { Authorization: `Bearer ${session.key}`, ...headers } };
  if (body instanceof FormData) init.body = body;
  else if (body !== undefined) {
    init.body = JSON.stringify(body);
    init.headers["Content-Type"] = "application/json";
  }
  const response = await fetch(path, init);
  if (!response.ok) {
    const error = await ApiError.from(response);
    if (response.status === 401) onUnauthorized(error);
    throw error;
  }
  return response;
}

export const getJSON = async (path, options) => (await api(path, options)).json();
export const postJSON = async (path, body) => (await api(path, { method: "POST", body })).json();

// The server's `next` link is absolute; keep to this origin's path so a proxy in front changes nothing.
const local = (url) => { const u = new URL(url, location.href); return u.pathname + u.search; };

export async function allPages(path) {
  const items = [];
  let page = await getJSON(path);
  items.push(...page.items);
  while (page.next) {
    page = await getJSON(local(page.next));
    items.push(...page.items);
  }
  return items;
}

const objectURLs = new Set();

export async function imageURL(path) {
  const blob = await (await api(path)).blob();
  const url = URL.createObjectURL(blob);
  objectURLs.add(url);
  return url;
}

export function releaseImages() {
  for (const url of objectURLs) URL.revokeObjectURL(url);
  objectURLs.clear();
}

export function query(params) {
  const search = new URLSearchParams();
  for (const [name, value] of Object.entries(params)) {
    if (value === undefined || value === null) continue;
    for (const v of Array.isArray(value) ? value : [value]) search.append(name, String(v));
  }
  const text = search.toString();
  return text ? `?${text}` : "";
}
