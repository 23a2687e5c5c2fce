"""A node's side of private data: puts waiting for their commitment, fetching from member peers, purges.

- A put arrives over HTTP at a node of a member organisation with the plaintext, its salt and the
  signed `private.put` (`accept_put`). The node checks the plaintext against the commitment and keeps it
  in memory until the transaction commits; then it writes it to its side store.
- Every node that commits a `private.put` of a collection its organisation belongs to and does not hold
  the plaintext asks it of its peers of member organisations over the authenticated peer links (a
  request of its own kind, `FETCH`). A peer answers only a validator whose organisation, in the
  certified state, is a member of the collection, and only with the committed value; the asker keeps
  it only if it matches the commitment. A non-member node is never sent the plaintext.
- A node that was down or missed it asks again: at start it lists the entries of its organisation's
  collections that it lacks, and it retries every `RETRY_S` while some are missing.
- On committing a `private.purge` every node deletes the entry from its side store and compacts it.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Awaitable, Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

from ledger.chaindb import ChainDB, ExecutedBlock
from ledger.codec import CodecError, decode, encode
from ledger.private.reads import ReadChecker
from ledger.private.records import (
    ENTRY_PREFIX,
    MAX_VALUE_BYTES,
    Collection,
    PrivateEntry,
    commitment,
    get_collection,
    get_entry,
    get_node_org,
    node_in_collection,
)
from ledger.private.sidestore import SideEntry, SideStore
from ledger.state import StateView
from ledger.store import NS, Store

log = logging.getLogger("ledger.private")

FETCH = 0x50  # the first byte of a peer request for private data (block requests are msgpack arrays)
RETRY_S = 1.0
MAX_PENDING_BYTES = 64 << 20  # plaintexts waiting for their commit, in all (a put beyond waits its turn: 503)
PENDING_TTL_S = 600.0  # a plaintext whose put has not committed by then is dropped
FETCH_TIMEOUT_S = 5.0


@dataclass(frozen=True)
class FetchRequest:
    collection: str
    key: str
    commitment: bytes


@dataclass(frozen=True)
class FetchAnswer:
    salt: bytes
    value: bytes


class PrivateHost(Protocol):
    """What the service needs of the node (ledger.node.Node)."""

    chain: ChainDB
    store: Store

    def add_commit_listener(self, listener: Callable[[ExecutedBlock], None]) -> None: ...

    def add_peer_request_handler(self, kind: int, handler: Callable[[str, bytes], Awaitable[bytes]]) -> None: ...


class Sources(Protocol):
    """Where a node fetches private data from: a validator's peer links (`LinkSources`), an observer's
    validators over HTTP (`ledger.private.http_fetch.HttpSources`)."""

    def candidates(self, view: StateView, collection: Collection) -> Sequence[str]: ...

    async def request(self, source: str, payload: bytes, timeout: float) -> bytes | None: ...


class PeerLinks(Protocol):
    def member_peers(self) -> Sequence[str]: ...

    async def request_peer(self, peer: str, payload: bytes, timeout: float) -> bytes | None: ...


class LinkSources:
    """A validator's sources: its connected peers of member organisations (never asks, so never tells, others)."""

    def __init__(self, links: PeerLinks) -> None:
        self._links = links

    def candidates(self, view: StateView, collection: Collection) -> Sequence[str]:
        return [p for p in self._links.member_peers() if node_in_collection(view, p, collection)]

    async def request(self, source: str, payload: bytes, timeout: float) -> bytes | None:
        return await self._links.request_peer(source, payload, timeout)


class PutRefused(Exception):
    def __init__(self, status: int, reason: str, message: str) -> None:
        super().__init__(message)
        self.status, self.reason, self.message = status, reason, message


