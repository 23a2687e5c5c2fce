"""The nemesis's load and its watch: clients that write through random live validators and log what
was acknowledged, and pollers that note every validator's height and view as time passes.

Two kinds of client, each a member of its own with a prefix of its own (so their nonces never meet):
- `import`: `ledger id import`'s own importer (`ledger.id_import.Importer`, progress kept in memory),
  one CSV of `rows` identifiers per import, sent in batches of `batch`;
- `txs`: batches of `rows` signed `id.register` transactions through `ledger.client.deliver`, the
  delivery every write command uses.
A batch is *acknowledged without manual retry* when that one call returned with every row
committed. Otherwise the client retries by hand, as an operator would (the same signed bytes, or the
same CSV, through another live validator), and the batch is counted as needing it. Every signed
transaction's id is logged with its identifier, so the checks can find each in the chain.
"""

from __future__ import annotations

import contextlib
import csv
import io
import json
import random
import threading
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import httpx

from ledger.client import LedgerClient, LedgerError, Signer, deliver
from ledger.codec import encode
from ledger.crypto import SigningKey
from ledger.id_import import Importer, ImportFileError, ProbeError, read_rows
from ledger.progress import Progress
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.tx import SignedTx, compute_tx_id

MANUAL_RETRIES = 3  # by hand, through other live validators, before a batch is given up as failed
NONCE_REFUSALS = frozenset({"nonce_gap", "replayed_nonce"})  # rows a client signs again under a fresh nonce


class RecordingSigner(Signer):
    """A Signer that notes the id of every transaction it signs, by the identifier it registers."""

    def __init__(self, key: SigningKey, client: LedgerClient) -> None:
        super().__init__(key, client)
        self.signed: dict[str, list[str]] = {}

    def sign(self, kind: str, payload: Any) -> SignedTx:
        tx = super().sign(kind, payload)
        self.signed.setdefault(payload.handle, []).append(compute_tx_id(encode(tx)).hex())
        return tx


@dataclass
class Batch:
    """One batch as the client saw it (a line of the client's log)."""

    client: int
    kind: str
    node: int
    started: float
    rows: int
    ended: float = 0.0
    first_try_ok: bool = False  # acknowledged by the first call, without manual retry
    manual_retries: int = 0
    waits: int = 0  # what the delivery said it was waiting for (temporary failures it retried)
    acked: dict[str, list[str]] = field(default_factory=dict)  # identifier -> the tx ids signed for it
    errors: list[str] = field(default_factory=list)


