"""One misbehaving validator on a real 4-node devnet (real processes, sockets, TLS, LevelDB and Anvil).

The view-0 primary runs as `tests/misbehaving_node.py` with every attack on: it equivocates, proposes blocks
over the block budget and over the message limit, with time far ahead and time running backwards, and its
anchoring service records fake anchors. The three honest validators keep committing a client import on one
chain, the view moves past the misbehaving primary, its equivocation is recorded in the ledger (and checks
offline) and marked on the network page, and every proof from an honest node verifies with only the genesis
file and cites no fake anchor. One devnet for the module; the attack counts show each attack was made.
"""

from __future__ import annotations

import csv
import json
import subprocess
import sys
import time
from collections.abc import Iterator
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import httpx
import pytest

from devnet import launcher
from devnet.processes import any_free_port, stop_pid, wait_healthy
from ledger.client import LedgerClient, Signer, resolve_path
from ledger.consensus.evidence import check_equivocation
from ledger.consensus.messages import KIND_PREPREPARE
from ledger.crypto import SigningKey
from ledger.genesis import load_genesis
from ledger.resolver.registry import PrefixCreate
from ledger.verifier import verify_document
from tests.devnetutil import ledger, wait_until
from tests.lying_anchor_node import FAKE_TX
from tests.misbehaving_node import PROPOSAL_KINDS

pytestmark = pytest.mark.slow

ROWS = 150
PREFIX = "88.400"
REPO = Path(__file__).resolve().parent.parent
SKEW_MS = 30_000  # the block time bound a validator allows from its own clock (LedgerApp.max_clock_skew_ms)


def _get(url: str) -> Any:
    return httpx.get(url, timeout=10).json()


@dataclass
class Attacked:
    directory: Path
    data: dict[str, Any]
    bad: dict[str, Any]  # the misbehaving validator's devnet.json entry
    honest: list[str]  # the honest nodes' URLs
    counts_path: Path
    handles: list[str]
    import_output: str
    import_seconds: float
    imported_height: int  # the honest head once the import was acknowledged


@pytest.fixture(scope="module")
def attacked(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Attacked]:
    directory = tmp_path_factory.mktemp("misbehaving-devnet")
    proc: subprocess.Popen[bytes] | None = None
    try:
        began = time.monotonic()
        data = launcher.up(directory, 4, base_port=any_free_port(), ethereum="anvil")
        print(f"\ndevnet up (4 validators, Anvil): {time.monotonic() - began:.1f} s")
        nodes = data["nodes"]
        primary = _get(f"{nodes[0]['http']}/v1/status")
        assert primary["view"] == 0
        bad = next(n for n in nodes if n["id"] == primary["primary"])
        honest = [n["http"] for n in nodes if n is not bad]

        # The view-0 primary restarts as the misbehaving node, with every attack.
        stop_pid(int(bad["pid"]))
        counts_path = directory / "misbehaviour.json"
        log = directory / "logs" / "misbehaving.log"
        with open(log, "ab") as out:
            proc = subprocess.Popen(
                [sys.executable, "-m", "tests.misbehaving_node", "--home", bad["home"], "--counts", str(counts_path)],
                stdout=out, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True, cwd=REPO)
        wait_healthy(bad["http"], proc, log)

        # The admin's prefixes, each sent to the misbehaving primary and committed before the next: one slot
        # each, in which it proposes one bad kind (refused) before the honest block (committed). The last,
        # through an honest node, meets only bad blocks, so the others change views.
        org1 = SigningKey.load(data["keys"]["org1"])
        admin = Signer(SigningKey.load(data["keys"]["admin"]), LedgerClient(bad["http"]))
        for n in range(len(PROPOSAL_KINDS)):
            admin.send("prefix.create", PrefixCreate(f"{PREFIX}{n + 1}", org1.id), timeout=90)
        admin.client = LedgerClient(honest[1])
        admin.send("prefix.create", PrefixCreate(PREFIX, org1.id), timeout=90)
        print(f"misbehaving primary started and voted out: {time.monotonic() - began:.1f} s since devnet up began")

        # A client imports through an honest node.
        handles = [f"{PREFIX}/m{n}" for n in range(ROWS)]
        rows = directory / "import.csv"
        with open(rows, "w", newline="") as f:
            writer = csv.writer(f)
            writer.writerow(["identifier", "url"])
            writer.writerows([h, f"https://m.example/{h}"] for h in handles)
        started = time.monotonic()
        done = ledger("id", "import", str(rows), "--node", honest[0], "--dir", str(directory), "--key", "org1",
                      "--batch", "50")
        seconds = time.monotonic() - started
        yield Attacked(directory, data, bad, honest, counts_path, handles, done.stdout + done.stderr, seconds,
                       _get(f"{honest[0]}/v1/status")["height"])
    finally:
        if proc is not None:
            stop_pid(proc.pid)
        launcher.down(directory)


