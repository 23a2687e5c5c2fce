"""The bulk import's streaming, batching, probing and retry logic, against an in-memory fake node.

The end-to-end behaviour on a real node is in tests/test_resolver_import.py.
"""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

import httpx
import msgpack
import pytest

from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.id_import import PROBE_LIMIT, Importer, ImportFileError, count_rows, import_file, read_rows
from ledger.progress import Progress
from ledger.tx import SignedTx, compute_tx_id, decode_payload, decode_tx, make_tx


class FakeResponse:
    def __init__(self, body: Any) -> None:
        self.body = body

    def raise_for_status(self) -> None:
        pass

    def json(self) -> Any:
        return self.body


class FakeNode:
    """Registers `id.register` payloads; `gap_once` lines are refused once with a nonce gap."""

    def __init__(self, registered: dict[str, str] | None = None, gap_once: set[str] | None = None) -> None:
        self.records = dict(registered or {})
        self.gap_once = set(gap_once or ())
        self.probe_sizes: list[int] = []
        self.submit_sizes: list[int] = []
        self.http = self

    def post(self, path: str, json: list[str], timeout: float) -> FakeResponse:
        assert path == "/v1/resolve"
        assert len(json) <= PROBE_LIMIT  # the node refuses larger batches
        self.probe_sizes.append(len(json))
        results = [{"record": {"values": [{"type": "URL", "value": self.records[i]}]}} if i in self.records
                   else {"record": None} for i in json]
        return FakeResponse({"results": results})

    def submit_raw(self, raws: list[bytes], wait: bool, timeout: float) -> list[dict[str, Any]]:
        self.submit_sizes.append(len(raws))
        out = []
        for raw in raws:
            payload = decode_payload(decode_tx(raw))
            identifier, url = payload.handle, payload.values[0].value
            if identifier in self.gap_once:
                self.gap_once.discard(identifier)
                out.append({"accepted": False, "reason": "nonce_gap", "message": "gap"})
            elif identifier in self.records:
                out.append({"accepted": True, "status": "committed", "ok": False, "reason": "already_exists",
                            "message": "exists", "tx_id": "00"})
            else:
                self.records[identifier] = url
                out.append({"accepted": True, "status": "committed", "ok": True, "tx_id": "00"})
        return out


class FakeSigner:
    """Signs real transactions (the importer encodes them to submit) with a throwaway key."""

    def __init__(self) -> None:
        self.resyncs = 0
        self.key = SigningKey.generate()
        self.nonce = 0

    def sign(self, kind: str, payload: Any) -> SignedTx:
        assert kind == "id.register"
        self.nonce += 1
        return make_tx(self.key, "test", self.nonce, kind, payload)

    def resync(self) -> None:
        self.resyncs += 1

    def learn(self, results: list[dict[str, Any]]) -> None:
        pass


def write_csv(path: Path, rows: list[tuple[str, str]]) -> Path:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["identifier", "url"])
        w.writerows(rows)
    return path


def rows(n: int, start: int = 0) -> list[tuple[str, str]]:
    return [(f"88.100.1/EQ-{i:06d}", f"https://twin.example/{i}") for i in range(start, start + n)]


def run(node: FakeNode, path: Path, batch: int) -> tuple[Any, list[list[str]]]:
    report = io.StringIO()
    importer = Importer(node, FakeSigner(), csv.writer(report),  # type: ignore[arg-type]
                        Progress(count_rows(path), stream=io.StringIO()))
    tally = importer.run(read_rows(path), batch)
    return tally, list(csv.reader(io.StringIO(report.getvalue())))


def test_batches_and_probes_stay_within_limits(tmp_path: Path) -> None:
    node = FakeNode()
    tally, report = run(node, write_csv(tmp_path / "a.csv", rows(2600)), batch=1200)
    assert (tally.imported, tally.skipped, tally.failed) == (2600, 0, 0)
    assert node.submit_sizes == [1200, 1200, 200]
    assert max(node.probe_sizes) <= PROBE_LIMIT and sum(node.probe_sizes) == 2600
    assert report == []


def test_rows_are_streamed_not_loaded(tmp_path: Path) -> None:
    path = write_csv(tmp_path / "a.csv", rows(50))
    it = read_rows(path)
    assert next(it) == (2, "88.100.1/EQ-000000", "https://twin.example/0")
    assert count_rows(path) == 50


def test_resume_skips_committed_rows_and_reports_conflicts(tmp_path: Path) -> None:
    done = dict(rows(30))
    done["88.100.1/EQ-000031"] = "https://elsewhere.example/31"
    node = FakeNode(registered=done)
    tally, report = run(node, write_csv(tmp_path / "a.csv", [*rows(40), ("bad", "https://x")]), batch=7)
    assert (tally.imported, tally.skipped, tally.failed) == (9, 30, 2)
    assert sorted(r[1] for r in report) == ["88.100.1/EQ-000031", "bad"]


def test_nonce_gap_rows_are_retried_once(tmp_path: Path) -> None:
    node = FakeNode(gap_once={"88.100.1/EQ-000003", "88.100.1/EQ-000004"})
    tally, _ = run(node, write_csv(tmp_path / "a.csv", rows(10)), batch=10)
    assert (tally.imported, tally.failed) == (10, 0)
    assert node.submit_sizes == [10, 2]


