"""A second verifier of proofs and proven answers, written from docs/proofs.md alone.

It imports nothing from `ledger`: only the standard library, msgpack and PyNaCl (libsodium). Section
numbers below are the page's. It exists to show that the page is enough to write a verifier that agrees
with `ledger verify` on every known-answer vector (tests/test_proof_vectors.py holds it to that).

    python tests/vectors/independent_verifier.py FILE --genesis GENESIS
"""

from __future__ import annotations

import hashlib
import json
import sys
import time
from collections.abc import Callable
from typing import Any

import msgpack
from nacl.bindings import crypto_sign_open
from nacl.exceptions import BadSignatureError, CryptoError

PROOF_TYPE = "ledger-state-proof/v2"
PROOF_TYPE_SETS = "ledger-state-proof/v3"  # carries `validator_sets` (section 14)
ACTIVATION_DELAY = 16
MAX_U64 = 2**64 - 1


class Refused(Exception):
    def __init__(self, reason: str, message: str = "") -> None:
        super().__init__(message or reason)
        self.reason = reason


def H(data: bytes) -> bytes:  # noqa: N802 - the page's name
    return hashlib.sha256(data).digest()


# --- section 2: canonical encoding; section 3: schemas ---------------------------------------------------

# A schema is a list of (field, type), or (field, type, default) for a field appended later; a type is "int"
# (any integer MessagePack carries), "bool", "text", "bytes", ("list", T) or a schema.
HANDLE_VALUE = [("index", "int"), ("type", "text"), ("value", "text"), ("ttl", "int"), ("timestamp", "int")]
IDENTIFIER_RECORD = [("handle", "text"), ("values", ("list", HANDLE_VALUE)), ("created_height", "int"),
                     ("updated_height", "int"), ("created_at", "int"), ("created_by", "text"),
                     ("created_tx", "text")]
PREFIX = [("prefix", "text"), ("owner", "text"), ("created_height", "int")]
MEMBER = [("id", "text"), ("name", "text"), ("public_key", "bytes"), ("roles", ("list", "text")), ("active", "bool")]
ASSET = [("id", "text"), ("kind", "text"), ("owner", "text"), ("minter", "text"), ("uri", "text"), ("sha256", "bytes"),
         ("identifier", "text"), ("nft_index", "int"), ("approved", "text"), ("user", "text"),
         ("user_expires", "int"), ("locked", "bool"), ("burned", "bool"), ("events", "int"),
         ("minted_height", "int"), ("minted_at", "int")]
ASSET_EVENT = [("seq", "int"), ("event", "text"), ("height", "int"), ("tx_id", "bytes"), ("timestamp", "int"),
               ("actor", "text"), ("from_member", "text"), ("to_member", "text"), ("detail", "text")]
LICENCE = [("id", "text"), ("token", "text"), ("parent", "text"), ("depth", "int"), ("grantor", "text"),
           ("holder", "text"), ("purposes", ("list", "text")), ("valid_from", "int"), ("valid_until", "int"),
           ("sublicensable", "bool"), ("revoker", "text"), ("terms_uri", "text"), ("terms_hash", "bytes"),
           ("created_height", "int"), ("created_at", "int"), ("revoked", "bool"), ("revoked_by", "text"),
           ("revoked_height", "int"), ("revoked_at", "int"), ("resale_share_bps", "int", 0)]
TEXT_LIST = ("list", "text")
VALIDATOR = [("id", "text"), ("public_key", "bytes"), ("host", "text"), ("port", "int")]
VALIDATOR_SET = [("seq", "int"), ("active_from", "int"), ("validators", ("list", VALIDATOR)), ("change", "text"),
                 ("committed_height", "int"), ("tx_id", "text")]


def pack(tree: Any) -> bytes:
    return msgpack.packb(tree, use_bin_type=True)


