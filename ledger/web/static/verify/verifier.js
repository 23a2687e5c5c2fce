// The explorer's verifier: docs/proofs.md in the browser. It checks a proof, or an answer carrying one,
// against a genesis file and gives the verdict `ledger verify` gives: {valid, reason, message} or
// {valid, kind, height, key, present, unproven, record, ...}. No request leaves the page: the only inputs
// are the answer's text and the genesis the user pinned. Section numbers are the page's.

import {
  JsonFloat, bytesEqual, concat, fromHex, fromUtf8, isInt, isObject, isText, isUint, jsonEqual, pack, parseJson,
  toHex, unpack, utf8,
} from "./codec.js";
import { verifySignature } from "./ed25519.js";
import { sha256 as H } from "./sha2.js";

export const PROOF_TYPE = "ledger-state-proof/v2";

class Refused extends Error {
  constructor(reason, message) {
    super(message || reason);
    this.reason = reason;
  }
}

const refuse = (reason, message) => new Refused(reason, message);

// --- section 3: records ----------------------------------------------------------------------------------

const HANDLE_VALUE = [["index", "uint"], ["type", "text"], ["value", "text"], ["ttl", "uint"], ["timestamp", "uint"]];
const IDENTIFIER_RECORD = [["handle", "text"], ["values", ["list", HANDLE_VALUE]], ["created_height", "uint"],
  ["updated_height", "uint"], ["created_at", "uint"], ["created_by", "text"], ["created_tx", "text"]];
const MEMBER = [["id", "text"], ["name", "text"], ["public_key", "bytes"], ["roles", ["list", "text"]], ["active", "bool"]];
const ASSET = [["id", "text"], ["kind", "text"], ["owner", "text"], ["minter", "text"], ["uri", "text"],
  ["sha256", "bytes"], ["identifier", "text"], ["nft_index", "uint"], ["approved", "text"], ["user", "text"],
  ["user_expires", "uint"], ["locked", "bool"], ["burned", "bool"], ["events", "uint"], ["minted_height", "uint"],
  ["minted_at", "uint"]];
const ASSET_EVENT = [["seq", "uint"], ["event", "text"], ["height", "uint"], ["tx_id", "bytes"], ["timestamp", "uint"],
  ["actor", "text"], ["from_member", "text"], ["to_member", "text"], ["detail", "text"]];
const LICENCE = [["id", "text"], ["token", "text"], ["parent", "text"], ["depth", "uint"], ["grantor", "text"],
  ["holder", "text"], ["purposes", ["list", "text"]], ["valid_from", "uint"], ["valid_until", "uint"],
  ["sublicensable", "bool"], ["revoker", "text"], ["terms_uri", "text"], ["terms_hash", "bytes"],
  ["created_height", "uint"], ["created_at", "uint"], ["revoked", "bool"], ["revoked_by", "text"],
  ["revoked_height", "uint"], ["revoked_at", "uint"]];
const TEXT_LIST = ["list", "text"];

function asJson(value, type) {
  if (type === "uint") {
    if (!isUint(value)) throw new Error("uint");
    return value;
  }
  if (type === "bool" || type === "text") {
    if (typeof value !== (type === "bool" ? "boolean" : "string")) throw new Error(type);
    return value;
  }
  if (type === "bytes") {
    if (!(value instanceof Uint8Array)) throw new Error("bytes");
    return toHex(value);
  }
  if (!Array.isArray(value)) throw new Error("array");
  if (type[0] === "list") return value.map(v => asJson(v, type[1]));
  if (value.length !== type.length) throw new Error("record arity");
  return Object.fromEntries(type.map(([name, t], i) => [name, asJson(value[i], t)]));
}

function asTree(value, type) {
  if (type === "bytes") return fromHex(value);
  if (Array.isArray(type) && type[0] === "list") return value.map(v => asTree(v, type[1]));
  if (Array.isArray(type)) return type.map(([name, t]) => asTree(value[name], t));
  return value;
}

/** Strict decoding (section 2): the schema's types, and re-encoding gives the same bytes. */
function decode(raw, type, what) {
  try {
    const json = asJson(unpack(raw), type);
    if (!bytesEqual(pack(asTree(json, type)), raw)) throw new Error("not canonical");
    return json;
  } catch (err) {
    throw refuse("value_not_record", `the proven value is not a ${what} record (${err.message})`);
  }
}

// --- section 4: genesis --------------------------------------------------------------------------------

export const nodeId = publicKey => toHex(H(concat(utf8("ledger/id/v1"), publicKey)).subarray(0, 20));

