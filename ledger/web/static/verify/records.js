// Records of docs/proofs.md (section 3) and their strict decoding (section 2); the failure every check
// raises, with its reason code (section 12).

import { bytesEqual, fromHex, isInt, pack, toHex, unpack } from "./codec.js";

export class Refused extends Error {
  constructor(reason, message) {
    super(message || reason);
    this.reason = reason;
  }
}

export const refuse = (reason, message) => new Refused(reason, message);

export const HANDLE_VALUE = [["index", "int"], ["type", "text"], ["value", "text"], ["ttl", "int"], ["timestamp", "int"]];
export const IDENTIFIER_RECORD = [["handle", "text"], ["values", ["list", HANDLE_VALUE]], ["created_height", "int"],
  ["updated_height", "int"], ["created_at", "int"], ["created_by", "text"], ["created_tx", "text"]];
export const MEMBER = [["id", "text"], ["name", "text"], ["public_key", "bytes"], ["roles", ["list", "text"]], ["active", "bool"]];
export const ASSET = [["id", "text"], ["kind", "text"], ["owner", "text"], ["minter", "text"], ["uri", "text"],
  ["sha256", "bytes"], ["identifier", "text"], ["nft_index", "int"], ["approved", "text"], ["user", "text"],
  ["user_expires", "int"], ["locked", "bool"], ["burned", "bool"], ["events", "int"], ["minted_height", "int"],
  ["minted_at", "int"]];
export const ASSET_EVENT = [["seq", "int"], ["event", "text"], ["height", "int"], ["tx_id", "bytes"], ["timestamp", "int"],
  ["actor", "text"], ["from_member", "text"], ["to_member", "text"], ["detail", "text"]];
export const LICENCE = [["id", "text"], ["token", "text"], ["parent", "text"], ["depth", "int"], ["grantor", "text"],
  ["holder", "text"], ["purposes", ["list", "text"]], ["valid_from", "int"], ["valid_until", "int"],
  ["sublicensable", "bool"], ["revoker", "text"], ["terms_uri", "text"], ["terms_hash", "bytes"],
  ["created_height", "int"], ["created_at", "int"], ["revoked", "bool"], ["revoked_by", "text"],
  ["revoked_height", "int"], ["revoked_at", "int"], ["resale_share_bps", "int", 0]];
export const TEXT_LIST = ["list", "text"];
export const VALIDATOR = [["id", "text"], ["public_key", "bytes"], ["host", "text"], ["port", "int"]];
export const VALIDATOR_SET = [["seq", "int"], ["active_from", "int"], ["validators", ["list", VALIDATOR]],
  ["change", "text"], ["committed_height", "int"], ["tx_id", "text"]];

function asJson(value, type) {
  if (type === "int") {
    if (!isInt(value)) throw new Error("integer"); // any MessagePack integer: records may hold negative ones
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
  // A field with a default (a third element) was appended later: absent from records at its default.
  const required = type.filter(f => f.length < 3).length;
  if (value.length < required || value.length > type.length) throw new Error("record arity");
  return Object.fromEntries(type.map(([name, t, dflt], i) => [name, i < value.length ? asJson(value[i], t) : dflt]));
}

function asTree(value, type) {
  if (type === "bytes") return fromHex(value);
  if (Array.isArray(type) && type[0] === "list") return value.map(v => asTree(v, type[1]));
  if (Array.isArray(type)) {
    const tree = type.map(([name, t]) => asTree(value[name], t));
    while (tree.length > 0 && type[tree.length - 1].length === 3 && tree[tree.length - 1] === type[tree.length - 1][2]) {
      tree.pop(); // an appended field at its default is not written
    }
    return tree;
  }
  return value;
}

/** Strict decoding (section 2): the schema's types, and re-encoding gives the same bytes. */
export function decode(raw, type, what) {
  try {
    const json = asJson(unpack(raw), type);
    if (!bytesEqual(pack(asTree(json, type)), raw)) throw new Error("not canonical");
    return json;
  } catch (err) {
    throw refuse("value_not_record", `the proven value is not a ${what} record (${err.message})`);
  }
}
