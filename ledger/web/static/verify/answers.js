// Answers around a proof (docs/proofs.md, sections 9 and 10): each kind's fields, and the ledger rules a
// checker re-runs over the proven entries. Adding a kind is one line in KINDS and one checker.

import { bytesEqual, fromUtf8, isInt, isObject, isText, jsonEqual, toHex, utf8 } from "./codec.js";
import { ASSET, ASSET_EVENT, IDENTIFIER_RECORD, LICENCE, MEMBER, TEXT_LIST, decode, refuse } from "./records.js";

export class State {
  constructor(proven) {
    this.values = proven.values;
    this.time = proven.timestamp;
  }

  raw(key) {
    const k = toHex(utf8(key));
    if (!this.values.has(k)) throw refuse("proof_incomplete", `the answer depends on ${key}, which the proof does not cover`);
    return this.values.get(k);
  }

  record(key, schema, what) {
    const raw = this.raw(key);
    return raw === null ? null : decode(raw, schema, what);
  }
}

function want(doc, name, types, nullable = false) {
  const v = doc[name];
  if (nullable && (v === null || v === undefined)) return null;
  const ok = types.some(t => (t === "int" ? isInt(v) : t === "object" ? isObject(v) : t === "array" ? Array.isArray(v)
    : typeof v === t));
  if (!ok) throw refuse("answer_fields", `the answer's ${name} is not a ${types.join("/")}`);
  return v;
}

function keyIs(k0, namespace, name, what) {
  if (!isText(name) || !bytesEqual(utf8(namespace + name), k0)) {
    throw refuse("answer_key", `the answer is about ${what} ${name}, the proof about ${fromUtf8(k0)}`);
  }
}

function derived(name, claimed, proven) {
  if (!jsonEqual(claimed, proven)) throw refuse("answer_derived", `the answer's ${name} differs from what the proof gives`);
}

function presence(claimed, proven, what) {
  if (claimed !== proven) {
    throw refuse("answer_presence", `the answer says the ${what} ${claimed ? "exists" : "does not exist"}; ` +
      `the proof proves it ${proven ? "present" : "absent"}`);
  }
}

function record(claimed, proven, what) {
  if (!jsonEqual(claimed, proven)) throw refuse("answer_record", `the answer's ${what} differs from the proven record`);
}

const lt = (a, b) => BigInt(a) < BigInt(b);
const userAt = (asset, t) => (asset.user && lt(t, asset.user_expires) ? asset.user : "");

function inactive(s, lic, t) {
  let current = lic;
  let prefix = "";
  for (;;) {
    if (current.revoked) return `${prefix}revoked`;
    if (lt(t, current.valid_from)) return `${prefix}not_yet_valid`;
    if (!lt(t, current.valid_until)) return `${prefix}expired`;
    if (!current.parent) return "";
    current = s.record(`licence/${current.parent}`, LICENCE, "Licence");
    prefix = "ancestor_";
    if (current === null) return "ancestor_missing";
  }
}

function decide(s, token, holder, purpose, t) {
  const asset = s.record(`asset/${token}`, ASSET, "Asset");
  if (asset === null) return [false, "unknown_token", ""];
  if (asset.burned) return [false, "token_burned", ""];
  const member = s.record(`member/${holder}`, MEMBER, "Member");
  if (member === null || !member.active) return [false, "holder_not_member", ""];
  const ids = s.record(`licence-holder/${token}/${holder}`, TEXT_LIST, "licence list") || [];
  const held = ids.map(id => s.record(`licence/${id}`, LICENCE, "Licence")).filter(x => x !== null);
  if (!held.length) return [false, "no_licence", ""];
  const covering = held.filter(x => x.purposes.includes(purpose));
  if (!covering.length) return [false, "purpose_not_granted", held[0].id];
  let first = null;
  for (const x of covering) {
    const reason = inactive(s, x, t);
    if (!reason) return [true, "allowed", x.id];
    first = first || [reason, x.id];
  }
  return [false, first[0], first[1]];
}