export class Genesis {
  /** From the genesis file's text; throws if it is not one. */
  constructor(text) {
    const doc = typeof text === "string" ? parseJson(text) : text;
    if (!isObject(doc) || typeof doc.chain_id !== "string" || !isUint(doc.timestamp) || !Array.isArray(doc.validators)
      || !Array.isArray(doc.members) || !Array.isArray(doc.prefixes)) {
      throw new Error("not a genesis file");
    }
    this.doc = doc;
    this.chainId = doc.chain_id;
    this.validators = new Map(doc.validators.map(v => [nodeId(fromHex(v.public_key, 32)), fromHex(v.public_key, 32)]));
    const n = this.validators.size;
    const f = Math.floor((n - 1) / 3);
    this.quorum = Math.floor((n + f + 2) / 2);
    const d = doc;
    this.hash = H(pack([d.chain_id, d.timestamp, d.validators.map(v => [v.name, fromHex(v.public_key)]),
      d.members.map(m => [m.name, fromHex(m.public_key), [...m.roles]]), d.prefixes.map(p => [p.prefix, p.owner])]));
  }

  header0() {
    if (!this._header0) {
      const state = [];
      const put = (key, value) => state.push([H(utf8(key)), H(value)]);
      for (const m of this.doc.members) {
        const pk = fromHex(m.public_key);
        const id = nodeId(pk);
        const roles = [...new Set(m.roles)].sort((a, b) => (a < b ? -1 : a > b ? 1 : 0));
        put(`member/${id}`, pack([id, m.name, pk, roles, true]));
        put(`member-name/${m.name}`, utf8(id));
        put(`member-pk/${toHex(pk)}`, utf8(id));
      }
      for (const p of this.doc.prefixes) put(`prefix/${p.prefix}`, pack([p.prefix, p.owner, 0]));
      this._header0 = [0, this.hash, 0, this.doc.timestamp, H(new Uint8Array(0)), smtRoot(state, 0),
        H(new Uint8Array(0)), ""];
    }
    return this._header0;
  }
}

// --- section 7: the state tree -------------------------------------------------------------------------

const EMPTY = new Uint8Array(32);
const bit = (path, i) => (path[i >> 3] >> (7 - (i & 7))) & 1;
const leafHash = (path, valueHash) => H(concat(Uint8Array.of(0), path, valueHash));
const nodeHash = (left, right) => H(concat(Uint8Array.of(1), left, right));

function smtRoot(leaves, depth) {
  if (leaves.length === 0) return EMPTY;
  if (leaves.length === 1) return leafHash(leaves[0][0], leaves[0][1]);
  return nodeHash(smtRoot(leaves.filter(l => bit(l[0], depth) === 0), depth + 1),
    smtRoot(leaves.filter(l => bit(l[0], depth) === 1), depth + 1));
}

function smtHolds(root, key, value, siblings, leaf) {
  const path = H(key);
  const n = siblings.length;
  let node;
  if (value !== null) {
    if (leaf !== null) return false;
    node = leafHash(path, H(value));
  } else if (leaf === null) {
    node = EMPTY;
  } else {
    const [other, otherHash] = leaf;
    if (bytesEqual(other, path)) return false;
    for (let i = 0; i < n; i++) if (bit(other, i) !== bit(path, i)) return false;
    node = leafHash(other, otherHash);
  }
  for (let i = n - 1; i >= 0; i--) node = bit(path, i) ? nodeHash(siblings[i], node) : nodeHash(node, siblings[i]);
  return bytesEqual(node, root);
}

// --- section 8: RFC 9162 inclusion ---------------------------------------------------------------------

function inclusionHolds(leaf, index, size, proof, root) {
  if (!(index >= 0 && index < size)) return false;
  let fn = BigInt(index);
  let sn = BigInt(size) - 1n;
  let r = leaf;
  for (const p of proof) {
    if (sn === 0n) return false;
    if (fn % 2n === 1n || fn === sn) {
      r = nodeHash(p, r);
      while (fn % 2n === 0n && fn !== 0n) {
        fn >>= 1n;
        sn >>= 1n;
      }
    } else {
      r = nodeHash(r, p);
    }
    fn >>= 1n;
    sn >>= 1n;
  }
  return sn === 0n && bytesEqual(r, root);
}

// --- sections 5 and 6: the proof -----------------------------------------------------------------------

const malformed = what => refuse("malformed_proof", `malformed proof: ${what}`);

function obj(v, names, optional = []) {
  if (!isObject(v)) throw malformed("not an object");
  const keys = Object.keys(v);
  if (!names.every(n => keys.includes(n)) || !keys.every(k => names.includes(k) || optional.includes(k))) {
    throw malformed(`expected the members ${names.join(", ")}`);
  }
  return v;
}

function uint(v) {
  if (!isUint(v)) throw malformed("not an unsigned 64-bit integer");
  return v;
}

