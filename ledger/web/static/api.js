// The node's public JSON API, always on the node that served the page (relative URLs only).

export class ApiFailure extends Error {
  constructor(status, body) {
    super((body && body.message) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

/** GET a JSON route: {ok, status, body, text}; `text` is the exact answer (a proof is downloaded as is). */
export async function get(path, { signal } = {}) {
  let response;
  try {
    response = await fetch(path, { signal, headers: { accept: "application/json" } });
  } catch (err) {
    if (err.name === "AbortError") throw err;
    return { ok: false, status: 0, body: { error: "unreachable", message: "the node did not answer" }, text: "" };
  }
  const text = await response.text();
  let body;
  try {
    body = JSON.parse(text);
  } catch {
    body = { error: "not_json", message: text.slice(0, 200) };
  }
  return { ok: response.ok, status: response.status, body, text };
}

/** GET a JSON route whose failure ends the page: its body, or an ApiFailure. */
export async function need(path, options) {
  const r = await get(path, options);
  if (!r.ok) throw new ApiFailure(r.status, r.body);
  return r.body;
}

/** An identifier or storage key as URL path segments (each percent-encoded, the slashes kept), for
 * both API paths and page paths; the node decodes the path once and gets the key back. */
export function pathOf(key) {
  return key.split("/").map(encodeURIComponent).join("/");
}

export function keyOfPath(path) {
  return path.split("/").map(part => {
    try {
      return decodeURIComponent(part);
    } catch {
      return part;
    }
  }).join("/");
}

export function resolveUrl(key, params = {}) {
  const query = new URLSearchParams(Object.entries(params).filter(([, v]) => v !== null && v !== undefined && v !== ""));
  const q = query.toString();
  return `/resolve/${pathOf(key)}${q ? `?${q}` : ""}`;
}

// Names change rarely: look each up once per page load.
const members = new Map();

/** A member's name (a promise; null when unknown). */
export function memberName(id) {
  if (!id) return Promise.resolve(null);
  if (!members.has(id)) {
    members.set(id, get(`/v1/members/${encodeURIComponent(id)}`).then(r => (r.ok ? r.body.name : null)));
  }
  return members.get(id);
}

let validatorList = null;

/** id -> {name, ...} of the genesis validators (from /v1/network, once). */
export function validators() {
  if (validatorList === null) {
    validatorList = get("/v1/network").then(r => new Map((r.ok ? r.body.validators : []).map(v => [v.id, v])));
  }
  return validatorList;
}