const OFFSET_ONE = new Set(["00", "01", "8003", "8006"]);

function owningPrefix(s, key) {
  if (!key.startsWith("gs1/")) {
    const p = key.split("/")[0];
    if (s.raw(`prefix/${p}`) === null) throw refuse("answer_derived", `the prefix ${p} is not registered`);
    return p;
  }
  const [, ai, value] = key.split("/");
  const digits = (value.slice(OFFSET_ONE.has(ai) ? 1 : 0).match(/^[0-9]*/) || [""])[0];
  for (let n = Math.min(12, digits.length); n >= 4; n--) {
    const candidate = `gs1:${digits.slice(0, n)}`;
    if (s.raw(`prefix/${candidate}`) !== null) return candidate;
  }
  throw refuse("answer_derived", "no registered company prefix owns the identifier");
}

function utc(ms) {
  const seconds = BigInt(ms) / 1000n;
  return `${new Date(Number(seconds) * 1000).toISOString().slice(0, 19)}Z`;
}

function handleValues(rec, prefix) {
  const out = rec.values.map(v => ({
    index: v.index, type: v.type, data: { format: "string", value: v.value }, ttl: v.ttl, timestamp: utc(v.timestamp),
  }));
  out.push({
    index: 100, type: "HS_ADMIN",
    data: { format: "admin", value: { handle: `0.NA/${prefix}`, index: 200, permissions: "011111110011" } },
    ttl: 86400, timestamp: utc(rec.created_at),
  });
  return out.sort((a, b) => (lt(a.index, b.index) ? -1 : lt(b.index, a.index) ? 1 : 0));
}

const typeMatches = (t, w) => (w.endsWith(".") ? t === w.slice(0, -1) || t.startsWith(w) : t === w);

function native(doc, s, k0) {
  const ident = want(doc, "identifier", ["string"]);
  const claimed = want(doc, "record", ["object"], true);
  const hasError = "error" in doc || "message" in doc;
  if (hasError) {
    want(doc, "error", ["string"]);
    want(doc, "message", ["string"]);
    if (claimed !== null && claimed !== undefined) throw refuse("answer_fields", "an answer with a record carries no error");
  }
  keyIs(k0, "id/", ident, "identifier");
  const rec = s.record(fromUtf8(k0), IDENTIFIER_RECORD, "IdentifierRecord");
  presence(claimed !== null && claimed !== undefined, rec !== null, "identifier");
  if (rec !== null) {
    record(claimed, rec, "record");
    return [true, rec];
  }
  if (hasError) {
    derived("error", doc.error, "not_found");
    derived("message", doc.message, `${ident} is not registered`);
  }
  return [false, null];
}

function handle(doc, s, k0) {
  const code = want(doc, "responseCode", ["int"]);
  const name = want(doc, "handle", ["string"]);
  const values = "values" in doc ? want(doc, "values", ["array"]) : null;
  let filter = null;
  if ("filter" in doc) {
    filter = want(doc, "filter", ["object"]);
    const keys = Object.keys(filter);
    const idx = filter.index;
    const typ = filter.type;
    if (keys.length !== 2 || !Array.isArray(idx) || !Array.isArray(typ) || !idx.every(isInt)
      || !typ.every(t => typeof t === "string") || !(idx.length || typ.length)) {
      throw refuse("answer_fields", "the answer's filter is not {index: [integers], type: [strings]}");
    }
  }
  keyIs(k0, "id/", name, "handle");
  const rec = s.record(fromUtf8(k0), IDENTIFIER_RECORD, "IdentifierRecord");
  presence(!jsonEqual(code, 100), rec !== null, "handle");
  if (rec === null) {
    if (values !== null || filter !== null) throw refuse("answer_fields", "an answer of responseCode 100 carries no values");
    return [false, null];
  }
  const every = handleValues(rec, owningPrefix(s, name));
  const selected = filter === null ? every : every.filter(v => filter.index.some(i => jsonEqual(i, v.index))
    || filter.type.some(w => typeMatches(v.type, w)));
  derived("responseCode", code, selected.length ? 1 : 200);
  if (selected.length) derived("values", values, selected);
  else if (values !== null) throw refuse("answer_derived", "an answer of responseCode 200 carries no values");
  return [true, rec];
}