class PrivateData:
    def __init__(self, host: PrivateHost, node_id: str, path: Path, sources: Sources) -> None:
        self._host = host
        self._sources = sources
        self.node_id = node_id
        self.store = SideStore(path)
        self.reads = ReadChecker(host.chain.chain_id)  # signed read requests, each accepted once
        # commitment -> (when it arrived, the plaintext), until its put commits or PENDING_TTL_S passes
        self._pending: dict[bytes, tuple[float, FetchAnswer]] = {}
        self._wanted: set[tuple[str, str]] = set()
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.counters = {"fetched": 0, "served": 0, "refused_peer": 0, "bad_answers": 0, "purged": 0}
        host.add_commit_listener(self.on_commit)
        host.add_peer_request_handler(FETCH, self.serve_fetch)

    # --- lifecycle ---------------------------------------------------------------------------------

    def start(self) -> None:
        self._wanted.update(self._missing())
        self._task = asyncio.create_task(self._fetch_loop(), name="private-fetch")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self.store.close()

    def status(self) -> dict[str, Any]:
        return {"org": self.org(), "missing": len(self._wanted), **self.counters}

    def org(self) -> str | None:
        return get_node_org(self._host.chain.latest, self.node_id)

    def holds_collection(self, name: str) -> bool:
        collection = get_collection(self._host.chain.latest, name)
        return collection is not None and node_in_collection(self._host.chain.latest, self.node_id, collection)

    # --- puts --------------------------------------------------------------------------------------

    def expect(self, collection: str, key: str, salt: bytes, value: bytes, committed_to: bytes) -> None:
        """Keep a put's plaintext until its transaction commits (PutRefused if it is not what was committed to)."""
        if not self.holds_collection(collection):
            raise PutRefused(403, "not_member_node", f"this node's organisation is not a member of {collection!r}: "
                                                     "send private data to a node of a member organisation")
        if len(value) > MAX_VALUE_BYTES:
            raise PutRefused(413, "oversized", f"a private value is at most {MAX_VALUE_BYTES} bytes")
        if commitment(collection, key, salt, value) != committed_to:
            raise PutRefused(400, "bad_commitment", "the value and salt do not hash to the transaction's commitment")
        now = time.monotonic()
        for stale in [c for c, (since, _) in self._pending.items() if now - since > PENDING_TTL_S]:
            del self._pending[stale]  # its put never committed (refused after admission): let it go
        if sum(len(a.value) for _, a in self._pending.values()) + len(value) > MAX_PENDING_BYTES:
            raise PutRefused(503, "busy", "too many private values wait for their commit here; try again soon")
        self._pending[committed_to] = (now, FetchAnswer(salt, value))

    def forget(self, committed_to: bytes) -> None:
        self._pending.pop(committed_to, None)

    # --- commits -----------------------------------------------------------------------------------

    def on_commit(self, executed: ExecutedBlock) -> None:
        for state_key, raw in sorted(executed.changes.items()):
            if not state_key.startswith(ENTRY_PREFIX) or raw is None:
                continue
            entry = decode(PrivateEntry, raw, trusted=True)
            if entry.purged:
                self._purge(entry)
                continue
            waiting = self._pending.pop(entry.commitment, None)
            answer = None if waiting is None else waiting[1]
            if not self.holds_collection(entry.collection):
                continue
            if answer is not None:
                self.store.put(entry.collection, entry.key, SideEntry(entry.commitment, answer.salt, answer.value))
            else:
                self._wanted.add((entry.collection, entry.key))
                self._wake.set()

    def _purge(self, entry: PrivateEntry) -> None:
        self._pending.pop(entry.commitment, None)
        self._wanted.discard((entry.collection, entry.key))
        if self.store.purge(entry.collection, entry.key):
            self.counters["purged"] += 1

    def _missing(self) -> list[tuple[str, str]]:
        """The live entries of this node's collections that its side store lacks (at start)."""
        missing = []
        for _, raw in self._host.store.iterate(NS.STATE_LATEST + ENTRY_PREFIX):
            entry = decode(PrivateEntry, raw, trusted=True)
            if entry.purged or not self.holds_collection(entry.collection):
                continue
            held = self.store.get(entry.collection, entry.key)
            if held is None or held.commitment != entry.commitment:
                missing.append((entry.collection, entry.key))
        return missing

    # --- between member nodes ----------------------------------------------------------------------

    def readable(self, collection: str, key: str) -> tuple[PrivateEntry, SideEntry] | None:
        """The committed entry and its plaintext, if it is live and held here."""
        entry = get_entry(self._host.chain.latest, collection, key)
        if entry is None or entry.purged:
            return None
        held = self.store.get(collection, key)
        if held is None or held.commitment != entry.commitment:
            return None
        return entry, held

    async def serve_fetch(self, peer: str, payload: bytes) -> bytes:
        """A peer validator asks for an entry: answered only if its organisation is a member (else empty)."""
        try:
            request = decode(FetchRequest, payload[1:])
        except CodecError:
            return b""
        view = self._host.chain.latest
        collection = get_collection(view, request.collection)
        if collection is None or not node_in_collection(view, peer, collection):
            self.counters["refused_peer"] += 1
            log.warning("refused private data of %r to %s: its organisation is not a member", request.collection,
                        peer[:8])
            return b""
        found = self.readable(request.collection, request.key)
        if found is None or found[0].commitment != request.commitment:
            return b""
        self.counters["served"] += 1
        return encode(FetchAnswer(found[1].salt, found[1].value))

    async def _fetch_loop(self) -> None:
        while True:
            if not self._wanted:
                self._wake.clear()
                await self._wake.wait()
            for collection, key in sorted(self._wanted):
                try:
                    await self._fetch(collection, key)
                except Exception:  # one entry's failure (a bad record, a store error) must not stop the loop
                    log.exception("fetching %s/%s failed", collection, key)
            if self._wanted:
                await asyncio.sleep(RETRY_S)

    async def _fetch(self, collection: str, key: str) -> None:
        entry = get_entry(self._host.chain.latest, collection, key)
        if entry is None or entry.purged or not self.holds_collection(collection):
            self._wanted.discard((collection, key))
            return
        held = self.store.get(collection, key)
        if held is not None and held.commitment == entry.commitment:
            self._wanted.discard((collection, key))
            return
        view = self._host.chain.latest
        members = get_collection(view, collection)
        assert members is not None  # noqa: S101 - an entry exists only in a collection
        request = bytes([FETCH]) + encode(FetchRequest(collection, key, entry.commitment))
        for peer in self._sources.candidates(view, members):
            raw = await self._sources.request(peer, request, FETCH_TIMEOUT_S)
            if not raw:
                continue
            try:
                answer = decode(FetchAnswer, raw)
            except CodecError:
                answer = None
            if answer is None or commitment(collection, key, answer.salt, answer.value) != entry.commitment:
                self.counters["bad_answers"] += 1
                log.warning("peer %s answered %s/%s with data that does not match its commitment", peer[:8],
                            collection, key)
                continue
            if get_entry(self._host.chain.latest, collection, key) != entry:
                return  # purged or replaced while we waited: the next round decides
            self.store.put(collection, key, SideEntry(entry.commitment, answer.salt, answer.value))
            self.counters["fetched"] += 1
            self._wanted.discard((collection, key))
            return
