"""`ledger id import FILE.csv`: bulk registration of identifiers from a CSV with the header `identifier,url`.

The file is streamed: rows are read, checked, signed and submitted one batch at a time, so a file of
a million rows costs the client a batch's memory, not the file's (a first pass only counts rows for
the progress bar). Per-row errors go to the report CSV (line,identifier,error) and do not stop the
import. Before a batch is signed its identifiers are looked up on the node: rows already registered
with the row's URL count as done (`skipped`), so re-running after an interruption resumes where the
committed rows end. A row refused for its nonce alone (`nonce_gap`, or `replayed_nonce` when the node
read for the nonce was still catching up) is signed again with the signer's better nonce and sent
again, a few times at most, after the same look-up: it commits once, and counts as imported.
"""

from __future__ import annotations

import csv
import sys
import time
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TextIO

import httpx

from ledger.client import (
    FIRST_BACKOFF_S,
    GIVE_UP_AFTER_S,
    MAX_BACKOFF_S,
    LedgerClient,
    LedgerError,
    Signer,
    check_result,
    deliver,
)
from ledger.progress import Progress
from ledger.resolver.identifiers import InvalidIdentifier
from ledger.resolver.registry import IdRegister, ValueSpec, storage_key

MAX_ERRORS_SHOWN = 20  # on stderr; all of them go to the report file
PROBE_LIMIT = 1000  # identifiers per `POST /v1/resolve` (the node's batch limit)
NONCE_REFUSALS = frozenset({"nonce_gap", "replayed_nonce"})  # a row refused for these is signed again
MAX_RESIGNS = 3  # per row: a node that keeps refusing it has another problem, reported in the file

Row = tuple[int, str, str]  # (line in the file, identifier, url)


class ImportFileError(Exception):
    """The file cannot be imported at all (unreadable, not UTF-8, wrong header)."""


class ProbeError(Exception):
    """The node did not answer the lookup of already registered identifiers."""


def _open_reader(path: Path) -> tuple[TextIO, csv.DictReader[str]]:
    try:
        f = path.open(newline="", encoding="utf-8")
    except OSError as exc:
        raise ImportFileError(f"cannot read {path}: {exc.strerror}") from exc
    reader = csv.DictReader(f)
    try:
        fields = reader.fieldnames
    except UnicodeDecodeError as exc:
        f.close()
        raise ImportFileError(f"{path} is not UTF-8 text") from exc
    if fields is None or not {"identifier", "url"} <= set(fields):
        f.close()
        raise ImportFileError(f"{path}: the header must be `identifier,url`")
    return f, reader


def count_rows(path: Path) -> int:
    """Data rows in the file (checks the header and the encoding before anything is submitted)."""
    f, reader = _open_reader(path)
    with f:
        try:
            return sum(1 for _ in reader)
        except UnicodeDecodeError as exc:
            raise ImportFileError(f"{path} is not UTF-8 text") from exc


def read_rows(path: Path) -> Iterator[Row]:
    f, reader = _open_reader(path)
    with f:
        for row in reader:
            yield reader.line_num, (row.get("identifier") or "").strip(), (row.get("url") or "").strip()


def registered_urls(client: LedgerClient, identifiers: Sequence[str]) -> dict[str, set[str] | None]:
    """For each identifier: the URL values of its committed record, or None when not registered."""
    out: dict[str, set[str] | None] = {}
    for start in range(0, len(identifiers), PROBE_LIMIT):
        part = list(identifiers[start:start + PROBE_LIMIT])
        try:
            r = client.http.post("/v1/resolve", json=part, timeout=120)
            r.raise_for_status()
            results = r.json()["results"]
        except (httpx.HTTPError, KeyError, ValueError) as exc:
            raise ProbeError(f"batch resolve failed: {exc}") from exc
        for text, res in zip(part, results, strict=True):
            record = res.get("record")
            out[text] = None if record is None else {v["value"] for v in record["values"] if v["type"] == "URL"}
    return out


@dataclass
class Tally:
    imported: int = 0
    skipped: int = 0
    failed: int = 0


