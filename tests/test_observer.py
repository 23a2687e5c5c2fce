"""The observer's follower without processes: the order it asks validators in, and the height a
forwarded write's answer says it committed at (read your writes)."""

from __future__ import annotations

import json
from pathlib import Path

from fastapi.testclient import TestClient

from ledger.api.server import create_app
from ledger.codec import decode, to_plain
from ledger.config import ObserverSettings
from ledger.net.sync import BlockBatch
from ledger.observer import Follower, committed_at
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.tx import make_tx, tx_to_plain
from tests.nodeutil import CHAIN_ID, make_home

URLS = ("http://a:1", "http://b:1", "http://c:1")


class NoNode:
    def committed_height(self) -> int:
        return 0

    async def catch_up_over(self, *args: object) -> None:
        raise AssertionError("not followed here")


def test_a_validator_that_served_a_bad_block_is_asked_last_until_it_serves_blocks_again() -> None:
    follower = Follower(NoNode(), ObserverSettings(validators=URLS))
    assert follower.order() == list(URLS)
    follower._on_invalid("http://a:1", 7, "bad signature")
    assert follower.order() == ["http://b:1", "http://c:1", "http://a:1"]
    assert follower.status()["validators"][0]["bad_blocks"] == 1
    assert follower.gauges()["bad_blocks"] == 1


def test_a_committed_answer_names_the_height_to_wait_for() -> None:
    single = {"tx_id": "ab", "accepted": True, "status": "committed", "height": 12, "index": 0, "ok": True}
    batch = {"accepted": 2, "rejected": 1, "results": [{**single, "height": 9}, single, {"accepted": False}]}
    assert committed_at(json.dumps(single).encode()) == 12
    assert committed_at(json.dumps(batch).encode()) == 12
    assert committed_at(json.dumps({"tx_id": "ab", "accepted": True, "status": "pending"}).encode()) is None
    assert committed_at(b"not json") is None
    assert committed_at(b"[1, 2]") is None


def test_sync_route_serves_certified_blocks_from_a_height_and_the_head(tmp_path: Path) -> None:
    home = make_home(tmp_path, prefixes=(("88.100.1", "org1"),))
    with TestClient(create_app(home.path)) as client:
        for nonce in range(3):
            tx = make_tx(home.org1, CHAIN_ID, nonce + 1, "id.register",
                         IdRegister(f"88.100.1/S-{nonce}", (ValueSpec(1, "URL", "https://twin.example/s"),)))
            assert client.post("/v1/tx", params={"wait": "true"}, content=json.dumps(tx_to_plain(tx)),
                               headers={"content-type": "application/json"}).status_code == 200
        head = client.get("/v1/status").json()["height"]
        r = client.get("/v1/sync/blocks", params={"from": 2, "max": 1})
        assert r.headers["content-type"] == "application/msgpack"
        batch = decode(BlockBatch, r.content)
        assert batch.head_height == head >= 3
        assert [b.block.header.height for b in batch.blocks] == [2]
        assert batch.blocks[0].certificate.height == 2
        assert client.get("/v1/blocks/2").json()["certificate"] == to_plain(batch.blocks[0].certificate)
        assert decode(BlockBatch, client.get("/v1/sync/blocks", params={"from": head + 1}).content).blocks == ()
        assert client.get("/v1/sync/blocks", params={"from": 1, "max": 65}).status_code == 400  # (malformed)