function asset(doc, s, k0) {
  const claimed = want(doc, "asset", ["object"]);
  const token = want(claimed, "id", ["string"]);
  const user = want(doc, "user_of", ["string"]);
  if (("history" in doc) !== ("history_start" in doc)) throw refuse("answer_fields", "history and history_start come together");
  const events = "history" in doc ? want(doc, "history", ["array"]) : null;
  const start = events !== null ? want(doc, "history_start", ["int"]) : 0;
  const topId = "id" in doc ? want(doc, "id", ["string"]) : null;
  keyIs(k0, "asset/", token, "token");
  if (topId !== null && topId !== token) throw refuse("answer_key", "the top-level id names another token");
  const rec = s.record(fromUtf8(k0), ASSET, "Asset");
  presence(true, rec !== null, "token");
  record(claimed, rec, "asset");
  derived("user_of", user, userAt(rec, s.time));
  for (const name of ["owner", "kind", "burned"]) if (name in doc) derived(name, doc[name], rec[name]);
  if (events !== null) {
    const total = BigInt(rec.events);
    const first = total - 999n > 1n ? total - 999n : 1n;
    derived("history_start", start, Number(first));
    derived("history length", events.length, Number(total - BigInt(start) + 1n));
    events.forEach((event, i) => {
      const seq = String(BigInt(start) + BigInt(i)).padStart(8, "0");
      const proven = s.record(`asset-h/${token}/${seq}`, ASSET_EVENT, "AssetEvent");
      if (proven === null) throw refuse("answer_derived", `event ${seq} is absent`);
      derived(`history event ${seq}`, event, proven);
    });
  }
  return [true, rec];
}

function licence(doc, s, k0) {
  const claimed = want(doc, "licence", ["object"]);
  const id = want(claimed, "id", ["string"]);
  const active = want(doc, "active", ["boolean"]);
  const reason = want(doc, "inactive_reason", ["string"]);
  keyIs(k0, "licence/", id, "licence");
  const rec = s.record(fromUtf8(k0), LICENCE, "Licence");
  presence(true, rec !== null, "licence");
  record(claimed, rec, "licence");
  const proven = inactive(s, rec, s.time);
  derived("inactive_reason", reason, proven);
  derived("active", active, proven === "");
  return [true, rec];
}

function rights(doc, s, k0) {
  const token = want(doc, "token", ["string"]);
  const holder = want(doc, "holder", ["string"]);
  const purpose = want(doc, "purpose", ["string"]);
  const at = want(doc, "at", ["int"]);
  const allowed = want(doc, "allowed", ["boolean"]);
  const reason = want(doc, "reason", ["string"]);
  const licenceId = want(doc, "licence_id", ["string"], true);
  keyIs(k0, "asset/", token, "token");
  const [ok, why, deciding] = decide(s, token, holder, purpose, at);
  derived("allowed", allowed, ok);
  derived("reason", reason, why);
  derived("licence_id", licenceId, deciding || null);
  const rec = s.record(fromUtf8(k0), ASSET, "Asset");
  return [rec !== null, rec];
}

// name, namespace, marker, required, optional, checker: adding a kind is one line and one checker.
export const KINDS = [
  ["identifier", "id/", null, ["identifier", "height"], ["record", "error", "message"], native],
  ["handle", "id/", "responseCode", ["responseCode", "handle"], ["values", "filter"], handle],
  ["asset", "asset/", null, ["height", "asset", "user_of"], ["history", "history_start", "id", "owner", "kind", "burned"], asset],
  ["rights-check", "asset/", "allowed", ["token", "holder", "purpose", "at", "height", "allowed", "reason", "licence_id"], [], rights],
  ["licence", "licence/", null, ["height", "licence", "active", "inactive_reason"], [], licence],
];
