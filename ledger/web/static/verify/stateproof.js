// A proof document (docs/proofs.md, sections 4 to 8): the genesis block, the certificate, the state tree,
// the history accumulator and the anchor. `checkProof` gives what a valid proof proves, or throws Refused.

import { bytesEqual, concat, fromHex, fromUtf8, isObject, isText, isUint, jsonEqual, pack, parseJson, toHex, utf8 } from "./codec.js";
import { verifySignature } from "./ed25519.js";
import { VALIDATOR_SET, decode, refuse } from "./records.js";
import { sha256 as H } from "./sha2.js";

export const PROOF_TYPE = "ledger-state-proof/v2";
export const PROOF_TYPE_SETS = "ledger-state-proof/v3"; // carries `validator_sets` (section 14)
const ACTIVATION_DELAY = 16n;

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
    const record = [d.chain_id, d.timestamp, d.validators.map(v => [v.name, fromHex(v.public_key)]),
      d.members.map(m => [m.name, fromHex(m.public_key), [...m.roles]]), d.prefixes.map(p => [p.prefix, p.owner])];
    // The optional sections: governance a sixth element, anchoring a seventh, node_orgs an eighth, up to the
    // last one present (section 4).
    const gov = d.governance ?? null;
    const anch = d.anchoring ?? null;
    const orgs = d.node_orgs ?? null;
    if (gov !== null || anch !== null || orgs !== null) record.push(gov === null ? null : [gov.approvals, gov.expiry_ms]);
    if (anch !== null || orgs !== null) {
      record.push(anch === null ? null : [anch.eth_chain_id, anch.contract, [...anch.submitters]]);
    }
    if (orgs !== null) record.push(orgs.map(o => [o.node, o.org]));
    this.hash = H(pack(record));
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
      const gov = this.doc.governance;
      if (gov !== undefined && gov !== null) {
        put("gov/settings", pack([gov.approvals, gov.expiry_ms]));
        const admins = this.doc.members.filter(m => m.roles.includes("admin")).map(m => nodeId(fromHex(m.public_key)));
        put("member-admins", pack(admins.sort((a, b) => (a < b ? -1 : a > b ? 1 : 0))));
      }
      const anch = this.doc.anchoring;
      if (anch !== undefined && anch !== null) {
        put("anchor/settings", pack([anch.eth_chain_id, anch.contract, [...anch.submitters]]));
      }
      const ids = new Map(this.doc.members.map(m => [m.name, nodeId(fromHex(m.public_key))]));
      for (const o of this.doc.node_orgs ?? []) put(`node-org/${o.node}`, pack(ids.get(o.org)));
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

function address(v) {
  if (!isText(v) || !/^0x[0-9a-f]{40}$/.test(v)) throw malformed("not 0x and 40 lowercase hex digits");
  return v;
}

function certificate(v) {
  const c = obj(v, ["height", "view", "block_hash", "signatures"]);
  const cert = [uint(c.height), uint(c.view), hex(c.block_hash, 32)];
  if (!Array.isArray(c.signatures)) throw malformed("signatures");
  return [cert, c.signatures.map(s => obj(s, ["validator", "signature"])).map(s => [text(s.validator), hex(s.signature, 64)])];
}

function smtPath(v) {
  const s = obj(v, ["siblings", "leaf"]);
  if (!Array.isArray(s.siblings) || s.siblings.length > 256) throw malformed("siblings");
  let leaf = s.leaf;
  if (leaf !== null) {
    if (!Array.isArray(leaf) || leaf.length !== 2) throw malformed("leaf");
    leaf = [hex(leaf[0], 32), hex(leaf[1], 32)];
  }
  return { siblings: s.siblings.map(x => hex(x, 32)), leaf };
}

function be64(n) {
  const out = new Uint8Array(8);
  let v = BigInt(n);
  for (let i = 7; i >= 0; i--) { out[i] = Number(v & 0xffn); v >>= 8n; }
  return out;
}