def _counts(a: Attacked) -> dict[str, int]:
    result: dict[str, int] = json.loads(a.counts_path.read_text())
    return result


def test_every_attack_was_made(attacked: Attacked) -> None:
    # It proposed each bad kind, then stalled its view, equivocated, and lied about anchors.
    wait_until(lambda: _counts(attacked).get("fake-anchors", 0) > 0, 60, "the misbehaving node's fake anchors")
    counts = _counts(attacked)
    print(f"attacks made: {counts}")
    for kind in PROPOSAL_KINDS:
        assert counts.get(f"proposed {kind}", 0) >= 1, (kind, counts)
    assert counts.get("stalled", 0) >= 1 and counts.get("sent equivocation", 0) >= 1, counts


def test_honest_nodes_commit_the_import_on_one_chain(attacked: Attacked) -> None:
    print(f"import of {ROWS} rows under attack: {attacked.import_seconds:.1f} s")
    heights = [_get(f"{u}/v1/status")["height"] for u in attacked.honest]
    common = min(heights)
    hashes = {_get(f"{u}/v1/blocks/{common}")["hash"] for u in attacked.honest}
    assert len(hashes) == 1, hashes
    with httpx.Client(timeout=10) as http:
        for u in attacked.honest:
            missing = [h for h in attacked.handles if http.get(f"{u}/v1/resolve/{h}").status_code != 200]
            assert not missing, (u, missing[:5], attacked.import_output[-2000:])
    # None of the blocks it forged was committed (its honest blocks were); every block's time is in order and
    # within the bound of the clocks, and every transaction in the chain decodes (no junk padding).
    forged = set(attacked.counts_path.with_suffix(".blocks").read_text().split())
    assert forged
    u = attacked.honest[0]
    previous = 0
    with httpx.Client(timeout=10) as http:
        for h in range(1, common + 1):
            block = http.get(f"{u}/v1/blocks/{h}", params={"full": "true"}).json()
            header = block["header"]
            assert block["hash"] not in forged, h
            assert previous <= header["timestamp"] <= time.time() * 1000 + SKEW_MS, h
            previous = header["timestamp"]
            assert all(isinstance(t.get("tx"), dict) for t in block["txs"]), h


def test_the_view_moves_past_the_misbehaving_primary(attacked: Attacked) -> None:
    for u in attacked.honest:
        status = _get(f"{u}/v1/status")
        assert status["view"] >= 1, status
    primaries = {_get(f"{u}/v1/status")["primary"] for u in attacked.honest}
    assert attacked.bad["id"] not in primaries