class Client(threading.Thread):
    """Writes batches until told to stop; `log` holds every batch, also appended to `log_path`."""

    def __init__(self, index: int, kind: str, key: SigningKey, prefix: str, urls: list[str],
                 live: Callable[[], list[int]], rows: int, batch: int, give_up_s: float, seed: int,
                 log_path: Path) -> None:
        super().__init__(name=f"client{index}", daemon=True)
        self.index, self.kind, self.key, self.prefix = index, kind, key, prefix
        self.urls, self.live, self.rows, self.batch, self.give_up_s = urls, live, rows, batch, give_up_s
        self.rng = random.Random(seed)
        self.log_path = log_path
        self.log: list[Batch] = []
        self.stopping = threading.Event()
        self.signer: RecordingSigner | None = None
        self.serial = 0
        self._http: dict[int, LedgerClient] = {}

    def client(self, node: int) -> LedgerClient:
        """This client's connection to a node, kept for the run (the signer may hold it)."""
        if node not in self._http:
            self._http[node] = LedgerClient(self.urls[node], timeout=30)
        return self._http[node]

    def run(self) -> None:
        while not self.stopping.is_set():
            node = self.rng.choice(self.live() or list(range(len(self.urls))))
            batch = Batch(self.index, self.kind, node, time.time(), self.rows)
            try:
                if self.signer is None:
                    self.signer = RecordingSigner(self.key, self.client(node))
                handles = [f"{self.prefix}/N-{self.serial + i}" for i in range(self.rows)]
                self.serial += self.rows
                (self._import if self.kind == "import" else self._txs)(batch, handles)
            except Exception as exc:  # noqa: BLE001 - logged with the batch; the client goes on
                batch.errors.append(f"{type(exc).__name__}: {exc}")
                time.sleep(0.5)
            batch.ended = time.time()
            if batch.errors and self.signer is not None:
                with contextlib.suppress(Exception):
                    self.signer.resync()  # continue from the committed nonce, not past a lost batch
            self.log.append(batch)
            with self.log_path.open("a") as f:
                f.write(json.dumps(asdict(batch)) + "\n")

    def _counted(self, batch: Batch) -> Callable[[str], None]:
        def note(_text: str) -> None:
            batch.waits += 1
        return note

    def _txs(self, batch: Batch, handles: list[str]) -> None:
        assert self.signer is not None
        todo = {h: self._signed_row(h) for h in handles}
        node = batch.node
        for attempt in range(MANUAL_RETRIES + 1):
            try:
                results = deliver(self.client(node), list(todo.values()), wait_s=30,
                                  give_up_after_s=self.give_up_s, on_wait=self._counted(batch))
                self.signer.learn(results)
            except LedgerError as exc:
                batch.errors.append(f"node{node}: {exc.reason}: {exc.message}")
            else:
                resign: list[str] = []
                for h, r in zip(list(todo), results, strict=True):
                    if r.get("status") == "committed" and r.get("ok"):
                        batch.acked[h] = self.signer.signed[h]
                        del todo[h]
                    else:
                        batch.errors.append(f"node{node}: {h}: {r.get('reason')}: {r.get('message')}")
                        if r.get("reason") in NONCE_REFUSALS:
                            resign.append(h)
                if not todo:
                    batch.first_try_ok = attempt == 0
                    return
                if len(resign) < len(todo):
                    return  # refused for good, and not for its nonce: signing again would not help
                # An operator signs such rows again under fresh nonces (their ids are used up) and sends them.
                self.signer.resync()
                todo = {h: self._signed_row(h) for h in resign}
            batch.manual_retries += 1
            node = self._another(node)

    def _signed_row(self, handle: str) -> SignedTx:
        assert self.signer is not None
        return self.signer.sign("id.register", IdRegister(handle, (ValueSpec(1, "URL", f"https://n.example/{handle}"),)))

    def _import(self, batch: Batch, handles: list[str]) -> None:
        assert self.signer is not None
        text = io.StringIO()
        writer = csv.writer(text)
        writer.writerow(["identifier", "url"])
        writer.writerows([h, f"https://n.example/{h}"] for h in handles)
        path = self.log_path.with_name(f"client{self.index}-import.csv")
        path.write_text(text.getvalue())
        node = batch.node
        for attempt in range(MANUAL_RETRIES + 1):
            progress = Progress(len(handles), "import", stream=_Notes(self._counted(batch)))
            report = _Report(batch.errors)
            try:
                self.signer.client = client = self.client(node)
                self.signer.resync()
                tally = Importer(client, self.signer, report, progress).run(read_rows(path), self.batch)
            except (LedgerError, ProbeError, ImportFileError, httpx.HTTPError) as exc:
                batch.errors.append(f"node{node}: {type(exc).__name__}: {exc}")
            else:
                if tally.failed:  # an operator runs the import again: it skips the rows registered
                    batch.errors.append(f"node{node}: {tally.failed} row(s) failed")
                    batch.manual_retries += 1
                    node = self._another(node)
                    continue
                # imported now, or skipped as registered already (by an earlier attempt of this batch)
                batch.acked = {h: self.signer.signed.get(h, []) for h in handles}
                batch.first_try_ok = attempt == 0 and tally.skipped == 0
                return
            batch.manual_retries += 1
            node = self._another(node)

    def _another(self, node: int) -> int:
        others = [i for i in self.live() if i != node]
        return self.rng.choice(others) if others else node


class _Report:
    """The importer's per-row error report, kept as the batch's errors (the first few rows)."""

    def __init__(self, errors: list[str]) -> None:
        self.errors = errors

    def writerow(self, row: list[Any]) -> None:
        if len(self.errors) < 5:
            self.errors.append(" ".join(str(x) for x in row))


class _Notes(io.StringIO):
    """A progress stream that counts the importer's `waiting:` notes and keeps nothing else."""

    def __init__(self, on_wait: Callable[[str], None]) -> None:
        super().__init__()
        self.on_wait = on_wait

    def write(self, text: str) -> int:
        if "waiting:" in text:
            self.on_wait(text)
        return len(text)

    def isatty(self) -> bool:
        return False


class Poller(threading.Thread):
    """Polls one node's /v1/status every `interval` s: (time, height, view) while it answers."""

    def __init__(self, index: int, url: str, interval: float = 0.1) -> None:
        super().__init__(name=f"poll{index}", daemon=True)
        self.url, self.interval = url, interval
        self.samples: list[tuple[float, int, int]] = []
        self.stopping = threading.Event()

    def run(self) -> None:
        with httpx.Client(base_url=self.url, timeout=0.5) as http:
            while not self.stopping.wait(self.interval):
                with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                    s = http.get("/v1/status").json()
                    self.samples.append((time.time(), int(s["height"]), int(s["view"])))


def commit_times(pollers: list[Poller]) -> list[float]:
    """When the highest height any validator reported went up (to within a poll interval)."""
    events = sorted((t, h) for p in pollers for t, h, _ in p.samples)
    top, times = -1, []
    for t, h in events:
        if h > top:
            if top >= 0:
                times.append(t)
            top = h
    return times
