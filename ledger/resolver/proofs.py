"""Resolution proofs: an identifier's record (or its absence) chained to a certified block header.

A proof is a state proof (`ledger.proofs`, format in docs/proofs.md) of the key `id/<storage key>`:
the record bytes (or nothing), the sparse Merkle path to the header's state root, the header, its
commit certificate and optionally the path to an Ethereum anchor. Answers carry it as `proof`:
the native answer (`/v1/resolve`, `ledger resolve --proof`: `identifier`, `record`) and the Handle.Net
answer (`/api/handles/...?proof=true`: `handle`, `values`). `check_answer` checks that what such an
answer says is what its proof proves; `ledger verify` runs it after the proof itself holds.
"""

from __future__ import annotations

from typing import Any

from ledger.chaindb import ChainDB
from ledger.codec import CodecError, decode, to_plain
from ledger.proofs import InvalidProof, build_state_proof
from ledger.resolver.handle_format import HS_ADMIN_INDEX, handle_values
from ledger.resolver.identifiers import InvalidIdentifier, owner_prefix_candidates
from ledger.resolver.registry import IdentifierRecord, identifier_key, storage_key

KEY_PREFIX = b"id/"


def build_resolution_proof(chain: ChainDB, key: str, height: int | None = None,
                           anchor: bool = False) -> dict[str, Any]:
    """The proof of the record stored under `key` (a storage key) as of `height` (default: the head)."""
    return build_state_proof(chain, identifier_key(key), height, anchor=anchor)


def is_identifier_key(key: bytes) -> bool:
    return key.startswith(KEY_PREFIX)


def check_answer(doc: Any, key: bytes, value: bytes | None) -> dict[str, Any] | None:
    """The proven record (JSON form; None when the proof proves absence), after checking that the answer
    around the proof names the proven identifier and claims exactly the proven record. Raises InvalidProof."""
    try:
        record = None if value is None else decode(IdentifierRecord, value)
    except CodecError as exc:
        raise InvalidProof(f"the proven value is not an identifier record: {exc}") from exc
    plain = None if record is None else to_plain(record)
    if not isinstance(doc, dict) or "proof" not in doc:
        return plain  # a bare proof: nothing else is claimed
    named = doc.get("identifier", doc.get("handle"))
    if named is not None and _key_of(str(named)) != key:
        raise InvalidProof("the proof is for another identifier than the answer")
    if "record" in doc and doc["record"] != plain:
        raise InvalidProof("the answer's record differs from the proven value")
    if "responseCode" in doc:
        _check_handle_answer(doc, record)
    return plain


def _check_handle_answer(doc: dict[str, Any], record: IdentifierRecord | None) -> None:
    """A Handle.Net answer: its response code must agree with the proof (1: values, 200: present but no
    value matched the filter, 100: not found), and its values must be the proven record's."""
    code = doc["responseCode"]
    agrees = {1: record is not None and "values" in doc, 200: record is not None and "values" not in doc,
              100: record is None and "values" not in doc}.get(code, False)
    if not agrees:
        raise InvalidProof(f"response code {code!r} does not agree with the proof")
    if record is not None and "values" in doc:
        _check_handle_values(doc["values"], record, _admin_prefixes(str(doc.get("handle", ""))))


def _key_of(identifier: str) -> bytes:
    """The state key of an identifier in any accepted form (answers echo what was asked)."""
    try:
        return identifier_key(storage_key(identifier)[0])
    except InvalidIdentifier:
        return identifier_key(identifier)


def _admin_prefixes(handle: str) -> set[str]:
    """The prefixes that may administer `handle`: its own prefix, or for a GS1 key the company prefixes
    its digits allow (which of them is registered is prefix state, not covered by this proof)."""
    try:
        key, ident = storage_key(handle)
    except InvalidIdentifier as exc:
        raise InvalidProof(f"the answer names an invalid identifier: {exc}") from exc
    return {key.partition("/")[0]} if ident is None else set(owner_prefix_candidates(ident))


def _check_handle_values(values: Any, record: IdentifierRecord, admin_prefixes: set[str]) -> None:
    """Each value of a Handle answer must be the proven record's value at that index; the derived HS_ADMIN
    value must name a prefix that may administer the identifier."""
    if not isinstance(values, list):
        raise InvalidProof("the answer's values are not a list")
    admin = next((v for v in values if isinstance(v, dict) and v.get("index") == HS_ADMIN_INDEX), None)
    admin_handle = admin.get("data", {}).get("value", {}).get("handle", "") if isinstance(admin, dict) else ""
    prefix = admin_handle.removeprefix("0.NA/") if isinstance(admin_handle, str) else ""
    if admin is not None and prefix not in admin_prefixes:
        raise InvalidProof(f"the answer's HS_ADMIN names {admin_handle!r}, not a prefix of the identifier")
    proven = {v["index"]: v for v in handle_values(record, prefix)}
    for value in values:
        if not isinstance(value, dict) or proven.get(value.get("index")) != value:
            raise InvalidProof(f"the answer's value {value!r:.80} differs from the proven record")