def test_equivocation_is_recorded_checks_offline_and_is_marked(attacked: Attacked) -> None:
    bad_id = attacked.bad["id"]
    genesis = load_genesis(attacked.data["genesis"])
    page = wait_until(lambda: (p := _get(f"{attacked.honest[2]}/v1/evidence/{bad_id}"))["count"] >= 1 and p,
                      60, "equivocation evidence in the ledger")
    record = page["records"][0]
    # Anyone holding the genesis file checks it offline: two pre-prepares of one slot, both signed by it.
    proven = check_equivocation(bytes.fromhex(record["first"]), bytes.fromhex(record["second"]),
                                genesis.chain_id, genesis.validator_keys())
    assert proven.validator == bad_id and proven.kind == KIND_PREPREPARE, proven
    # It is a transaction in a committed block, and every honest node's network page marks the validator.
    block = _get(f"{attacked.honest[0]}/v1/blocks/{record['recorded_height']}?full=true")
    kinds = [t["tx"]["kind"] for t in block["txs"] if isinstance(t.get("tx"), dict)]
    assert "evidence.equivocation" in kinds, kinds
    for u in attacked.honest:
        wait_until(partial(_marked, u, bad_id), 30, f"{u} marking the equivocator")
        marks = _marks(u)
        assert all(count == 0 for vid, count in marks.items() if vid != bad_id), marks


def _marked(url: str, validator: str) -> bool:
    return _marks(url)[validator] >= 1


def _marks(url: str) -> dict[str, int]:
    """The equivocations the network page of `url` marks, per validator."""
    return {v["id"]: v["equivocations"] for v in _get(f"{url}/v1/network")["validators"]}


def _anchoring_states(urls: list[str]) -> str:
    """Each node's height, view and anchoring status, for a failure message."""
    lines = []
    for u in urls:
        try:
            status = _get(f"{u}/v1/status")
        except httpx.HTTPError as exc:
            lines.append(f"{u}: {exc!r}")
            continue
        anchoring = {k: v for k, v in status["anchoring"].items() if k != "certified"}
        lines.append(f"{u}: height {status['height']} view {status['view']} anchoring {json.dumps(anchoring)}")
    return "\n".join(lines)


def test_proofs_from_honest_nodes_verify_and_cite_no_fake_anchor(attacked: Attacked, tmp_path: Path) -> None:
    urls = attacked.honest
    # Anchors cover work, not attestations: the import's last block is anchored once the interval passes.
    target = attacked.imported_height
    wait_until(lambda: all(_get(f"{u}/v1/status")["anchoring"]["last_anchored_height"] >= target for u in urls),
               90, f"honest anchors at the import's height {target} on every honest node",
               explain=partial(_anchoring_states, [*urls, attacked.bad["http"]]))
    fake = "0x" + FAKE_TX.hex()
    # The liar's fake votes reached the ledger, and no effective anchor is one of them.
    votes = [v for h in range(1, target + 1) for v in _get(f"{urls[0]}/v1/anchors/{h}/votes")["votes"]]
    assert any(v["tx_hash"] == fake and v["validator"] == attacked.bad["id"] for v in votes)
    for u in urls:
        for h in range(1, target + 1):
            r = httpx.get(f"{u}/v1/anchors/{h}", timeout=10)
            assert r.status_code == 404 or r.json()["tx_hash"] != fake, (u, h)
        latest = _get(f"{u}/v1/anchors/latest")
        assert latest["tx_hash"] != fake and latest["height"] < 2**63
    # Proofs of imported rows, and of one never registered, verify with only the genesis file (`ledger verify`
    # as a user runs it once; the same check in-process for the rest), each citing an honest anchor.
    genesis_path = attacked.data["genesis"]
    genesis = load_genesis(genesis_path)
    for i, u in enumerate(urls):
        for handle in (attacked.handles[i * 7], attacked.handles[-1 - i], f"{PREFIX}/never-registered"):
            answer = LedgerClient(u).proven(resolve_path(handle)).body
            verdict = verify_document(answer, genesis)
            assert verdict.present is ("never" not in handle), (u, handle)
            anchor = verdict.state.anchor
            assert anchor is not None and anchor.tx_hash.removeprefix("0x") != FAKE_TX.hex(), (u, handle, anchor)
            assert anchor.contract.lower() == latest["contract"].lower(), anchor
    f = tmp_path / "answer.json"
    f.write_text(json.dumps(answer))
    printed = json.loads(ledger("verify", str(f), "--genesis", genesis_path).stdout)
    assert printed["valid"] and printed["anchor"]["tx_hash"].removeprefix("0x") != FAKE_TX.hex(), printed