def test_unusable_files_fail_before_anything_is_sent(tmp_path: Path) -> None:
    header = tmp_path / "h.csv"
    header.write_text("id,link\n88.100.1/A,https://x\n")
    with pytest.raises(ImportFileError, match="header"):
        import_file(FakeNode(), FakeSigner(), header, 10, tmp_path / "r.csv")  # type: ignore[arg-type]
    latin = tmp_path / "l.csv"
    latin.write_bytes(b"identifier,url\n88.100.1/A,https://x\n88.100.1/\xe9,https://y\n")
    node = FakeNode()
    with pytest.raises(ImportFileError, match="UTF-8"):
        import_file(node, FakeSigner(), latin, 10, tmp_path / "r.csv")  # type: ignore[arg-type]
    assert node.submit_sizes == [] and node.probe_sizes == []


def test_progress_redraws_a_terminal_at_most_every_tenth_of_a_second() -> None:
    class Tty(io.StringIO):
        def isatty(self) -> bool:
            return True

    out = Tty()
    bar = Progress(1_000_000, "import", stream=out)
    for _ in range(100_000):
        bar.advance()
    bar.close()
    assert out.getvalue().count("\r") < 50  # not one redraw per row
    last = out.getvalue().rsplit("\r", 1)[1]  # close() always draws the final state
    assert last.startswith("import [") and "100000/1000000" in last and last.endswith("failed=0\n")


class Chain:
    """One member's nonce and the registrations, as the validators at the head hold them; each node
    (`LaggingNode`) answers over HTTP and may report the member's nonce from an older height."""

    def __init__(self) -> None:
        self.nonce = 0
        self.records: dict[str, str] = {}
        self.committed_ids: list[str] = []


class LaggingNode:
    """A node's HTTP answers: admission and commits as at the head, the member's nonce `lag` behind it."""

    def __init__(self, chain: Chain, member: str, lag: int = 0) -> None:
        self.chain, self.member, self.lag = chain, member, lag
        self.refused: list[str] = []

    def __call__(self, request: httpx.Request) -> httpx.Response:
        path = request.url.path
        if path == "/v1/status":
            return httpx.Response(200, json={"chain_id": "test"})
        if path.startswith("/v1/members/"):
            return httpx.Response(200, json={"id": self.member, "nonce": max(0, self.chain.nonce - self.lag)})
        if path == "/v1/resolve":
            results = [{"record": {"values": [{"type": "URL", "value": self.chain.records[i]}]}}
                       if i in self.chain.records else {"record": None} for i in json.loads(request.content)]
            return httpx.Response(200, json={"results": results})
        assert path == "/v1/tx"
        return httpx.Response(200, json={"results": [self._submit(raw) for raw in msgpack.unpackb(request.content)]})

    def _submit(self, raw: bytes) -> dict[str, Any]:
        tx, tx_id = decode_tx(raw), compute_tx_id(raw).hex()
        if tx.nonce <= self.chain.nonce:
            self.refused.append(tx_id)
            return {"tx_id": tx_id, "accepted": False, "reason": "replayed_nonce", "message": "used"}
        if tx.nonce > self.chain.nonce + 1:
            return {"tx_id": tx_id, "accepted": False, "reason": "nonce_gap", "message": "gap"}
        payload = decode_payload(tx)
        self.chain.nonce = tx.nonce
        self.chain.committed_ids.append(payload.handle)
        ok = payload.handle not in self.chain.records
        self.chain.records.setdefault(payload.handle, payload.values[0].value)
        return {"tx_id": tx_id, "accepted": True, "status": "committed", "height": tx.nonce, "index": 0, "ok": ok,
                **({} if ok else {"reason": "already_exists", "message": "exists"})}


def _http(node: LaggingNode) -> LedgerClient:
    client = LedgerClient("http://node.test")
    client.http = httpx.Client(base_url="http://node.test", transport=httpx.MockTransport(node))
    return client


def _import(client: LedgerClient, signer: Signer, path: Path) -> Any:
    signer.client = client
    signer.resync()
    progress = Progress(count_rows(path), stream=io.StringIO())
    return Importer(client, signer, csv.writer(io.StringIO()), progress).run(read_rows(path), 10)


def test_a_signer_never_resumes_below_the_nonces_it_saw_used_when_the_node_lags(tmp_path: Path) -> None:
    """A second import through a validator still catching up (it reports the nonce of 20 commits ago)
    signs after the nonces the first import used, not with them: nothing is refused."""
    key = SigningKey.generate()
    chain = Chain()
    head, lagging = LaggingNode(chain, key.id), LaggingNode(chain, key.id, lag=20)
    signer = Signer(key, _http(head))
    assert _import(_http(head), signer, write_csv(tmp_path / "a.csv", rows(30))).imported == 30
    tally = _import(_http(lagging), signer, write_csv(tmp_path / "b.csv", rows(30, start=30)))
    assert (tally.imported, tally.failed) == (30, 0)
    assert lagging.refused == []
    assert chain.committed_ids == [r[0] for r in rows(60)]


def test_rows_refused_as_replayed_are_signed_again_and_commit_once(tmp_path: Path) -> None:
    """A fresh signer whose only node lags signs with used nonces; the refused rows are signed again,
    with a nonce past those refused, and each row commits exactly once, counted as imported."""
    key = SigningKey.generate()
    chain = Chain()
    chain.nonce = 25  # committed earlier, by another run of this member
    lagging = LaggingNode(chain, key.id, lag=12)
    client = _http(lagging)
    tally = _import(client, Signer(key, client), write_csv(tmp_path / "a.csv", rows(30)))
    assert (tally.imported, tally.failed, tally.skipped) == (30, 0, 0)
    assert lagging.refused  # the stale nonces were refused, then signed again
    assert sorted(chain.committed_ids) == [r[0] for r in rows(30)]  # each once
