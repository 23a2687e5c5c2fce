"""Anchoring on a 4-node devnet with a real Anvil, under faults (issues 6 and 12): an anchor stuck on fees
replaced with higher fees up to the cap, the anchoring validator killed mid-anchor and restarted (its anchor
is attested by the others), a stopped designated validator replaced by a backup, and asset and licence
proofs checked on the chain. One devnet for the module, as a user would run it
(`ledger devnet up --nodes 4 --ethereum anvil`: anchors every 10 blocks or 5 s, takeover after 5 s)."""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import signal
import time
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from eth_account import Account
from web3 import Web3
from web3.types import RPCEndpoint

from devnet import launcher
from devnet.ethereum import ANVIL
from devnet.processes import any_free_port, is_alive, start_node, stop_pid, wait_healthy
from devnet.record import load_devnet
from ledger.anchor import contract as ac
from ledger.anchor.ethclient import GWEI, Web3ChainClient
from ledger.anchor.outgoing import Outgoing
from ledger.client import LedgerClient, Signer
from ledger.crypto import SigningKey
from ledger.nft.assets import AssetMint
from ledger.nft.rights import LicenceGrant, compute_licence_id
from ledger.resolver.registry import IdRegister, PrefixCreate, ValueSpec
from tests.devnetutil import wait_until

pytestmark = pytest.mark.skipif(
    not os.access(ANVIL, os.X_OK), reason="Anvil binary absent: run `make install`"
)

PREFIX = "88.400"
SLACK_S = 15.0  # beyond the configured delays: the anchor transaction, its record, a busy 2-core machine


