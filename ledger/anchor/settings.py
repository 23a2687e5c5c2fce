"""The anchoring settings the ledger certifies: the Ethereum chain, the LedgerAnchor contract, and the
validators' submitter addresses.

They are state (`anchor/settings`), set by the genesis file's optional `anchoring` section and changed
only by the admin action `anchor.settings`, which runs once the admins' threshold approves it
(`ledger.governance`). Nothing else chooses them: an attestation naming another chain, contract or
submitter is refused by every node alike, a proof's anchor is checked against a certified record, and a
node whose `config.json` names another contract refuses to anchor. Without the settings a ledger does
not anchor at all (attestations are refused, and no block hashes are kept for them).

Addresses are written in lowercase hex (`0x` and 40 digits), so that equal addresses are equal text
and records hash alike everywhere (checksummed forms are for display).

This module imports no web3: it is part of the deterministic state machine.
"""

from __future__ import annotations

from dataclasses import dataclass

from ledger.codec import encode
from ledger.state import StateView, TxContext, get_record
from ledger.tx import Reject, TxRejected, register_kind

SETTINGS_KIND = "anchor.settings"
SETTINGS_KEY = b"anchor/settings"
MAX_SUBMITTERS = 256
MAX_UINT64 = 2**64 - 1


@dataclass(frozen=True)
class AnchoringSettings:
    eth_chain_id: int  # the Ethereum chain id (EIP-155) the contract lives on
    contract: str  # the LedgerAnchor contract's address, lowercase
    submitters: tuple[str, ...]  # the validators' Ethereum addresses whose anchors count, lowercase


def is_address(text: str) -> bool:
    """`0x` and 40 lowercase hex digits: the one form addresses take in the ledger."""
    return len(text) == 42 and text.startswith("0x") and all(c in "0123456789abcdef" for c in text[2:])


def check_settings(settings: AnchoringSettings) -> None:
    """The settings are well formed; raises TxRejected (invalid_value) naming what is not."""
    # The chain id is a positive 64-bit number.
    if not 1 <= settings.eth_chain_id <= MAX_UINT64:
        raise TxRejected(Reject.INVALID_VALUE, f"eth_chain_id must be 1 to 2^64-1, not {settings.eth_chain_id}")
    # The contract is an address in its one written form.
    if not is_address(settings.contract):
        raise TxRejected(Reject.INVALID_VALUE, f"contract {settings.contract!r} is not a lowercase 0x address")
    # Someone can anchor, and no submitter is listed twice.
    if not 1 <= len(settings.submitters) <= MAX_SUBMITTERS:
        raise TxRejected(Reject.INVALID_VALUE, f"1 to {MAX_SUBMITTERS} submitters are needed")
    if len(set(settings.submitters)) != len(settings.submitters):
        raise TxRejected(Reject.INVALID_VALUE, "a submitter is listed twice")
    for s in settings.submitters:
        # Each submitter is an address in its one written form.
        if not is_address(s):
            raise TxRejected(Reject.INVALID_VALUE, f"submitter {s!r} is not a lowercase 0x address")


def get_settings(view: StateView) -> AnchoringSettings | None:
    """The certified settings; None when this ledger does not anchor."""
    return get_record(view, AnchoringSettings, SETTINGS_KEY)


def settings_state(settings: AnchoringSettings) -> dict[bytes, bytes]:
    """The genesis state entry of a genesis file's anchoring section."""
    return {SETTINGS_KEY: encode(settings)}


def process_settings(ctx: TxContext, p: AnchoringSettings) -> None:
    """`anchor.settings`: replace the certified settings (an admin action)."""
    ctx.require_admin()
    check_settings(p)
    ctx.put(SETTINGS_KEY, p)


def settings_to_json(settings: AnchoringSettings | None) -> dict[str, object] | None:
    if settings is None:
        return None
    return {"eth_chain_id": settings.eth_chain_id, "contract": settings.contract,
            "submitters": list(settings.submitters)}


register_kind(SETTINGS_KIND, AnchoringSettings)