// Section 6 step 4; an anchor record's certificate fails every check with the one `code`.
async function checkCertificate(chainId, validators, hdr, blockHash, cert, sigs, options, code) {
  const fail = (own, message) => refuse(code ?? own, message);
  if (!jsonEqual(cert[0], hdr[0]) || !jsonEqual(cert[1], hdr[2]) || !bytesEqual(cert[2], blockHash)) {
    throw fail("certificate_mismatch", "the certificate is for another block");
  }
  const signers = sigs.map(s => s[0]);
  if (BigInt(hdr[0]) === 0n) {
    if (signers.length) throw fail("certificate_signers", "block 0 carries no signatures");
    return;
  }
  for (let i = 1; i < signers.length; i++) {
    if (!(signers[i - 1] < signers[i])) throw fail("certificate_signers", "signers are repeated or unsorted");
  }
  const unknown = signers.find(v => !validators.has(v));
  if (unknown !== undefined) throw fail("certificate_signers", `${unknown} is not a validator at height ${hdr[0]}`);
  const n = validators.size;
  const quorum = Math.floor((n + Math.floor((n - 1) / 3) + 2) / 2);
  if (signers.length < quorum) throw fail("certificate_quorum", `${signers.length} signatures, a quorum is ${quorum}`);
  const digest = H(concat(utf8("ledger/commit/v1"), pack([chainId, hdr[0], hdr[2], blockHash])));
  for (const [validator, signature] of sigs) {
    if (!(await verifySignature(validators.get(validator), digest, signature, options))) {
      throw fail("certificate_signature", `bad commit signature from ${validator}`);
    }
  }
}

const setKey = seq => {
  const key = new Uint8Array(14);
  key.set(utf8("val/s/"));
  new DataView(key.buffer).setBigUint64(6, BigInt(seq));
  return key;
};

// Step 6b: the validator sets in force up to `height` (the highest block the proof certifies), walking the
// changes from the genesis set; each with the first height it certifies.
async function setsInForce(links, g, height, options) {
  let validators = g.validators;
  let first = 1n;
  const sets = [[0n, validators]]; // block 0 carries no signatures: genesis's set answers for it
  for (let i = 1; i <= links.length; i++) {
    const { hdr, cert, sigs, e } = links[i - 1];
    const blockHash = H(pack(hdr));
    const h = BigInt(hdr[0]);
    if (h < first || h === 0n || BigInt(cert[0]) !== h || BigInt(cert[1]) !== BigInt(hdr[2]) || !bytesEqual(cert[2], blockHash)) {
      throw refuse("validator_set_link", `change ${i}: its block is not certified by the set before it`);
    }
    await checkCertificate(g.chainId, validators, hdr, blockHash, cert, sigs, options, null);
    if (!bytesEqual(e.key, setKey(i)) || e.value === null || !smtHolds(hdr[5], e.key, e.value, e.siblings, e.leaf)) {
      throw refuse("validator_set_link", `change ${i}: not a proof of validator set ${i} in that block`);
    }
    let record;
    try {
      record = decode(e.value, VALIDATOR_SET, "validator set");
    } catch (err) {
      throw refuse("validator_set_link", `change ${i}: ${err.message}`);
    }
    const active = BigInt(record.active_from);
    if (BigInt(record.seq) !== BigInt(i) || BigInt(record.committed_height) !== h || active !== h + ACTIVATION_DELAY
      || active > BigInt(height)) {
      throw refuse("validator_set_link", `change ${i}: not the set its block decided, in force at height ${height}`);
    }
    validators = new Map(record.validators.map(v => [v.id, fromHex(v.public_key, 32)]));
    first = active;
    sets.push([first, validators]);
  }
  return sets;
}

const setAt = (sets, height) => sets.filter(([first]) => first <= BigInt(height)).at(-1)[1];

function entry(e) {
  obj(e, ["key", "value", "smt"]);
  const key = hex(e.key);
  if (key.length === 0) throw malformed("empty key");
  const value = e.value === null ? null : hex(e.value);
  return { key, keyHex: e.key, value, ...smtPath(e.smt) };
}