class Net:
    """The devnet, its Anvil, and the node processes a test killed, restarted or stopped."""

    def __init__(self, directory: Path, data: dict[str, Any]) -> None:
        self.dir = directory
        self.data = data
        self.nodes: list[dict[str, Any]] = data["nodes"]
        self.urls = [n["http"] for n in self.nodes]
        self.rpc = str(data["ethereum"]["rpc"])
        self.w3 = ac.connect(self.rpc)
        self.contract = ac.anchor_contract(self.w3, data["ethereum"]["anchor_contract"])
        self.extra_pids: list[int] = []
        self.stopped: set[int] = set()
        self.n_loaded = 0
        self._signer: Signer | None = None

    # --- the ledger ------------------------------------------------------------------------------

    def anchoring(self, i: int) -> dict[str, Any]:
        result: dict[str, Any] = httpx.get(f"{self.urls[i]}/v1/status", timeout=5).json()["anchoring"]
        return result

    def live(self) -> list[int]:
        return [i for i in range(len(self.nodes)) if i not in self.stopped]

    def signer(self) -> Signer:
        if self._signer is None:
            client = LedgerClient(self.urls[self.live()[0]])
            admin = Signer(SigningKey.load(self.data["keys"]["admin"]), client)
            org1 = SigningKey.load(self.data["keys"]["org1"])
            admin.send("prefix.create", PrefixCreate(PREFIX, org1.id))
            self._signer = Signer(org1, client)
        return self._signer

    def load(self, count: int, via: int = 0) -> int:
        """Register `count` identifiers, one block each (anchoring work); the height reached."""
        signer = self.signer()
        signer.client = LedgerClient(self.urls[via])
        result: dict[str, Any] = {}
        for _ in range(count):
            self.n_loaded += 1
            result = signer.send("id.register", IdRegister(f"{PREFIX}/w{self.n_loaded}", (ValueSpec(1, "URL", "u"),)))
        return int(result["height"])

    def recorded(self, i: int, height: int) -> dict[str, Any] | None:
        r = httpx.get(f"{self.urls[i]}/v1/anchors/{height}", timeout=5)
        return r.json() if r.status_code == 200 else None

    def block_hash(self, height: int) -> str:
        return str(httpx.get(f"{self.urls[self.live()[0]]}/v1/blocks/{height}", timeout=5).json()["hash"])

    # --- the chain -------------------------------------------------------------------------------

    def anchors(self) -> list[dict[str, Any]]:
        """Every Anchored event of the contract, oldest first."""
        return [
            {"height": int(e["args"]["height"]), "root": bytes(e["args"]["root"]).hex(),
             "tx_hash": "0x" + bytes(e["transactionHash"]).hex(), "eth_block": int(e["blockNumber"]),
             "submitter": str(e["args"]["submitter"])}
            for e in self.contract.events.Anchored.get_logs(from_block=0, to_block="latest")
        ]

    def effective_at_least(self, height: int) -> bool:
        """Every live node holds an effective anchor (f+1 attestations) at `height` or above."""
        return all(self.anchoring(i)["last_anchored_height"] >= height for i in self.live())

    def submitters(self) -> set[str]:
        settings = httpx.get(f"{self.urls[self.live()[0]]}/v1/anchors", timeout=5).json()["settings"]
        return {Web3.to_checksum_address(a) for a in settings["submitters"]}

    def automine(self, on: bool) -> None:
        self.w3.provider.make_request(RPCEndpoint("evm_setAutomine"), [on])

    def pending_anchors(self) -> list[tuple[str, str]]:
        """(sender, tx hash) of the anchor transactions waiting in Anvil's pool."""
        pool = self.w3.provider.make_request(RPCEndpoint("txpool_content"), [])["result"]["pending"]
        to = str(self.contract.address).lower()
        return [(Web3.to_checksum_address(sender), tx["hash"]) for sender, txs in pool.items()
                for tx in txs.values() if str(tx.get("to", "")).lower() == to]

    # --- processes -------------------------------------------------------------------------------

    def index_of_eth(self, address: str) -> int:
        return next(i for i in range(len(self.nodes)) if self.anchoring(i)["submitter"] == address.lower())

    def kill9(self, i: int) -> None:
        pid = self.nodes[i]["pid"]
        os.kill(pid, signal.SIGKILL)
        wait_until(lambda: not is_alive(pid), 10, f"node{i} to die")

    def restart(self, i: int) -> None:
        proc = start_node(self.nodes[i]["home"], self.dir / "logs")
        self.nodes[i]["pid"] = proc.pid
        self.extra_pids.append(proc.pid)
        wait_healthy(self.urls[i], proc, self.dir / "logs" / f"node{i}.log")

    def pause(self, i: int) -> None:
        os.kill(self.nodes[i]["pid"], signal.SIGSTOP)
        self.stopped.add(i)

    def resume(self, i: int) -> None:
        os.kill(self.nodes[i]["pid"], signal.SIGCONT)
        self.stopped.discard(i)

    def close(self) -> None:
        for i in list(self.stopped):
            with contextlib.suppress(ProcessLookupError):
                self.resume(i)
        for pid in self.extra_pids:
            stop_pid(pid)
        launcher.down(self.dir)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    directory = tmp_path_factory.mktemp("anchor-faults")
    try:
        net = Net(directory, launcher.up(directory, 4, base_port=any_free_port(), ethereum="anvil"))
    except BaseException:
        launcher.down(directory)
        raise
    try:
        yield net
    finally:
        net.close()
        assert not is_alive(load_devnet(directory)["ethereum"]["anvil_pid"])


def _assert_anchors_sound(net: Net) -> list[dict[str, Any]]:
    """No submitter anchored a height twice, each root is the ledger's block hash."""
    anchors = [a for a in net.anchors() if a["submitter"] in net.submitters()]
    slots = [(a["submitter"], a["height"]) for a in anchors]
    assert len(slots) == len(set(slots)), slots
    for a in anchors:
        assert a["root"] == net.block_hash(a["height"]), a
    return anchors


def _assert_anchoring_healthy(net: Net, height: int) -> None:
    for i in net.live():
        def caught_up(i: int = i) -> dict[str, Any] | None:
            s = net.anchoring(i)
            return s if s["last_anchored_height"] >= height else None

        s = wait_until(caught_up, 30, f"node{i} to report anchored height {height}")
        assert s["last_error"] is None and s["foreign_heights"] == [], (i, s)


# --------------------------------------------------------------------------------------------------