def _decode_as(value: Any, typ: Any) -> Any:
    """The JSON form of a decoded MessagePack value of type `typ`; ValueError if it is not one."""
    if typ == "int":
        if type(value) is not int:
            raise ValueError("int")
        return value
    if typ == "bool":
        if type(value) is not bool:
            raise ValueError("bool")
        return value
    if typ == "text":
        if type(value) is not str:
            raise ValueError("text")
        return value
    if typ == "bytes":
        if type(value) is not bytes:
            raise ValueError("bytes")
        return value.hex()
    if isinstance(typ, tuple):
        if type(value) is not list:
            raise ValueError("array")
        return [_decode_as(v, typ[1]) for v in value]
    # A field with a default (a third element) was appended later: records at its default do not hold it.
    required = sum(1 for field in typ if len(field) < 3)
    if type(value) is not list or not required <= len(value) <= len(typ):
        raise ValueError("record arity")
    return {field[0]: _decode_as(value[i], field[1]) if i < len(value) else field[2] for i, field in enumerate(typ)}


def _encode_json(value: Any, typ: Any) -> Any:
    """The MessagePack tree of a JSON form of type `typ` (inverse of _decode_as)."""
    if typ == "bytes":
        return bytes.fromhex(value)
    if isinstance(typ, tuple):
        return [_encode_json(v, typ[1]) for v in value]
    if isinstance(typ, list):
        tree = [_encode_json(value[field[0]], field[1]) for field in typ]
        while tree and len(typ[len(tree) - 1]) == 3 and tree[-1] == typ[len(tree) - 1][2]:
            tree.pop()  # an appended field at its default is not written
        return tree
    return value


def decode(raw: bytes, typ: Any, what: str) -> Any:
    """Strict decoding: the types of `typ`, and re-encoding gives the same bytes (section 2)."""
    try:
        tree = msgpack.unpackb(raw, raw=False, strict_map_key=True,
                               ext_hook=lambda code, data: (_ for _ in ()).throw(ValueError("ext")))
        plain = _decode_as(tree, typ)
        if pack(_encode_json(plain, typ)) != raw:
            raise ValueError("not canonical")
    except Exception as exc:  # msgpack's own errors are of many types
        raise Refused("value_not_record", f"the proven value is not a {what} record ({exc})") from None
    return plain


