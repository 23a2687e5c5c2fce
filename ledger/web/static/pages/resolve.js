// Resolve: one search box for every identifier form; the answer with its twin link, token, licences,
// provenance and proof. URL: /resolve/<identifier>[?height=H | ?at=ISO-time].

import { get, keyOfPath, memberName, need, pathOf, resolveUrl } from "../api.js";
import { check, verdictEl } from "../check.js";
import { badge, externalLink, facts, h, humanIdentifier, message, table, timeEl } from "../dom.js";
import { proofPanel } from "../proof.js";
import { navigate, replaceUrl } from "../router.js";

/**
 * What was typed or scanned -> [identifier text, page parameters]. Only what the node cannot know is
 * handled here: links to these pages (a scanned label) and Handle REST URLs. Everything else (Handles,
 * GS1 Digital Link URIs and paths, EPC URNs, element strings) goes to the node as typed.
 */
export function normalise(input) {
  const text = input.trim();
  if (/^https?:\/\//i.test(text)) {
    let url = null;
    try {
      url = new URL(text);
    } catch {
      url = null;
    }
    if (url && url.pathname.startsWith("/resolve/")) {
      const p = url.searchParams;
      return [keyOfPath(url.pathname.slice("/resolve/".length)), { height: p.get("height"), at: p.get("at") }];
    }
    const i = url ? url.pathname.indexOf("/api/handles/") : -1;
    if (i >= 0) return [keyOfPath(url.pathname.slice(i + "/api/handles/".length)), {}];
  }
  return [text, {}];
}

function localInput(iso) {
  // <input type=datetime-local> shows local time without a zone.
  if (!iso || Number.isNaN(Date.parse(iso))) return "";
  const d = new Date(iso);
  const p = n => String(n).padStart(2, "0");
  return `${d.getFullYear()}-${p(d.getMonth() + 1)}-${p(d.getDate())}T${p(d.getHours())}:${p(d.getMinutes())}:${p(d.getSeconds())}`;
}

function searchForm(value, query) {
  const input = h("input", {
    id: "q", name: "q", type: "search", value, required: true, autocomplete: "off", autocapitalize: "off",
    spellcheck: "false", enterkeyhint: "search", "aria-describedby": "q-hint",
  });
  const height = h("input", { id: "height", name: "height", type: "number", min: "0", step: "1", inputmode: "numeric",
    value: query.get("height") || "" });
  const at = h("input", { id: "at", name: "at", type: "datetime-local", step: "1", value: localInput(query.get("at")) });
  const asOf = h("details", { open: Boolean(query.get("height") || query.get("at")) },
    h("summary", {}, "As of a past height or date"),
    h("div", { class: "row" },
      h("div", { class: "field" }, h("label", { for: "height" }, "Block height"), height),
      h("div", { class: "field" }, h("label", { for: "at" }, "or date and time (your local time)"), at)),
    h("p", { class: "hint" }, "Leave both empty for the current answer."));
  const form = h("form", { class: "search", role: "search" },
    h("div", { class: "field" },
      h("label", { for: "q" }, "Identifier, GS1 Digital Link, EPC URN or scanned URL"),
      h("div", { class: "row" }, h("div", { class: "grow" }, input), h("button", { type: "submit" }, "Resolve"))),
    h("p", { class: "hint", id: "q-hint" },
      "For example 88.100.1/EQ-2024-000001, https://id.example/01/09506000134376/21/12345, " +
      "/01/09506000134376/21/12345 or urn:epc:id:sgtin:9506000.013437.12345."),
    asOf);
  form.addEventListener("submit", event => {
    event.preventDefault();
    const [id, extra] = normalise(input.value);
    if (!id) return;
    const params = { height: height.value || extra.height, at: at.value ? new Date(at.value).toISOString() : extra.at };
    if (params.height) params.at = null; // a height is exact; it wins over a date
    navigate(resolveUrl(id, params));
  });
  return form;
}

function blockLink(height) {
  return h("a", { href: `/block/${height}` }, `block ${height}`);
}

function memberEl(id, name) {
  return h("span", { title: id }, name || id);
}

function valueCell(v) {
  if (v.type === "URL" || v.type === "TWIN") return externalLink(v.value);
  if (v.type === "NFT") return h("a", { href: `/token/${encodeURIComponent(v.value)}` }, v.value);
  return h("span", { class: "wrap" }, v.value);
}

const CHANGES = {
  "id.register": "Identifier registered", "id.update": "Values replaced", "id.value_set": "Value set",
  "id.value_remove": "Value removed", "id.delete": "Identifier deleted", "asset.bind": "Token bound to it",
  "asset.decommission": "Token burned: decommissioned",
};
const EVENTS = {
  mint: "Token minted", approve: "Approval set", lease: "Leased", lock: "Locked", unlock: "Unlocked",
  transfer: "Transferred", burn: "Burned (decommissioned)",
};

