"""Identifier answers and their proofs: the native answer and the Handle.Net answer (docs/proofs.md).

A native answer (`/v1/resolve`, `ledger resolve --proof`) names the identifier by its storage key and
claims its record, or its absence. A Handle.Net answer (`/api/handles/...?proof=true`) claims the
record's values in the Handle shape, including the derived HS_ADMIN value, which names the prefix that
administers the identifier: that prefix is proven too (its record, and for a GS1 key the absence of
every longer company prefix that would own it instead).

Each answer's proof covers exactly what the server read to build it: the node runs the same lookups
over a `RecordingView` and proves every key they read.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ledger.answer_rules import (
    AnswerKind,
    Checked,
    decode_value,
    fail,
    need,
    require_derived,
    require_key,
    require_presence,
    require_record,
)
from ledger.chaindb import ChainDB
from ledger.codec import to_plain
from ledger.proofs import RecordingView, VerifiedState, build_state_proof
from ledger.resolver.handle_format import filter_values, handle_values
from ledger.resolver.identifiers import InvalidIdentifier
from ledger.resolver.registry import IdentifierRecord, get_identifier, identifier_key, owning_prefix

NAMESPACE = "id/"
NOT_FOUND = "not_found"


def not_registered_message(identifier: str) -> str:
    return f"{identifier} is not registered"


def build_resolution_proof(chain: ChainDB, key: str, height: int | None = None,
                           anchor: bool = False) -> dict[str, Any]:
    """The proof of the record stored under `key` (a storage key) as of `height` (default: the head)."""
    return build_state_proof(chain, identifier_key(key), height, anchor=anchor)


def handle_lookup(view: Any, handle: str) -> tuple[str, str, bool, IdentifierRecord | None, list[bytes]]:
    """(storage key, owning prefix, whether the prefix is registered, record, keys read) of a Handle request:
    what the Handle answer states, and the state keys its proof must cover (the record's first)."""
    recorder = RecordingView(view)
    key, prefix, prefix_record = owning_prefix(recorder, handle)
    record = get_identifier(recorder, key)
    keys = [identifier_key(key), *recorder.keys]
    return key, prefix, prefix_record is not None, record, keys


# --- checking -----------------------------------------------------------------------------------------


def check_native(doc: Mapping[str, Any], state: VerifiedState) -> Checked:
    """`{identifier, height, record | (error, message), proof}`: the record, or the proven absence."""
    identifier = need(doc, "identifier", str)
    claimed = need(doc, "record", dict, nullable=True)
    has_error = "error" in doc or "message" in doc
    if has_error:
        error, message = need(doc, "error", str), need(doc, "message", str)
        if claimed is not None:
            raise fail("answer_fields", "an answer with a record carries no error")
    require_key(state, NAMESPACE, identifier, "identifier")
    record = decode_value(IdentifierRecord, state.values[state.keys[0]], "identifier")
    require_presence(claimed is not None, record is not None, "identifier")
    if record is not None:
        return Checked(True, require_record(claimed, record, "record"))
    if has_error:
        require_derived("error", error, NOT_FOUND)
        require_derived("message", message, not_registered_message(identifier))
    return Checked(False, None)


def _filter(doc: Mapping[str, Any]) -> tuple[list[int], list[str]] | None:
    if "filter" not in doc:
        return None
    spec = need(doc, "filter", dict)
    indexes, types = spec.get("index"), spec.get("type")
    if (set(spec) != {"index", "type"} or type(indexes) is not list or type(types) is not list
            or any(type(i) is not int for i in indexes) or any(type(t) is not str for t in types)
            or not (indexes or types)):
        raise fail("answer_fields", "the answer's filter is not {index: [integers], type: [strings]}, one non-empty")
    return indexes, types


def check_handle(doc: Mapping[str, Any], state: VerifiedState) -> Checked:
    """`{responseCode, handle, values?, filter?, proof}`: the Handle.Net shape of the proven record."""
    code = need(doc, "responseCode", int)
    handle = need(doc, "handle", str)
    values = need(doc, "values", list) if "values" in doc else None
    wanted = _filter(doc)
    require_key(state, NAMESPACE, handle, "handle")
    record = decode_value(IdentifierRecord, state.values[state.keys[0]], "identifier")
    require_presence(code != 100, record is not None, "handle")
    if record is None:
        if values is not None or wanted is not None:
            raise fail("answer_fields", "an answer of responseCode 100 carries no values and no filter")
        return Checked(False, None)
    # HS_ADMIN names the prefix that owns the identifier: proven from the prefix records in the proof.
    try:
        _, prefix, prefix_record = owning_prefix(state.view(), handle)
    except InvalidIdentifier as exc:
        raise fail("answer_key", f"the answer names an invalid identifier: {exc}") from exc
    if prefix_record is None:
        raise fail("answer_derived", f"the identifier's prefix {prefix} is not registered at this height")
    selected = filter_values(handle_values(record, prefix), *(wanted or ([], [])))
    require_derived("responseCode", code, 1 if selected else 200)
    if selected:
        require_derived("values", values, selected)
    elif values is not None:
        raise fail("answer_derived", "an answer of responseCode 200 carries no values")
    return Checked(True, to_plain(record))


NATIVE = AnswerKind("identifier", NAMESPACE.encode(), None, frozenset({"identifier", "height"}), check_native,
                    frozenset({"record", "error", "message"}))
HANDLE = AnswerKind("handle", NAMESPACE.encode(), "responseCode", frozenset({"responseCode", "handle"}), check_handle,
                    frozenset({"values", "filter"}))