def json_equal(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# --- section 4: genesis, validator ids, quorum, block 0 --------------------------------------------------


def node_id(public_key: bytes) -> str:
    return H(b"ledger/id/v1" + public_key)[:20].hex()


class Genesis:
    def __init__(self, doc: dict[str, Any]) -> None:
        self.doc = doc
        self.chain_id: str = doc["chain_id"]
        self.validators = {node_id(bytes.fromhex(v["public_key"])): bytes.fromhex(v["public_key"])
                           for v in doc["validators"]}
        n = len(self.validators)
        f = (n - 1) // 3
        self.quorum = (n + f + 2) // 2

    def hash(self) -> bytes:
        d = self.doc
        record = [d["chain_id"], d["timestamp"],
                  [[v["name"], bytes.fromhex(v["public_key"])] for v in d["validators"]],
                  [[m["name"], bytes.fromhex(m["public_key"]), list(m["roles"])] for m in d["members"]],
                  [[p["prefix"], p["owner"]] for p in d["prefixes"]]]
        gov, anch, orgs = d.get("governance"), d.get("anchoring"), d.get("node_orgs")
        # the optional sections: a sixth, a seventh and an eighth element, up to the last one present
        if gov is not None or anch is not None or orgs is not None:
            record.append(None if gov is None else [gov["approvals"], gov["expiry_ms"]])
        if anch is not None or orgs is not None:
            record.append(None if anch is None else [anch["eth_chain_id"], anch["contract"], list(anch["submitters"])])
        if orgs is not None:
            record.append([[o["node"], o["org"]] for o in orgs])
        return H(pack(record))

    def header0(self) -> list[Any]:
        state: dict[bytes, bytes] = {}
        for m in self.doc["members"]:
            pk = bytes.fromhex(m["public_key"])
            mid = node_id(pk)
            state[f"member/{mid}".encode()] = pack([mid, m["name"], pk, sorted(set(m["roles"])), True])
            state[f"member-name/{m['name']}".encode()] = mid.encode()
            state[f"member-pk/{pk.hex()}".encode()] = mid.encode()
        for p in self.doc["prefixes"]:
            state[f"prefix/{p['prefix']}".encode()] = pack([p["prefix"], p["owner"], 0])
        gov = self.doc.get("governance")
        if gov is not None:
            state[b"gov/settings"] = pack([gov["approvals"], gov["expiry_ms"]])
            members = self.doc["members"]
            admins = sorted(node_id(bytes.fromhex(m["public_key"])) for m in members if "admin" in m["roles"])
            state[b"member-admins"] = pack(admins)
        anch = self.doc.get("anchoring")
        if anch is not None:
            state[b"anchor/settings"] = pack([anch["eth_chain_id"], anch["contract"], list(anch["submitters"])])
        ids = {m["name"]: node_id(bytes.fromhex(m["public_key"])) for m in self.doc["members"]}
        for o in self.doc.get("node_orgs") or ():
            state[f"node-org/{o['node']}".encode()] = pack(ids[o["org"]])
        root = smt_root([(H(k), H(v)) for k, v in state.items()], 0)
        return [0, self.hash(), 0, self.doc["timestamp"], H(b""), root, H(b""), ""]


# --- section 7: the state tree ----------------------------------------------------------------------------

EMPTY = bytes(32)


def bit(path: bytes, i: int) -> int:
    return path[i // 8] >> (7 - i % 8) & 1


def smt_root(leaves: list[tuple[bytes, bytes]], depth: int) -> bytes:
    """Root of (path, value hash) pairs at `depth`."""
    if not leaves:
        return EMPTY
    if len(leaves) == 1:
        return H(b"\x00" + leaves[0][0] + leaves[0][1])
    left = [x for x in leaves if bit(x[0], depth) == 0]
    right = [x for x in leaves if bit(x[0], depth) == 1]
    return H(b"\x01" + smt_root(left, depth + 1) + smt_root(right, depth + 1))


def smt_holds(root: bytes, key: bytes, value: bytes | None, siblings: list[bytes], leaf: Any) -> bool:
    path = H(key)
    n = len(siblings)
    if value is not None:
        if leaf is not None:
            return False
        node = H(b"\x00" + path + H(value))
    elif leaf is None:
        node = EMPTY
    else:
        other, other_hash = leaf
        if other == path or any(bit(other, i) != bit(path, i) for i in range(n)):
            return False
        node = H(b"\x00" + other + other_hash)
    for i in range(n - 1, -1, -1):
        node = H(b"\x01" + siblings[i] + node) if bit(path, i) else H(b"\x01" + node + siblings[i])
    return node == root


# --- section 8: RFC 9162 inclusion ----------------------------------------------------------------------------


def inclusion_holds(leaf: bytes, index: int, size: int, proof: list[bytes], root: bytes) -> bool:
    if not 0 <= index < size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in proof:
        if sn == 0:
            return False
        if fn % 2 == 1 or fn == sn:
            r = H(b"\x01" + p + r)
            while fn % 2 == 0 and fn != 0:
                fn >>= 1
                sn >>= 1
        else:
            r = H(b"\x01" + r + p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


# --- section 5: the form of a proof -------------------------------------------------------------------------


def bad(what: str) -> Refused:
    return Refused("malformed_proof", what)


def obj(v: Any, names: set[str], optional: set[str] = frozenset()) -> dict[str, Any]:  # type: ignore[assignment]
    if type(v) is not dict or not names <= set(v) or not set(v) <= names | optional:
        raise bad(f"not an object with {sorted(names)}")
    return v


def uint(v: Any) -> int:
    if type(v) is not int or not 0 <= v <= MAX_U64:
        raise bad("not a uint")
    return v


def text(v: Any) -> str:
    if type(v) is not str:
        raise bad("not text")
    try:
        v.encode()
    except UnicodeEncodeError:
        raise bad("not encodable text") from None
    return v


def hexb(v: Any, length: int | None = None) -> bytes:
    if type(v) is not str or len(v) % 2 or any(c not in "0123456789abcdef" for c in v):
        raise bad("not lowercase hex")
    out = bytes.fromhex(v)
    if length is not None and len(out) != length:
        raise bad("wrong length")
    return out


HEADER = ["height", "prev_hash", "view", "timestamp", "tx_root", "state_root", "history_root", "proposer"]


def header(v: Any) -> list[Any]:
    d = obj(v, set(HEADER))
    return [uint(d["height"]), hexb(d["prev_hash"], 32), uint(d["view"]), uint(d["timestamp"]),
            hexb(d["tx_root"], 32), hexb(d["state_root"], 32), hexb(d["history_root"], 32), text(d["proposer"])]


# --- section 6: checking a proof --------------------------------------------------------------------------------


def address(v: Any) -> str:
    t = text(v)
    if len(t) != 42 or t[:2] != "0x" or any(ch not in "0123456789abcdef" for ch in t[2:]):
        raise bad("address")
    return t


def certificate(v: Any) -> tuple[tuple[int, int, bytes], list[tuple[str, bytes]]]:
    c = obj(v, {"height", "view", "block_hash", "signatures"})
    cert = (uint(c["height"]), uint(c["view"]), hexb(c["block_hash"], 32))
    if type(c["signatures"]) is not list:
        raise bad("signatures")
    sigs = [(text(s["validator"]), hexb(s["signature"], 64))
            for s in (obj(s, {"validator", "signature"}) for s in c["signatures"])]
    return cert, sigs


def smt_path(v: Any) -> tuple[list[bytes], Any]:
    s = obj(v, {"siblings", "leaf"})
    if type(s["siblings"]) is not list or len(s["siblings"]) > 256:
        raise bad("siblings")
    siblings = [hexb(x, 32) for x in s["siblings"]]
    leaf = s["leaf"]
    if leaf is not None:
        if type(leaf) is not list or len(leaf) != 2:
            raise bad("leaf")
        leaf = (hexb(leaf[0], 32), hexb(leaf[1], 32))
    return siblings, leaf


def check_certificate(chain_id: str, validators: dict[str, bytes], hdr: list[Any], block_hash: bytes,
                      cert: tuple[int, int, bytes], sigs: list[tuple[str, bytes]], code: str | None = None) -> None:
    """Section 6 step 4, against `validators`; an anchor record's certificate fails every check with the one
    `code`."""
    if cert != (hdr[0], hdr[2], block_hash):
        raise Refused(code or "certificate_mismatch")
    signers = [v for v, _ in sigs]
    if hdr[0] == 0:
        if signers:
            raise Refused(code or "certificate_signers")
        return
    ascending = all(a < b for a, b in zip(signers, signers[1:], strict=False))
    if not ascending or any(v not in validators for v in signers):
        raise Refused(code or "certificate_signers")
    n = len(validators)
    if len(signers) < (n + (n - 1) // 3 + 2) // 2:
        raise Refused(code or "certificate_quorum")
    digest = H(b"ledger/commit/v1" + pack([chain_id, hdr[0], hdr[2], block_hash]))
    for v, sig in sigs:
        try:
            crypto_sign_open(sig + digest, validators[v])
        except (BadSignatureError, CryptoError, ValueError):
            raise Refused(code or "certificate_signature") from None


def sets_in_force(links: list[Any], g: Genesis, height: int) -> list[tuple[int, dict[str, bytes]]]:
    """Step 6b: walk the changes from the genesis set, up to `height` (the highest block the proof certifies);
    each set with the first height it certifies."""
    validators, first = dict(g.validators), 1
    sets = [(0, validators)]  # block 0 carries no signatures: genesis's set answers for it
    for i, (hdr, cert, sigs, entry) in enumerate(links, 1):
        block_hash = H(pack(hdr))
        if hdr[0] < first or hdr[0] == 0 or cert != (hdr[0], hdr[2], block_hash):
            raise Refused("validator_set_link")
        check_certificate(g.chain_id, validators, hdr, block_hash, cert, sigs)
        key, value, siblings, leaf = entry
        if key != b"val/s/" + i.to_bytes(8, "big") or value is None or not smt_holds(hdr[5], key, value, siblings,
                                                                                     leaf):
            raise Refused("validator_set_link")
        try:
            record = decode(value, VALIDATOR_SET, "validator set")
        except Refused:
            raise Refused("validator_set_link") from None
        active = record["active_from"]
        if (record["seq"], record["committed_height"], active) != (i, hdr[0], hdr[0] + ACTIVATION_DELAY) or \
                active > height:
            raise Refused("validator_set_link")
        validators = {v["id"]: bytes.fromhex(v["public_key"]) for v in record["validators"]}
        first = active
        sets.append((first, validators))
    return sets


def set_at(sets: list[tuple[int, dict[str, bytes]]], height: int) -> dict[str, bytes]:
    return [validators for first, validators in sets if first <= height][-1]


def entry_of(e: Any) -> tuple[bytes, bytes | None, list[bytes], Any]:
    e = obj(e, {"key", "value", "smt"})
    key = hexb(e["key"])
    if not key:
        raise bad("empty key")
    value = None if e["value"] is None else hexb(e["value"])
    return (key, value, *smt_path(e["smt"]))


def check_proof(p: Any, g: Genesis) -> dict[str, Any]:
    if type(p) is not dict or p.get("type") not in (PROOF_TYPE, PROOF_TYPE_SETS):
        raise Refused("unsupported_version")
    if p.get("chain_id") != g.chain_id:
        raise Refused("wrong_chain")
    members = {"type", "chain_id", "height", "header", "certificate", "entries"}
    obj(p, members | {"validator_sets"} if p["type"] == PROOF_TYPE_SETS else members, {"anchor"})
    height = uint(p["height"])
    hdr = header(p["header"])
    cert, sigs = certificate(p["certificate"])
    links = []
    if p["type"] == PROOF_TYPE_SETS:
        if type(p["validator_sets"]) is not list or not 1 <= len(p["validator_sets"]) <= 10_000:
            raise bad("validator_sets")
        for link in p["validator_sets"]:
            link = obj(link, {"header", "certificate", "entry"})
            links.append((header(link["header"]), *certificate(link["certificate"]), entry_of(link["entry"])))
    if type(p["entries"]) is not list or not 1 <= len(p["entries"]) <= 1100:
        raise bad("entries")
    entries = [entry_of(e) for e in p["entries"]]
    if len({e[0] for e in entries}) != len(entries):
        raise bad("repeated key")
    anchor = None
    if p.get("anchor") is not None:
        a = obj(p["anchor"], {"height", "header", "history_proof", "eth_chain_id", "contract", "tx_hash", "eth_block",
                              "submitter", "record"})
        a_header = header(a["header"])
        if type(a["history_proof"]) is not list:
            raise bad("history_proof")
        path = [hexb(x, 32) for x in a["history_proof"]]
        contract, submitter = address(a["contract"]), address(a["submitter"])
        tx_hash = hexb(a["tx_hash"], 32)
        if uint(a["eth_chain_id"]) == 0:
            raise bad("eth_chain_id")
        r = obj(a["record"], {"header", "certificate", "smt"})
        record = (header(r["header"]), *certificate(r["certificate"]), smt_path(r["smt"]))
        claim = [uint(a["height"]), None, a["eth_chain_id"], contract, tx_hash, uint(a["eth_block"]), submitter]
        anchor = (uint(a["height"]), a_header, path, claim, record)
    if height != hdr[0]:
        raise Refused("height_mismatch")
    block_hash = H(pack(hdr))
    if hdr[0] == 0 and hdr != g.header0():
        raise Refused("genesis_header")
    if cert != (hdr[0], hdr[2], block_hash):
        raise Refused("certificate_mismatch")
    sets = sets_in_force(links, g, hdr[0] if anchor is None else max(hdr[0], anchor[4][0][0]))
    check_certificate(g.chain_id, set_at(sets, hdr[0]), hdr, block_hash, cert, sigs)
    for key, value, siblings, leaf in entries:
        if not smt_holds(hdr[5], key, value, siblings, leaf):
            raise Refused("state_proof")
    if anchor is not None:
        a_height, a_header, path, claim, (r_header, r_cert, r_sigs, (r_siblings, r_leaf)) = anchor
        if a_height != a_header[0] or a_height < hdr[0]:
            raise Refused("anchor_height")
        if a_height == hdr[0]:
            if a_header != hdr or path:
                raise Refused("anchor_header")
        elif not inclusion_holds(H(b"\x00" + block_hash), hdr[0], a_height, path, a_header[6]):
            raise Refused("anchor_history")
        # The ledger certified this very anchor: its effective record, in the state of a later certified block.
        if r_header[0] <= a_height:
            raise Refused("anchor_record")
        check_certificate(g.chain_id, set_at(sets, r_header[0]), r_header, H(pack(r_header)), r_cert, r_sigs,
                          "anchor_certificate")
        claim[1] = H(pack(a_header))
        key = b"anchor/h/" + a_height.to_bytes(8, "big")
        if not smt_holds(r_header[5], key, pack(claim), r_siblings, r_leaf):
            raise Refused("anchor_record")
    return {"height": hdr[0], "timestamp": hdr[3], "keys": [e[0] for e in entries],
            "values": {e[0]: e[1] for e in entries}}


# --- sections 9 and 10: answers -------------------------------------------------------------------------------


class State:
    """The proven entries; reading any other key refuses the answer (proof_incomplete)."""

    def __init__(self, proven: dict[str, Any]) -> None:
        self.values: dict[bytes, bytes | None] = proven["values"]
        self.time: int = proven["timestamp"]

    def raw(self, key: str) -> bytes | None:
        k = key.encode()
        if k not in self.values:
            raise Refused("proof_incomplete", key)
        return self.values[k]

    def record(self, key: str, schema: Any, what: str) -> Any:
        raw = self.raw(key)
        return None if raw is None else decode(raw, schema, what)


def want(doc: dict[str, Any], name: str, *types: type, nullable: bool = False) -> Any:
    v = doc.get(name)
    if (v is None and nullable) or type(v) in types:
        return v
    raise Refused("answer_fields", name)


def key_is(k0: bytes, namespace: str, name: str) -> None:
    try:
        same = (namespace + name).encode() == k0
    except UnicodeEncodeError:
        same = False
    if not same:
        raise Refused("answer_key", name)


def derived(claimed: Any, proven: Any) -> None:
    if not json_equal(claimed, proven):
        raise Refused("answer_derived")


def presence(claimed: bool, proven: bool) -> None:
    if claimed != proven:
        raise Refused("answer_presence")


# 10.1-10.3

def user_at(asset: dict[str, Any], t: int) -> str:
    return asset["user"] if asset["user"] and t < asset["user_expires"] else ""


def inactive(s: State, lic: dict[str, Any], t: int) -> str:
    current, prefix = lic, ""
    while True:
        if current["revoked"]:
            return prefix + "revoked"
        if t < current["valid_from"]:
            return prefix + "not_yet_valid"
        if t >= current["valid_until"]:
            return prefix + "expired"
        if not current["parent"]:
            return ""
        current = s.record("licence/" + current["parent"], LICENCE, "Licence")
        prefix = "ancestor_"
        if current is None:
            return "ancestor_missing"


def decide(s: State, token: str, holder: str, purpose: str, t: int) -> tuple[bool, str, str]:
    asset = s.record("asset/" + token, ASSET, "Asset")
    if asset is None:
        return False, "unknown_token", ""
    if asset["burned"]:
        return False, "token_burned", ""
    member = s.record("member/" + holder, MEMBER, "Member")
    if member is None or not member["active"]:
        return False, "holder_not_member", ""
    ids = s.record(f"licence-holder/{token}/{holder}", TEXT_LIST, "licence list") or []
    held = [x for x in (s.record("licence/" + i, LICENCE, "Licence") for i in ids) if x is not None]
    if not held:
        return False, "no_licence", ""
    covering = [x for x in held if purpose in x["purposes"]]
    if not covering:
        return False, "purpose_not_granted", held[0]["id"]
    first = None
    for x in covering:
        reason = inactive(s, x, t)
        if not reason:
            return True, "allowed", x["id"]
        first = first or (reason, x["id"])
    assert first is not None
    return False, first[0], first[1]


# 10.4, 10.5

OFFSET_ONE = {"00", "01", "8003", "8006"}


def owning_prefix(s: State, key: str) -> str:
    if not key.startswith("gs1/"):
        p = key.split("/", 1)[0]
        if s.raw("prefix/" + p) is None:
            raise Refused("answer_derived", "prefix not registered")
        return p
    parts = key.split("/")
    ai, value = parts[1], parts[2]
    rest = value[1 if ai in OFFSET_ONE else 0:]
    digits = ""
    for ch in rest:
        if ch not in "0123456789":
            break
        digits += ch
    for n in range(min(12, len(digits)), 3, -1):
        candidate = "gs1:" + digits[:n]
        if s.raw("prefix/" + candidate) is not None:
            return candidate
    raise Refused("answer_derived", "no registered company prefix")


def utc(ms: int) -> str:
    return time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(ms // 1000))


def handle_values(record: dict[str, Any], prefix: str) -> list[dict[str, Any]]:
    out = [{"index": v["index"], "type": v["type"], "data": {"format": "string", "value": v["value"]},
            "ttl": v["ttl"], "timestamp": utc(v["timestamp"])} for v in record["values"]]
    out.append({"index": 100, "type": "HS_ADMIN", "data": {"format": "admin", "value": {
        "handle": f"0.NA/{prefix}", "index": 200, "permissions": "011111110011"}}, "ttl": 86400,
        "timestamp": utc(record["created_at"])})
    return sorted(out, key=lambda v: v["index"])


def type_matches(t: str, w: str) -> bool:
    return (t == w[:-1] or t.startswith(w)) if w.endswith(".") else t == w


# the kinds of section 9


def native(doc: dict[str, Any], s: State, k0: bytes) -> bool:
    ident = want(doc, "identifier", str)
    claimed = want(doc, "record", dict, nullable=True)
    has_error = "error" in doc or "message" in doc
    if has_error:
        want(doc, "error", str)
        want(doc, "message", str)
        if claimed is not None:
            raise Refused("answer_fields")
    key_is(k0, "id/", ident)
    rec = s.record(k0.decode(), IDENTIFIER_RECORD, "IdentifierRecord")
    presence(claimed is not None, rec is not None)
    if rec is not None:
        if not json_equal(claimed, rec):
            raise Refused("answer_record")
        return True
    if has_error:
        derived(doc["error"], "not_found")
        derived(doc["message"], f"{ident} is not registered")
    return False


def handle(doc: dict[str, Any], s: State, k0: bytes) -> bool:
    code = want(doc, "responseCode", int)
    name = want(doc, "handle", str)
    values = want(doc, "values", list) if "values" in doc else None
    flt = None
    if "filter" in doc:
        flt = want(doc, "filter", dict)
        idx, typ = flt.get("index"), flt.get("type")
        if (set(flt) != {"index", "type"} or type(idx) is not list or type(typ) is not list
                or any(type(i) is not int for i in idx) or any(type(t) is not str for t in typ) or not (idx or typ)):
            raise Refused("answer_fields")
    key_is(k0, "id/", name)
    rec = s.record(k0.decode(), IDENTIFIER_RECORD, "IdentifierRecord")
    presence(code != 100, rec is not None)
    if rec is None:
        if values is not None or flt is not None:
            raise Refused("answer_fields")
        return False
    every = handle_values(rec, owning_prefix(s, name))
    selected = every if flt is None else [
        v for v in every if v["index"] in flt["index"] or any(type_matches(v["type"], w) for w in flt["type"])]
    derived(code, 1 if selected else 200)
    if selected:
        derived(values, selected)
    elif values is not None:
        raise Refused("answer_derived")
    return True


def asset(doc: dict[str, Any], s: State, k0: bytes) -> bool:
    claimed = want(doc, "asset", dict)
    token = want(claimed, "id", str)
    user = want(doc, "user_of", str)
    if ("history" in doc) != ("history_start" in doc):
        raise Refused("answer_fields")
    events = want(doc, "history", list) if "history" in doc else None
    start = want(doc, "history_start", int) if events is not None else 0
    top_id = want(doc, "id", str) if "id" in doc else None
    key_is(k0, "asset/", token)
    if top_id is not None and top_id != token:
        raise Refused("answer_key")
    rec = s.record(k0.decode(), ASSET, "Asset")
    presence(True, rec is not None)
    if not json_equal(claimed, rec):
        raise Refused("answer_record")
    derived(user, user_at(rec, s.time))
    for name in ("owner", "kind", "burned"):
        if name in doc:
            derived(doc[name], rec[name])
    if events is not None:
        derived(start, max(1, rec["events"] - 999))
        derived(len(events), rec["events"] - start + 1)
        for i, event in enumerate(events):
            proven = s.record(f"asset-h/{token}/{start + i:08d}", ASSET_EVENT, "AssetEvent")
            if proven is None:
                raise Refused("answer_derived")
            derived(event, proven)
    return True


def licence(doc: dict[str, Any], s: State, k0: bytes) -> bool:
    claimed = want(doc, "licence", dict)
    lid = want(claimed, "id", str)
    active = want(doc, "active", bool)
    reason = want(doc, "inactive_reason", str)
    key_is(k0, "licence/", lid)
    rec = s.record(k0.decode(), LICENCE, "Licence")
    presence(True, rec is not None)
    if not json_equal(claimed, rec):
        raise Refused("answer_record")
    proven = inactive(s, rec, s.time)
    derived(reason, proven)
    derived(active, proven == "")
    return True


def rights(doc: dict[str, Any], s: State, k0: bytes) -> bool:
    token, holder, purpose = want(doc, "token", str), want(doc, "holder", str), want(doc, "purpose", str)
    at = want(doc, "at", int)
    allowed, reason = want(doc, "allowed", bool), want(doc, "reason", str)
    lid = want(doc, "licence_id", str, nullable=True)
    key_is(k0, "asset/", token)
    ok, why, deciding = decide(s, token, holder, purpose, at)
    derived(allowed, ok)
    derived(reason, why)
    derived(lid, deciding or None)
    return s.values[k0] is not None


Checker = Callable[[dict[str, Any], State, bytes], bool]
KINDS: list[tuple[str, str, str | None, set[str], set[str], Checker]] = [
    ("identifier", "id/", None, {"identifier", "height"}, {"record", "error", "message"}, native),
    ("handle", "id/", "responseCode", {"responseCode", "handle"}, {"values", "filter"}, handle),
    ("asset", "asset/", None, {"height", "asset", "user_of"},
     {"history", "history_start", "id", "owner", "kind", "burned"}, asset),
    ("rights-check", "asset/", "allowed",
     {"token", "holder", "purpose", "at", "height", "allowed", "reason", "licence_id"}, set(), rights),
    ("licence", "licence/", None, {"height", "licence", "active", "inactive_reason"}, set(), licence),
]


def verify(doc: Any, genesis: dict[str, Any]) -> dict[str, Any]:
    """{"valid": False, "reason"} or {"valid": True, "kind", "height", "key", "present", "unproven"}."""
    g = Genesis(genesis)
    try:
        if type(doc) is not dict or ("proof" not in doc and "type" not in doc):
            raise Refused("malformed_answer")
        if "proof" not in doc:
            proven = check_proof(doc, g)
            k0 = proven["keys"][0]
            return {"valid": True, "kind": "state-proof", "height": proven["height"],
                    "key": k0.decode(errors="replace"), "present": proven["values"][k0] is not None, "unproven": None}
        proven = check_proof(doc["proof"], g)
        k0 = proven["keys"][0]
        candidates = [k for k in KINDS if k0.startswith(k[1].encode())]
        chosen = [k for k in candidates if k[2] is not None and k[2] in doc] or [k for k in candidates if k[2] is None]
        if not chosen:
            raise Refused("answer_kind")
        name, _, _, required, optional, checker = chosen[0]
        if not required <= set(doc) or not set(doc) <= required | optional | {"proof", "unproven"}:
            raise Refused("answer_fields")
        if "unproven" in doc and type(doc["unproven"]) is not dict:
            raise Refused("answer_fields")
        if "height" in required:
            if type(doc["height"]) is not int:
                raise Refused("answer_fields")
            if doc["height"] != proven["height"]:
                raise Refused("answer_height")
        present = checker(doc, State(proven), k0)
        return {"valid": True, "kind": name, "height": proven["height"], "key": k0.decode(errors="replace"),
                "present": present,
                "unproven": doc.get("unproven")}
    except Refused as exc:
        return {"valid": False, "reason": exc.reason}


def main(argv: list[str]) -> int:
    if len(argv) != 3 or argv[1] != "--genesis":
        print(__doc__.strip().splitlines()[-1].strip(), file=sys.stderr)
        return 2
    with open(argv[0]) as f, open(argv[2]) as g:
        verdict = verify(json.load(f), json.load(g))
    print(json.dumps(verdict))
    return 0 if verdict["valid"] else 1


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