function text(v) {
  if (!isText(v)) throw malformed("not text");
  return v;
}

function hex(v, length = null) {
  const out = fromHex(v, length);
  if (out === null) throw malformed(`not ${length === null ? "" : `${length} bytes of `}lowercase hex`);
  return out;
}

const HEADER = ["height", "prev_hash", "view", "timestamp", "tx_root", "state_root", "history_root", "proposer"];

function header(v) {
  const d = obj(v, HEADER);
  return [uint(d.height), hex(d.prev_hash, 32), uint(d.view), uint(d.timestamp), hex(d.tx_root, 32),
    hex(d.state_root, 32), hex(d.history_root, 32), text(d.proposer)];
}

const headersEqual = (a, b) => a.every((x, i) => (x instanceof Uint8Array ? bytesEqual(x, b[i]) : jsonEqual(x, b[i])));

async function checkProof(p, g, options) {
  if (!isObject(p) || p.type !== PROOF_TYPE) throw refuse("unsupported_version", `not a ${PROOF_TYPE} document`);
  if (p.chain_id !== g.chainId) throw refuse("wrong_chain", `the proof is for chain ${p.chain_id}, genesis is ${g.chainId}`);
  obj(p, ["type", "chain_id", "height", "header", "certificate", "entries"], ["anchor"]);
  const height = uint(p.height);
  const hdr = header(p.header);
  const c = obj(p.certificate, ["height", "view", "block_hash", "signatures"]);
  const cert = [uint(c.height), uint(c.view), hex(c.block_hash, 32)];
  if (!Array.isArray(c.signatures)) throw malformed("signatures");
  const sigs = c.signatures.map(s => obj(s, ["validator", "signature"])).map(s => [text(s.validator), hex(s.signature, 64)]);
  if (!Array.isArray(p.entries) || p.entries.length < 1 || p.entries.length > 1100) throw malformed("entries");
  const entries = p.entries.map(e => {
    obj(e, ["key", "value", "smt"]);
    const key = hex(e.key);
    if (key.length === 0) throw malformed("empty key");
    const value = e.value === null ? null : hex(e.value);
    const s = obj(e.smt, ["siblings", "leaf"]);
    if (!Array.isArray(s.siblings) || s.siblings.length > 256) throw malformed("siblings");
    let leaf = s.leaf;
    if (leaf !== null) {
      if (!Array.isArray(leaf) || leaf.length !== 2) throw malformed("leaf");
      leaf = [hex(leaf[0], 32), hex(leaf[1], 32)];
    }
    return { key, keyHex: e.key, value, siblings: s.siblings.map(x => hex(x, 32)), leaf };
  });
  if (new Set(entries.map(e => e.keyHex)).size !== entries.length) throw malformed("two entries with one key");
  let anchor = null;
  if (p.anchor !== undefined && p.anchor !== null) {
    const a = obj(p.anchor, ["height", "header", "history_proof", "eth_chain_id", "contract", "tx_hash", "eth_block"]);
    const aHeader = header(a.header);
    if (!Array.isArray(a.history_proof)) throw malformed("history_proof");
    const path = a.history_proof.map(x => hex(x, 32));
    if (!isText(a.contract) || !/^0x[0-9a-fA-F]{40}$/.test(a.contract)) throw malformed("contract");
    hex(a.tx_hash, 32);
    if (BigInt(uint(a.eth_chain_id)) === 0n) throw malformed("eth_chain_id");
    uint(a.eth_block);
    anchor = { height: uint(a.height), header: aHeader, path, claim: a };
  }
  if (!jsonEqual(height, hdr[0])) throw refuse("height_mismatch", "the proof's height is not its header's");
  const blockHash = H(pack(hdr));
  const atZero = BigInt(hdr[0]) === 0n;
  if (atZero && !headersEqual(hdr, g.header0())) throw refuse("genesis_header", "header 0 is not this genesis file's block 0");
  if (!jsonEqual(cert[0], hdr[0]) || !jsonEqual(cert[1], hdr[2]) || !bytesEqual(cert[2], blockHash)) {
    throw refuse("certificate_mismatch", "the certificate is for another block");
  }
  const signers = sigs.map(s => s[0]);
  if (atZero) {
    if (signers.length) throw refuse("certificate_signers", "block 0 carries no signatures");
  } else {
    for (let i = 1; i < signers.length; i++) {
      if (!(signers[i - 1] < signers[i])) throw refuse("certificate_signers", "signers are repeated or unsorted");
    }
    const unknown = signers.find(v => !g.validators.has(v));
    if (unknown !== undefined) throw refuse("certificate_signers", `${unknown} is not a genesis validator`);
    if (signers.length < g.quorum) throw refuse("certificate_quorum", `${signers.length} signatures, a quorum is ${g.quorum}`);
    const digest = H(concat(utf8("ledger/commit/v1"), pack([g.chainId, hdr[0], hdr[2], blockHash])));
    for (const [validator, signature] of sigs) {
      if (!(await verifySignature(g.validators.get(validator), digest, signature, options))) {
        throw refuse("certificate_signature", `bad commit signature from ${validator}`);
      }
    }
  }
  for (const e of entries) {
    if (!smtHolds(hdr[5], e.key, e.value, e.siblings, e.leaf)) {
      throw refuse("state_proof", `the entry for ${fromUtf8(e.key) ?? e.keyHex} does not match the state root`);
    }
  }
  if (anchor !== null) {
    const { height: aHeight, header: aHeader, path } = anchor;
    if (!jsonEqual(aHeight, aHeader[0]) || BigInt(aHeight) < BigInt(hdr[0])) throw refuse("anchor_height", "anchor height");
    if (BigInt(aHeight) === BigInt(hdr[0])) {
      if (!headersEqual(aHeader, hdr) || path.length) throw refuse("anchor_header", "the anchored header differs");
    } else if (!inclusionHolds(leafHash0(blockHash), Number(hdr[0]), Number(aHeight), path, aHeader[6])) {
      throw refuse("anchor_history", "the history proof does not link the block to the anchored header");
    }
  }
  return {
    height: hdr[0], timestamp: hdr[3], blockHash, keys: entries.map(e => e.key),
    values: new Map(entries.map(e => [e.keyHex, e.value])), anchor: anchor && anchor.claim,
    anchorAsked: p.anchor !== undefined,
  };
}

