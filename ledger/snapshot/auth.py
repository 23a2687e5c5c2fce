"""Who may take a backup of a running node: whoever holds the node's key (the operator, on the node's host).

A backup request carries a token: a millisecond timestamp and the node key's signature over it and the
chain id. The node accepts it from a loopback address only, within `MAX_SKEW_MS` of its own clock. A hostile
client on the network cannot start the (costly) stream; a validator's backup route cannot be used by another
validator's operator either, since each holds only their own key.
"""

from __future__ import annotations

from ledger.crypto import SigningKey, verify

DOMAIN_BACKUP = b"ledger/backup/v1"
MAX_SKEW_MS = 120_000
HEADER = "X-Ledger-Backup-Token"


def make_token(key: SigningKey, chain_id: str, now_ms: int) -> str:
    return f"{now_ms}.{key.sign(DOMAIN_BACKUP, (chain_id, now_ms)).hex()}"


def token_problem(token: str | None, public_key: bytes, chain_id: str, now_ms: int) -> str | None:
    """Why `token` does not authorise a backup (None: it does)."""
    if not token:
        return f"a backup needs the {HEADER} header (`ledger backup --home H` signs one with the node key)"
    stamp, _, signature = token.partition(".")
    try:
        when, sig = int(stamp), bytes.fromhex(signature)
    except ValueError:
        return "the backup token is malformed"
    if abs(now_ms - when) > MAX_SKEW_MS:
        return f"the backup token's time is more than {MAX_SKEW_MS // 1000} s from the node's clock"
    if not verify(public_key, DOMAIN_BACKUP, (chain_id, when), sig):
        return "the backup token is not signed by this node's key"
    return None