class Importer:
    def __init__(self, client: LedgerClient, signer: Signer, report: Any, progress: Progress) -> None:
        self.client = client
        self.signer = signer
        self.report = report  # a csv.writer
        self.progress = progress
        self.tally = Tally()
        self._resigned: dict[int, int] = {}  # line -> times its row was signed again

    def run(self, rows: Iterator[Row], batch: int) -> Tally:
        chunk: list[Row] = []
        for line, identifier, url in rows:
            try:
                storage_key(identifier)
                if not url:
                    raise InvalidIdentifier("empty url")
            except InvalidIdentifier as exc:
                self._fail(line, identifier, f"invalid: {exc}")
                continue
            chunk.append((line, identifier, url))
            if len(chunk) >= batch:
                self._commit(chunk)
                chunk = []
        if chunk:
            self._commit(chunk)
        return self.tally

    def _fail(self, line: int, identifier: str, message: str) -> None:
        self.tally.failed += 1
        self.report.writerow([line, identifier, message])
        if self.tally.failed <= MAX_ERRORS_SHOWN:
            print(f"line {line}: {identifier}: {message}", file=sys.stderr)
        self.progress.advance(failed=1)

    def _skip(self) -> None:
        self.tally.skipped += 1
        self.progress.advance()

    def _commit(self, chunk: list[Row]) -> None:
        """Register a batch; rows refused only for their nonce are signed again and resubmitted."""
        while chunk:
            chunk = self._submit(chunk)

    def _probe(self, identifiers: Sequence[str]) -> dict[str, set[str] | None]:
        """`registered_urls`, retried with back-off while the node cannot answer (restarting, busy)."""
        backoff, started = FIRST_BACKOFF_S, time.monotonic()
        while True:
            try:
                return registered_urls(self.client, identifiers)
            except ProbeError as exc:
                if time.monotonic() - started > GIVE_UP_AFTER_S:
                    raise
                self.progress.note(f"waiting: looking up registered rows failed ({exc}); retrying in {backoff:.1f} s")
                time.sleep(backoff)
                backoff = min(2 * backoff, MAX_BACKOFF_S)

    def _submit(self, chunk: list[Row]) -> list[Row]:
        # Skip rows already committed (an earlier, interrupted run): checked before signing.
        known = self._probe([i for _, i, _ in chunk])
        fresh = []
        for line, identifier, url in chunk:
            urls = known.get(identifier)
            if urls is None:
                fresh.append((line, identifier, url))
            elif url in urls:
                self._skip()
            else:
                self._fail(line, identifier, "already_exists: registered with another URL")
        if not fresh:
            return []
        sign = self.signer.sign
        txs = [sign("id.register", IdRegister(i, (ValueSpec(1, "URL", u),))) for _, i, u in fresh]
        results = deliver(self.client, txs, wait_s=120, on_wait=lambda text: self.progress.note(f"waiting: {text}"))
        self.signer.learn(results)
        again: list[Row] = []
        for (line, identifier, url), result in zip(fresh, results, strict=True):
            try:
                check_result(result)
                self.tally.imported += 1
                self.progress.advance()
            except LedgerError as exc:
                # Refused for its nonce alone: a row refused before ordering left a gap that fails later
                # rows (`nonce_gap`), or the node read for the nonce was behind the chain
                # (`replayed_nonce`). Signed again (the signer now knows better), after the look-up
                # above shows it is still not registered: it never commits twice.
                if exc.reason in NONCE_REFUSALS and self._resigned.get(line, 0) < MAX_RESIGNS:
                    self._resigned[line] = self._resigned.get(line, 0) + 1
                    self.progress.note(f"waiting: line {line} refused ({exc.reason}); signing it again")
                    again.append((line, identifier, url))
                elif exc.reason == "already_exists" and url in (self._probe([identifier])[identifier] or set()):
                    self._skip()  # a duplicate row of this file, or committed by a concurrent run
                else:
                    self._fail(line, identifier, f"{exc.reason}: {exc.message}")
        if again or any(not r.get("accepted") for r in results):
            self.signer.resync()
        return again


def import_file(client: LedgerClient, signer: Signer, path: Path, batch: int, report_path: Path) -> Tally:
    """Import `path`; raises ImportFileError before submitting anything if the file is unusable."""
    total = count_rows(path)
    progress = Progress(total, "import")
    with report_path.open("w", newline="", encoding="utf-8") as report_file:
        report = csv.writer(report_file)
        report.writerow(["line", "identifier", "error"])
        try:
            return Importer(client, signer, report, progress).run(read_rows(path), max(1, batch))
        finally:
            progress.close()