const leafHash0 = data => H(concat(Uint8Array.of(0), data));

// --- sections 9 and 10: answers --------------------------------------------------------------------------

class State {
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

const startsWith = (bytes, prefix) => bytesEqual(bytes.subarray(0, prefix.length), utf8(prefix));

/**
 * Check `doc` (a parsed document, or its text) against `genesis` (a Genesis). Options: `fallback: true`
 * forces the JavaScript Ed25519 (the browser test runs both). Never throws for a bad document.
 */
export async function verifyDocument(doc, genesis, options = {}) {
  try {
    const d = typeof doc === "string" ? parseJson(doc) : doc;
    if (!isObject(d) || (!("proof" in d) && !("type" in d))) {
      throw refuse("malformed_answer", `neither an answer carrying a proof nor a ${PROOF_TYPE} document`);
    }
    if (!("proof" in d)) {
      const proven = await checkProof(d, genesis, options);
      const first = proven.values.get(toHex(proven.keys[0]));
      return verdict(proven, "state-proof", first !== null, first === null ? null : toHex(first), null);
    }
    const proven = await checkProof(d.proof, genesis, options);
    const k0 = proven.keys[0];
    const candidates = KINDS.filter(k => startsWith(k0, k[1]));
    const chosen = candidates.filter(k => k[2] !== null && k[2] in d).concat(candidates.filter(k => k[2] === null));
    if (!chosen.length) throw refuse("answer_kind", `no kind of answer is about ${fromUtf8(k0)}`);
    const [name, , , required, optional, checker] = chosen[0];
    const keys = Object.keys(d);
    const allowed = new Set([...required, ...optional, "proof", "unproven"]);
    if (!required.every(r => keys.includes(r)) || !keys.every(k => allowed.has(k))) {
      throw refuse("answer_fields", `a ${name} answer has exactly the fields ${[...allowed].join(", ")}`);
    }
    if ("unproven" in d && !isObject(d.unproven)) throw refuse("answer_fields", "unproven is not an object");
    if (required.includes("height")) {
      if (!isInt(d.height)) throw refuse("answer_fields", "the answer's height is not an integer");
      if (!jsonEqual(d.height, proven.height)) throw refuse("answer_height", "the answer's height is not its proof's");
    }
    const [present, rec] = checker(d, new State(proven), k0);
    return verdict(proven, name, present, rec, "unproven" in d ? d.unproven : null);
  } catch (err) {
    if (err instanceof Refused) return { valid: false, reason: err.reason, message: err.message };
    if (err instanceof SyntaxError) return { valid: false, reason: "malformed_answer", message: "not JSON" };
    throw err;
  }
}

function verdict(proven, kind, present, rec, unproven) {
  return {
    valid: true, kind, height: proven.height, key: fromUtf8(proven.keys[0]), present, unproven, record: rec,
    blockHash: toHex(proven.blockHash), blockTime: proven.timestamp, anchor: proven.anchor,
    anchorAsked: proven.anchorAsked, entries: proven.keys.map(k => fromUtf8(k)),
  };
}

export { JsonFloat };
