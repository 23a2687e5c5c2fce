// Building DOM nodes and formatting values. Everything from the ledger is untrusted text: it is only
// ever set as text or as an attribute value, never parsed as HTML.

const SVG_NS = "http://www.w3.org/2000/svg";

function build(el, attrs, children) {
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name.startsWith("on") && typeof value === "function") {
      el.addEventListener(name.slice(2), value);
    } else if (name === "text") {
      el.textContent = String(value);
    } else {
      el.setAttribute(name, value === true ? "" : String(value));
    }
  }
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : String(child));
  }
  return el;
}

/** h("a", {href: "/x", class: "c"}, "text", otherNode): an element with attributes and children. */
export function h(tag, attrs = {}, ...children) {
  return build(document.createElement(tag), attrs, children);
}

/** The same for SVG elements (charts). */
export function s(tag, attrs = {}, ...children) {
  return build(document.createElementNS(SVG_NS, tag), attrs, children);
}

/** A link that only opens http(s) URLs: a record value such as "javascript:..." stays plain text. */
export function externalLink(url, text, attrs = {}) {
  let ok = false;
  try {
    ok = ["http:", "https:"].includes(new URL(url).protocol);
  } catch {
    ok = false;
  }
  if (!ok) return h("span", { class: "mono" }, text ?? url);
  return h("a", { href: url, rel: "noopener noreferrer", class: "wrap", ...attrs }, text ?? url);
}

export function badge(kind, text) {
  return h("span", { class: `badge ${kind}` }, text);
}

export function facts(pairs) {
  return h("dl", { class: "facts" },
    pairs.filter(p => p && p[1] !== null && p[1] !== undefined && p[1] !== "")
      .map(([k, v]) => [h("dt", {}, k), h("dd", {}, v)]));
}

export function table(headers, rows, attrs = {}) {
  return h("div", { class: "table-wrap" },
    h("table", attrs,
      h("thead", {}, h("tr", {}, headers.map(x => h("th", { scope: "col", class: x.num ? "num" : x.cls }, x.text ?? x)))),
      h("tbody", {}, rows)));
}

export function pad(n) {
  return String(n).padStart(2, "0");
}

/** Block times are ms since the epoch; shown in UTC so everyone reading a shared link sees the same. */
export function fmtTime(ms) {
  if (ms === null || ms === undefined) return "";
  const d = new Date(ms);
  return `${d.getUTCFullYear()}-${pad(d.getUTCMonth() + 1)}-${pad(d.getUTCDate())} ` +
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())} UTC`;
}

export function timeEl(ms) {
  return h("time", { datetime: new Date(ms).toISOString() }, fmtTime(ms));
}

/** Just the UTC time of day (the full date in its title): for lists of recent blocks. */
export function clockEl(ms) {
  const d = new Date(ms);
  return h("time", { datetime: d.toISOString(), title: fmtTime(ms) },
    `${pad(d.getUTCHours())}:${pad(d.getUTCMinutes())}:${pad(d.getUTCSeconds())}`);
}

export function fmtAgo(ms) {
  if (ms === null || ms === undefined) return "never";
  if (ms < 1000) return "just now";
  const s = ms / 1000;
  if (s < 90) return `${s.toFixed(s < 10 ? 1 : 0)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  return `${Math.round(s / 3600)} h ago`;
}

export function short(hex, n = 12) {
  if (!hex) return "";
  return hex.length > n + 2 ? `${hex.slice(0, n)}…` : hex;
}

/** A hash shown short, in full in its title, and copyable as text. */
export function hashEl(hex, n = 16) {
  return h("span", { class: "mono nowrap", title: hex }, short(hex, n));
}

/** GS1 keys (gs1/01/<gtin>/21/<serial>) in their human-readable form: (01)<gtin>(21)<serial>. */
export function humanIdentifier(key) {
  if (!key || !key.startsWith("gs1/")) return key;
  const parts = key.split("/").slice(1);
  let out = "";
  for (let i = 0; i + 1 < parts.length; i += 2) {
    let value = parts[i + 1];
    try {
      value = decodeURIComponent(value);
    } catch {
      // keep the escaped form
    }
    out += `(${parts[i]})${value}`;
  }
  return out || key;
}

export function message(kind, ...children) {
  return h("div", { class: `banner ${kind}`, role: kind === "error" ? "alert" : "status" }, children);
}