def test_an_anchor_stuck_on_fees_is_replaced_with_higher_fees_up_to_the_cap(net: Net) -> None:
    # A submitter of its own on the devnet's Anvil and contract (not a certified one: the devnet ignores it).
    deployer = ac.load_key_file(net.dir / "keys" / "anvil-dev.key")
    me = Account.create()
    ac.send_transaction(net.w3, deployer, {"to": me.address, "value": Web3.to_wei(1, "ether")})
    client = Web3ChainClient(net.rpc, str(net.contract.address), 31337, me, timeout=20)
    suggested = client.suggested_fees().max_fee
    cap_gwei = suggested * 1.3 / GWEI  # room for two replacements of +12.5% each, not three
    clock = [0.0]
    out = Outgoing(confirmations=1, fee_bump_after_s=10.0, max_fee_gwei=cap_gwei, clock=lambda: clock[0])
    root = b"\x01" * 32
    net.automine(False)
    try:
        sent = out.send(client, 7, root)
        assert sent is not None and out.follow(client, client.block_number()) == "pending"
        outcomes = []
        for _ in range(4):
            clock[0] += 11.0  # not mined after fee_bump_after_s: replaced, same nonce, higher fees
            outcomes.append(out.follow(client, client.block_number()))
        assert outcomes[:2] == ["bumped", "bumped"] and outcomes[2:] == ["capped", "capped"], outcomes
        assert out.current is not None and out.current.fees.max_fee <= cap_gwei * GWEI and len(out.current.hashes) == 3
        # Anvil's pool holds one transaction of ours: each replacement took the place of the one before.
        mine = [h for sender, h in net.pending_anchors() if sender == me.address]
        assert mine == ["0x" + out.current.hashes[-1].hex()], mine
    finally:
        net.automine(True)
    net.w3.provider.make_request(RPCEndpoint("evm_mine"), [])
    assert wait_until(lambda: out.follow(client, client.block_number()) == "confirmed", 10, "the anchor mined")
    # Mined once: one event from us, and the slot holds the root.
    ours = [a for a in net.anchors() if a["submitter"] == me.address]
    assert [(a["height"], a["root"]) for a in ours] == [(7, root.hex())]
    assert client.root_at(client.address, 7) == root
    assert (out.sent, out.bumps, out.resent) == (1, 2, 0)


def test_validator_killed_mid_anchor_sees_its_anchor_take_effect_after_restart(net: Net) -> None:
    net.automine(False)
    try:
        net.load(12)  # more than the interval's 10 blocks: an anchor is due
        sender, tx_hash = wait_until(lambda: net.pending_anchors(), 30, "an anchor transaction in Anvil's pool")[0]
        victim = net.index_of_eth(sender)
        net.kill9(victim)  # it sent the anchor and now waits for its receipt: it never records it
        net.restart(victim)
    finally:
        net.automine(True)

    # The anchor is mined after all; the validators read it on Ethereum and attest it, so its height is covered
    # by an effective anchor: its own, or a higher one that a backup sent while it waited (the highest wins).
    mined = wait_until(lambda: [a for a in net.anchors() if a["tx_hash"] == tx_hash], 30, "the pending anchor mined")[0]
    wait_until(lambda: net.effective_at_least(mined["height"]), 60, "the anchor effective on every node")
    record = net.recorded(victim, mined["height"])
    assert record is None or (record["submitter"], record["tx_hash"]) == (sender.lower(), tx_hash), record
    # The restarted victim sent no second anchor while its first one waited in the pool.
    assert [a["tx_hash"] for a in net.anchors() if a["submitter"] == sender and a["eth_block"] <= mined["eth_block"]
            ][-1] == tx_hash

    # Anchoring goes on above it, nothing double-anchored, no error left.
    top = net.load(12, via=victim)
    wait_until(lambda: net.effective_at_least(top), 60, "an anchor above the new work")
    anchors = _assert_anchors_sound(net)
    _assert_anchoring_healthy(net, anchors[-1]["height"])


