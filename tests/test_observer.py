"""The observer's follower without processes: the order it asks validators in, and the height a
forwarded write's answer says it committed at (read your writes)."""

from __future__ import annotations

import json

from ledger.config import ObserverSettings
from ledger.observer import Follower, committed_at

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
