"""The signed request that reads private data: only a member of the collection gets the plaintext.

The client signs, with its member key, the chain id, the collection, the key, its member id and the
time in milliseconds. A node accepts it within `MAX_SKEW_MS` of its own clock and only once (it keeps
the signatures it accepted for that long), so a captured request is worth nothing later or twice. The HTTP
API is plain HTTP: a read with `sealed=true` gets the value sealed to the member's registered X25519 key,
so that a network eavesdropper reads nothing.

An observer (no peer links) fetches private data from the validators' HTTP with a request signed by its node
key (`sign_fetch`), carrying a one-time X25519 key the answer is sealed to; the validator answers as it
answers a peer (`PrivateData.serve_fetch`: only a node of a member organisation).
"""

from __future__ import annotations

from collections import OrderedDict
from collections.abc import Callable

from ledger.codec import encode
from ledger.crypto import SigningKey, sign_stamped, stamped_problem

DOMAIN_PRIVATE_READ = b"ledger/private-read/v1"
DOMAIN_NODE_FETCH = b"ledger/private-fetch/v1"
NODE_KEY_HEADER = "X-Ledger-Node-Key"
MAX_SKEW_MS = 60_000
MEMBER_HEADER = "X-Ledger-Member"
REQUEST_HEADER = "X-Ledger-Request"
MAX_REMEMBERED = 100_000


def sign_read(key: SigningKey, member_id: str, chain_id: str, collection: str, entry_key: str, now_ms: int) -> str:
    """The value of the X-Ledger-Request header: `<time ms>.<signature hex>`."""
    return sign_stamped(key, DOMAIN_PRIVATE_READ, lambda when: (chain_id, collection, entry_key, member_id, when),
                        now_ms)


def sign_fetch(node_key: SigningKey, chain_id: str, reply_key: bytes, request: bytes, now_ms: int) -> str:
    """An observer's fetch request (`POST /v1/private-fetch`), signed by its node key."""
    return sign_stamped(node_key, DOMAIN_NODE_FETCH,
                        lambda when: (chain_id, node_key.public_key, reply_key, request, when), now_ms)


def read_associated_data(chain_id: str, collection: str, entry_key: str, member_id: str) -> bytes:
    """What a sealed read answer is bound to: it opens only as this entry's, for this member."""
    return encode(("private-read", chain_id, collection, entry_key, member_id))


class ReadChecker:
    """Checks read requests' signatures and times; remembers those accepted, to refuse them a second time."""

    def __init__(self, chain_id: str) -> None:
        self._chain_id = chain_id
        self._seen: OrderedDict[bytes, int] = OrderedDict()  # signature -> its time, oldest first

    def problem(self, token: str | None, public_key: bytes, member_id: str, collection: str, entry_key: str,
                now_ms: int) -> str | None:
        """Why `token` does not let `member_id` (key `public_key`) read the entry (None: it does)."""
        if not token:
            return f"a read of private data needs the {REQUEST_HEADER} header, signed by a member's key"
        return self._check(token, public_key, DOMAIN_PRIVATE_READ,
                           lambda when: (self._chain_id, collection, entry_key, member_id, when), now_ms,
                           "the member's current key")

    def fetch_problem(self, token: str | None, node_key: bytes, reply_key: bytes, request: bytes,
                      now_ms: int) -> str | None:
        """Why `token` is not a fetch request signed by the node key `node_key` (None: it is)."""
        if not token:
            return f"a fetch of private data needs the {REQUEST_HEADER} header, signed by the node's key"
        return self._check(token, node_key, DOMAIN_NODE_FETCH,
                           lambda when: (self._chain_id, node_key, reply_key, request, when), now_ms, "the node's key")

    def _check(self, token: str, public_key: bytes, domain: bytes, signed: Callable[[int], object], now_ms: int,
               whose: str) -> str | None:
        problem = stamped_problem(token, public_key, domain, signed, now_ms, MAX_SKEW_MS, "the read request", whose)
        if problem is not None:
            return problem
        stamp, _, signature = token.partition(".")
        sig = bytes.fromhex(signature)
        self._forget(now_ms)
        if sig in self._seen:
            return "this read request was used already; sign a new one"
        self._seen[sig] = int(stamp)
        return None

    def _forget(self, now_ms: int) -> None:
        while self._seen and (len(self._seen) >= MAX_REMEMBERED
                              or next(iter(self._seen.values())) < now_ms - 2 * MAX_SKEW_MS):
            self._seen.popitem(last=False)