def test_a_backup_takes_over_from_a_stopped_designated_validator(net: Net) -> None:
    status = net.anchoring(0)
    designated = next(i for i, n in enumerate(net.nodes) if n["id"] == status["designated"])
    stopped_eth = Web3.to_checksum_address(net.anchoring(designated)["submitter"])
    before = max((a["height"] for a in net.anchors()), default=0)
    n = len(net.nodes)
    # Due after interval_s at the latest; the r-th backup steps in r * grace_s after that.
    bound = status["interval_s"] + (n - 1) * status["grace_s"] + SLACK_S
    net.pause(designated)
    try:
        via = net.live()[0]
        top = net.load(12, via=via)
        started = time.monotonic()
        wait_until(lambda: net.effective_at_least(top), bound, f"a backup to anchor within {bound:.0f}s")
        took = time.monotonic() - started
    finally:
        net.resume(designated)
    print(f"\nbackup took over in {took:.1f}s (bound {bound:.0f}s)")
    new = [a for a in _assert_anchors_sound(net) if a["height"] > before]
    assert new and all(a["submitter"] != stopped_eth for a in new)
    # The stopped validator, continued, catches up and reports the backup's anchor without error.
    _assert_anchoring_healthy(net, new[-1]["height"])


def test_asset_and_licence_proofs_reach_the_chain(net: Net, tmp_path: Path,
                                                  capsys: pytest.CaptureFixture[str]) -> None:
    from ledger.cli import main as ledger_main

    url = net.urls[1]
    org1 = net.signer()
    org1.client = LedgerClient(url)
    org2 = SigningKey.load(net.data["keys"]["org2"])
    token = "DATA-ANCHORED-1"
    minted = org1.send("asset.mint", AssetMint(token, "data", "https://d.example/1", hashlib.sha256(b"m").digest(),
                                               "", ""))
    until = int((datetime.now(UTC) + timedelta(days=30)).timestamp() * 1000)
    granted = org1.send("licence.grant", LicenceGrant(token, "", org2.id, ("analytics",), 0, until, False, "", b""))
    licence_id = compute_licence_id(bytes.fromhex(granted["tx_id"]))
    net.load(12, via=1)  # work, so that an anchor lands above the grant
    wait_until(lambda: httpx.get(f"{url}/v1/anchors/latest", timeout=5).json().get("height", 0) > granted["height"],
               60, "a recorded anchor above the licence")

    def cli(*args: str) -> tuple[int, Any]:
        code = ledger_main(list(args))
        return code, json.loads(capsys.readouterr().out)

    def verify(doc: Any, *extra: str) -> tuple[int, Any]:
        f = tmp_path / "proof.json"
        f.write_text(json.dumps(doc))
        return cli("verify", str(f), "--genesis", net.data["genesis"], *extra)

    # `ledger asset show --proof` proves the token as of the latest anchor; `ledger verify --rpc` checks it.
    code, shown = cli("asset", "show", token, "--proof", "--node", url)
    assert code == 0 and shown["height"] == shown["proof"]["anchor"]["height"] > granted["height"]
    code, out = verify(shown, "--rpc", net.rpc)
    assert code == 0 and out["anchor"]["checked_on_chain"] is True and out["record"] == shown["asset"]

    # As of an older height, the proof reaches the anchor through the anchored header's history.
    code, older = cli("asset", "show", token, "--proof", "--height", str(minted["height"]), "--node", url)
    assert code == 0 and older["height"] == minted["height"] and older["proof"]["anchor"]["history_proof"]
    code, out = verify(older, "--rpc", net.rpc)
    assert code == 0 and out["anchor"]["checked_on_chain"] is True
    # A forged anchored header keeps the history root, so it links; but its hash is not the certified anchor's.
    forged = json.loads(json.dumps(older))
    forged["proof"]["anchor"]["header"]["timestamp"] += 1
    code, out = verify(forged)
    assert code == 1 and out["reason"] == "anchor_record"
    # An answer claiming another owner than the proof proves fails, offline already.
    tampered = json.loads(json.dumps(shown))
    tampered["owner"] = org2.id
    code, out = verify(tampered)
    assert code == 1 and out["reason"] == "answer_derived" and "owner" in out["message"]

    # A licence proof at the anchored height carries the anchor too.
    anchored = httpx.get(f"{url}/v1/anchors/latest", timeout=5).json()["height"]
    answer = httpx.get(f"{url}/v1/licences/{licence_id}",
                       params={"height": anchored, "proof": "true", "anchor": "true"}, timeout=5).json()
    # (at or above it: a newer anchor may take effect between the two requests, and the proof cites the latest)
    assert answer["proof"]["anchor"]["height"] >= anchored
    code, out = verify(answer, "--rpc", net.rpc)
    assert code == 0 and out["anchor"]["checked_on_chain"] is True and out["record"]["id"] == licence_id
