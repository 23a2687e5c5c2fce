"""Who may take a backup of a running node: whoever holds the node's key (the operator, on the node's host).

A backup request carries a token: a millisecond timestamp and the node key's signature over it and the
chain id. The node accepts it from a loopback address only, within `MAX_SKEW_MS` of its own clock. A hostile
client on the network cannot start the (costly) stream; a validator's backup route cannot be used by another
validator's operator either, since each holds only their own key.
"""

from __future__ import annotations

from ledger.crypto import SigningKey, sign_stamped, stamped_problem

DOMAIN_BACKUP = b"ledger/backup/v1"
MAX_SKEW_MS = 120_000
HEADER = "X-Ledger-Backup-Token"


def make_token(key: SigningKey, chain_id: str, now_ms: int) -> str:
    return sign_stamped(key, DOMAIN_BACKUP, lambda when: (chain_id, when), now_ms)


def token_problem(token: str | None, public_key: bytes, chain_id: str, now_ms: int) -> str | None:
    """Why `token` does not authorise a backup (None: it does)."""
    if not token:
        return f"a backup needs the {HEADER} header (`ledger backup --home H` signs one with the node key)"
    return stamped_problem(token, public_key, DOMAIN_BACKUP, lambda when: (chain_id, when), now_ms, MAX_SKEW_MS,
                           "the backup token", "this node's key")