async function timeline(entries) {
  const items = await Promise.all(entries.map(async e => {
    const [actor, from, to] = await Promise.all([memberName(e.actor), memberName(e.from), memberName(e.to)]);
    const parts = [h("strong", {}, e.what)];
    if (e.from || e.to) parts.push(` ${from || e.from || "—"} → ${to || e.to || "—"}`);
    if (e.detail) parts.push(h("span", { class: "muted" }, ` (${e.detail})`));
    return h("li", { "data-source": e.source, "data-checked": e.checked ? "yes" : "no" },
      h("div", { class: "when" }, timeEl(e.time), " · ", blockLink(e.height), actor ? ` · by ${actor}` : ""),
      h("div", {}, parts, e.checked ? [" ", badge("ok", "checked")] : null));
  }));
  return items.length ? h("ol", { class: "timeline" }, items) : h("p", { class: "muted" }, "No history.");
}

function checkedBadge(result, what) {
  if (result.state === "ok") return badge("ok", "Checked in this browser");
  if (result.state === "failed") return badge("bad", `Check failed: ${result.verdict.reason}`);
  return h("span", { title: `${what} is not checked: pin the genesis file (see the proof below)` }, badge("warn", "Not checked"));
}

async function tokenSection(token, asOf, signal) {
  const enc = encodeURIComponent(token);
  // The token and its provenance as of the answer's height, with a proof this browser checks.
  const [asset, licences] = await Promise.all([
    get(`/v1/assets/${enc}?proof=true&history=true&height=${asOf}`, { signal }), get(`/v1/assets/${enc}/licences`, { signal }),
  ]);
  if (!asset.ok) return { card: h("p", { class: "muted" }, `Token ${token} is not on this ledger.`), events: [] };
  const result = await check(asset.text);
  const a = asset.body.asset;
  const [owner, user] = await Promise.all([memberName(a.owner), memberName(asset.body.user_of)]);
  const state = a.burned ? badge("burned", "Burned") : a.locked ? badge("warn", "Locked") : badge("ok", "Transferable");
  const card = h("section", { class: "card token", "aria-labelledby": "token-title", "data-check": result.state },
    h("h2", { id: "token-title" }, "Token ", h("a", { href: `/token/${enc}`, class: "token-link" }, token)),
    h("p", { class: "token-check" }, checkedBadge(result, "The token")),
    facts([
      ["Owner", a.owner ? memberEl(a.owner, owner) : "none (burned)"],
      ["Kind", a.kind],
      ["State", state],
      ["Leased to", asset.body.user_of ? [memberEl(asset.body.user_of, user), " until ", timeEl(a.user_expires)] : null],
      ["As of", blockLink(asset.body.height)],
    ]));
  const active = licences.ok ? licences.body.licences.filter(l => l.active) : [];
  const licenceCard = h("section", { class: "card licences", "aria-labelledby": "licences-title" },
    h("h2", { id: "licences-title" }, "Active licences"),
    active.length
      ? h("ul", {}, active.map(l => h("li", {}, h("strong", {}, l.holder_name || l.holder), ` may use it for ${l.purposes.join(", ")} until `,
        timeEl(l.valid_until), l.parent ? " (sublicence)" : "")))
      : h("p", { class: "muted" }, "None."),
    h("p", { class: "hint" }, "A listing from this node, not checked in this browser; a rights check is: ",
      h("code", {}, "ledger rights check"), "."),
    h("p", {}, h("a", { href: `/token/${enc}#licences` }, "The whole licence tree, with revoked and expired branches")));
  const events = (asset.body.history || []).map(e => ({
    source: "token", time: e.timestamp, height: e.height, what: EVENTS[e.event] || e.event, actor: e.actor,
    from: e.from_member, to: e.to_member, detail: e.detail, checked: result.state === "ok",
  }));
  return { card: h("div", { class: "grid" }, card, licenceCard), events };
}

