"""Token, licence and rights-check answers and their proofs (docs/proofs.md).

- An asset answer claims a token's record, its ERC-4907 `user_of` at the block's time, and optionally
  its provenance: the tail of its history events, each a proven state entry.
- A licence answer claims a licence and whether it is active at the block's time, which depends on
  its ancestors: they are proven too.
- A rights-check answer claims a decision (may this holder use this token for this purpose at this
  time?): the proof covers every record the decision read, and a verifier decides again from them.

The node builds each answer over a `RecordingView` and proves every key it read; the checkers here
re-run the same functions over the proven entries (`ProvenView`), which refuses any other key.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any, TypeVar

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
from ledger.codec import CodecError, to_plain
from ledger.nft.assets import Asset, AssetEvent, history_key, user_of
from ledger.nft.rights import Licence, check, inactive_reason
from ledger.proofs import VerifiedState

T = TypeVar("T")
MAX_HISTORY = 1000  # events an asset answer carries: the latest ones
ASSET_SUMMARY = ("owner", "kind", "burned")  # fields `ledger asset show` repeats at the top


def history_start(events: int) -> int:
    """Sequence number of the first event an asset answer lists (events are numbered from 1)."""
    return max(1, events - MAX_HISTORY + 1)


def _decided(what: str, compute: Callable[[], T]) -> T:
    """Run a ledger rule over the proven entries; a proven value of the wrong type fails the answer."""
    try:
        return compute()
    except CodecError as exc:
        raise fail("value_not_record", f"a proven value read for the {what} is not the record expected: {exc}") from exc


def check_asset(doc: Mapping[str, Any], state: VerifiedState) -> Checked:
    """`{height, asset, user_of, [history, history_start], [id, owner, kind, burned], proof}`."""
    claimed = need(doc, "asset", dict)
    token = need(claimed, "id", str)
    claimed_user = need(doc, "user_of", str)
    if ("history" in doc) != ("history_start" in doc):
        raise fail("answer_fields", "history and history_start come together")
    events = need(doc, "history", list) if "history" in doc else None
    start = need(doc, "history_start", int) if events is not None else 0
    top_id = need(doc, "id", str) if "id" in doc else None
    require_key(state, "asset/", token, "token")
    if top_id is not None and top_id != token:
        raise fail("answer_key", f"the answer names token {top_id!r} at the top and {token!r} in its record")
    record = decode_value(Asset, state.values[state.keys[0]], "Asset")
    require_presence(True, record is not None, "token")
    assert record is not None
    plain = require_record(claimed, record, "asset")
    require_derived("user_of", claimed_user, user_of(record, state.header.timestamp))
    for name in ASSET_SUMMARY:
        if name in doc:
            require_derived(name, doc[name], plain[name])
    if events is not None:
        require_derived("history_start", start, history_start(record.events))
        require_derived("history length", len(events), record.events - start + 1)
        view = state.view()
        for i, event in enumerate(events):
            proven = decode_value(AssetEvent, view.get(history_key(token, start + i)), "AssetEvent")
            if proven is None:
                raise fail("answer_derived", f"event {start + i} of {token} is absent")
            require_derived(f"history event {start + i}", event, to_plain(proven))
    return Checked(True, plain)


def check_licence(doc: Mapping[str, Any], state: VerifiedState) -> Checked:
    """`{height, licence, active, inactive_reason, proof}`: activity at the block's time, ancestors proven."""
    claimed = need(doc, "licence", dict)
    licence_id = need(claimed, "id", str)
    active = need(doc, "active", bool)
    reason = need(doc, "inactive_reason", str)
    require_key(state, "licence/", licence_id, "licence")
    record = decode_value(Licence, state.values[state.keys[0]], "Licence")
    require_presence(True, record is not None, "licence")
    assert record is not None
    plain = require_record(claimed, record, "licence")
    proven = _decided("licence's activity", lambda: inactive_reason(state.view(), record, state.header.timestamp))
    require_derived("inactive_reason", reason, proven)
    require_derived("active", active, proven == "")
    return Checked(True, plain)


def check_rights(doc: Mapping[str, Any], state: VerifiedState) -> Checked:
    """`{token, holder, purpose, at, height, allowed, reason, licence_id, proof}`: decided again from the proof."""
    token, holder, purpose = need(doc, "token", str), need(doc, "holder", str), need(doc, "purpose", str)
    at = need(doc, "at", int)
    allowed, reason = need(doc, "allowed", bool), need(doc, "reason", str)
    licence_id = need(doc, "licence_id", str, nullable=True)
    require_key(state, "asset/", token, "token")
    decision = _decided("decision", lambda: check(state.view(), token, holder, purpose, at))
    require_derived("allowed", allowed, decision.allowed)
    require_derived("reason", reason, decision.reason)
    require_derived("licence_id", licence_id, decision.licence_id or None)
    asset = decode_value(Asset, state.values[state.keys[0]], "Asset")
    return Checked(asset is not None, None if asset is None else to_plain(asset))


ASSET = AnswerKind("asset", b"asset/", None, frozenset({"height", "asset", "user_of"}), check_asset,
                   frozenset({"history", "history_start", "id", *ASSET_SUMMARY}))
LICENCE = AnswerKind("licence", b"licence/", None, frozenset({"height", "licence", "active", "inactive_reason"}),
                     check_licence)
RIGHTS = AnswerKind("rights-check", b"asset/", "allowed",
                    frozenset({"token", "holder", "purpose", "at", "height", "allowed", "reason", "licence_id"}),
                    check_rights)
