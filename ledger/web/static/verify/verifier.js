// The explorer's verifier: docs/proofs.md in the browser. It checks a proof, or an answer carrying one,
// against a genesis file and gives the verdict `ledger verify` gives: {valid, reason, message} or
// {valid, kind, height, key, present, unproven, record, ...}. No request leaves the page: the only inputs
// are the answer's text and the genesis the user pinned. Section numbers are the page's.

import { JsonFloat, bytesEqual, fromUtf8, isInt, isObject, jsonEqual, parseJson, toHex, utf8 } from "./codec.js";
import { KINDS, State } from "./answers.js";
import { Refused, refuse } from "./records.js";
import { Genesis, PROOF_TYPE, checkProof, nodeId } from "./stateproof.js";

export { Genesis, JsonFloat, KINDS, PROOF_TYPE, nodeId };

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