async function showAnswer(view, body, text, context) {
  const { signal, result } = context;
  const record = body.record;
  const values = [...record.values].sort((x, y) => x.index - y.index);
  const twin = values.find(v => v.type === "TWIN") || values.find(v => v.type === "URL");
  const desc = values.find(v => v.type === "DESC");
  const [creator, recordHistory] = await Promise.all([
    memberName(record.created_by),
    get(`/v1/resolve/${pathOf(body.identifier)}/history?height=${body.height}`, { signal }),
  ]);
  view.append(context.asOfNote);
  if (desc) view.append(h("p", { class: "description" }, desc.value));
  if (twin) {
    view.append(h("div", { class: "twin" },
      h("span", {}, twin.type === "TWIN" ? "Digital twin:" : "Link:"),
      externalLink(twin.value, twin.value, { class: "button twin-link" })));
  }
  view.append(h("section", { class: "card values", "aria-labelledby": "values-title" },
    h("h2", { id: "values-title" }, "Values"),
    table([{ text: "Index", num: true }, "Type", "Value", { text: "Set", cls: "when" }], values.map(v =>
      h("tr", { "data-type": v.type }, h("td", { class: "num" }, String(v.index)), h("td", {}, v.type),
        h("td", { class: "wrap" }, valueCell(v)), h("td", { class: "when" }, timeEl(v.timestamp))))),
    facts([
      ["Registered", [timeEl(record.created_at), " in ", blockLink(record.created_height), " by ",
        memberEl(record.created_by, creator)]],
      ["Last changed", blockLink(record.updated_height)],
    ]),
    h("p", { class: "no-print" }, h("a", { href: `/labels?id=${encodeURIComponent(body.identifier)}` }, "Print a nameplate label"))));
  const tokens = values.filter(v => v.type === "NFT").map(v => v.value);
  const events = (recordHistory.ok ? recordHistory.body.history : []).map(e => ({
    source: "record", time: e.time, height: e.height, what: CHANGES[e.change] || e.change, actor: e.actor,
  }));
  for (const token of tokens) {
    const part = await tokenSection(token, body.height, signal);
    view.append(part.card);
    events.push(...part.events);
  }
  events.sort((x, y) => x.height - y.height || x.time - y.time);
  view.append(h("section", { class: "card provenance", "aria-labelledby": "timeline-title" },
    h("h2", { id: "timeline-title" }, "Provenance"), await timeline(events),
    h("p", { class: "hint" }, "Token events marked checked come with the token's proof; the record's changes are ",
      "listed by this node, not checked in this browser.")));
  view.append(await proofPanel({ proof: body.proof, text, key: body.identifier, updatedHeight: record.updated_height, signal,
    result }));
}

async function asOfHeight(query, signal) {
  // ?height= is exact; ?at= (a time) becomes the last block at or before it.
  const height = query.get("height");
  const at = query.get("at");
  if (height || !at) return { height, note: null };
  const found = await need(`/v1/blocks?limit=1&until=${encodeURIComponent(at)}`, { signal });
  if (!found.blocks.length) return { height: null, note: null, error: `The ledger has no block at or before ${at}.` };
  const b = found.blocks[0];
  return { height: String(b.height), note: ["as of ", timeEl(Date.parse(at)), " (the last block then was ", blockLink(b.height), ")"] };
}

function asOfBanner(body, query, note) {
  const past = query.get("height") || query.get("at");
  if (!past) return message("info", "Current answer, from ", blockLink(body.height), ". ",
    h("a", { href: resolveUrl(body.identifier, { height: body.height }) }, "Link to this exact answer"));
  return message("info", badge("plain", "Past answer"), " ", note || ["as of ", blockLink(body.height)], ". ",
    h("a", { href: resolveUrl(body.identifier) }, "See the current answer"));
}

const ERRORS = { invalid_identifier: "Not a valid identifier.", not_found: "Not found.", unreachable: "The node is unreachable." };

export async function render(view, { params, query, signal }) {
  const asked = keyOfPath(params[0] || "");
  const title = h("h1", {}, asked ? humanIdentifier(asked) : "Resolve an identifier");
  view.append(title, searchForm(asked, query));
  document.title = asked ? `${asked} · Ledger explorer` : "Resolve · Ledger explorer";
  if (!asked) return;
  const status = h("p", { class: "muted", role: "status" }, "Resolving…");
  view.append(status);
  const asOf = await asOfHeight(query, signal);
  if (asOf.error) {
    status.replaceWith(message("error", asOf.error));
    return;
  }
  const q = new URLSearchParams({ proof: "true", anchor: "true" });
  if (asOf.height) q.set("height", asOf.height);
  const res = await get(`/v1/resolve/${pathOf(asked)}?${q}`, { signal });
  status.remove();
  const body = res.body;
  if (body.identifier && body.identifier !== asked) {
    // Keep the address bar at the canonical key, so the link shared is the same for every form.
    replaceUrl(resolveUrl(body.identifier, { height: query.get("height"), at: query.get("at") }));
    title.textContent = humanIdentifier(body.identifier);
    view.insertBefore(h("p", { class: "muted" }, `You asked for ${asked}.`), title.nextSibling);
  }
  // This browser checks the answer against the pinned genesis before showing it.
  const result = body.proof ? await check(res.text) : null;
  if (result) view.append(verdictEl(result));
  if (res.ok) {
    await showAnswer(view, body, res.text, { signal, result, asOfNote: asOfBanner(body, query, asOf.note) });
  } else if (res.status === 404 && body.proof) {
    view.append(h("div", { class: "banner notfound", role: "status", id: "not-found" },
      h("h2", {}, "Not found"),
      h("p", {}, `${humanIdentifier(body.identifier)} is not registered on this ledger as of block ${body.height}. `,
        "The proof below shows that no record exists under this key in that block's state.")));
    view.append(await proofPanel({ proof: body.proof, text: res.text, key: body.identifier, signal, result }));
  } else {
    view.append(message("error", h("strong", {}, ERRORS[body.error] || "Error."), " ", body.message || ""));
  }
}