export async function checkProof(p, g, options) {
  if (!isObject(p) || (p.type !== PROOF_TYPE && p.type !== PROOF_TYPE_SETS)) {
    throw refuse("unsupported_version", `not a ${PROOF_TYPE} or ${PROOF_TYPE_SETS} document`);
  }
  if (p.chain_id !== g.chainId) throw refuse("wrong_chain", `the proof is for chain ${p.chain_id}, genesis is ${g.chainId}`);
  const members = ["type", "chain_id", "height", "header", "certificate", "entries"];
  obj(p, p.type === PROOF_TYPE_SETS ? [...members, "validator_sets"] : members, ["anchor"]);
  const height = uint(p.height);
  const hdr = header(p.header);
  const [cert, sigs] = certificate(p.certificate);
  const links = [];
  if (p.type === PROOF_TYPE_SETS) {
    if (!Array.isArray(p.validator_sets) || p.validator_sets.length < 1 || p.validator_sets.length > 10000) {
      throw malformed("validator_sets");
    }
    for (const link of p.validator_sets) {
      obj(link, ["header", "certificate", "entry"]);
      const [lcert, lsigs] = certificate(link.certificate);
      links.push({ hdr: header(link.header), cert: lcert, sigs: lsigs, e: entry(link.entry) });
    }
  }
  if (!Array.isArray(p.entries) || p.entries.length < 1 || p.entries.length > 1100) throw malformed("entries");
  const entries = p.entries.map(entry);
  if (new Set(entries.map(e => e.keyHex)).size !== entries.length) throw malformed("two entries with one key");
  let anchor = null;
  if (p.anchor !== undefined && p.anchor !== null) {
    const a = obj(p.anchor, ["height", "header", "history_proof", "eth_chain_id", "contract", "tx_hash", "eth_block",
      "submitter", "record"]);
    const aHeader = header(a.header);
    if (!Array.isArray(a.history_proof)) throw malformed("history_proof");
    const path = a.history_proof.map(x => hex(x, 32));
    const contract = address(a.contract);
    const submitter = address(a.submitter);
    const txHash = hex(a.tx_hash, 32);
    if (BigInt(uint(a.eth_chain_id)) === 0n) throw malformed("eth_chain_id");
    const r = obj(a.record, ["header", "certificate", "smt"]);
    const record = { header: header(r.header), certificate: certificate(r.certificate), smt: smtPath(r.smt) };
    const fields = [uint(a.height), null, a.eth_chain_id, contract, txHash, uint(a.eth_block), submitter];
    anchor = { height: uint(a.height), header: aHeader, path, claim: a, fields, record };
  }
  if (!jsonEqual(height, hdr[0])) throw refuse("height_mismatch", "the proof's height is not its header's");
  const blockHash = H(pack(hdr));
  const atZero = BigInt(hdr[0]) === 0n;
  if (atZero && !headersEqual(hdr, g.header0())) throw refuse("genesis_header", "header 0 is not this genesis file's block 0");
  if (!jsonEqual(cert[0], hdr[0]) || !jsonEqual(cert[1], hdr[2]) || !bytesEqual(cert[2], blockHash)) {
    throw refuse("certificate_mismatch", "the certificate is for another block");
  }
  const lastCertified = anchor === null || BigInt(anchor.record.header[0]) < BigInt(hdr[0]) ? hdr[0] : anchor.record.header[0];
  const sets = await setsInForce(links, g, lastCertified, options);
  await checkCertificate(g.chainId, setAt(sets, hdr[0]), hdr, blockHash, cert, sigs, options, null);
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
    // The ledger certified this very anchor: its effective record, in the state of a later certified block.
    const { header: rHeader, certificate: [rCert, rSigs], smt } = anchor.record;
    if (BigInt(rHeader[0]) <= BigInt(aHeight)) throw refuse("anchor_record", "the anchor's record is not in a later block");
    await checkCertificate(g.chainId, setAt(sets, rHeader[0]), rHeader, H(pack(rHeader)), rCert, rSigs, options,
      "anchor_certificate");
    anchor.fields[1] = H(pack(aHeader));
    const key = concat(utf8("anchor/h/"), be64(aHeight));
    if (!smtHolds(rHeader[5], key, pack(anchor.fields), smt.siblings, smt.leaf)) {
      throw refuse("anchor_record", "the ledger's effective anchor of this height is not the one the proof names");
    }
  }
  return {
    height: hdr[0], timestamp: hdr[3], blockHash, keys: entries.map(e => e.key),
    values: new Map(entries.map(e => [e.keyHex, e.value])), anchor: anchor && anchor.claim,
    anchorAsked: p.anchor !== undefined,
  };
}

const leafHash0 = data => H(concat(Uint8Array.of(0), data));
