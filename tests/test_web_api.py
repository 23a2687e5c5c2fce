"""The explorer's routes on a real in-process node: the pages and their files, the JSON routes behind them
(network, activity, block list and block at a time, licence tree, labels), QR codes of answer pages;
and the peer tracking and activity series that feed the network page, as units."""

from __future__ import annotations

import asyncio
import hashlib
import re
import time
import tomllib
from collections.abc import Iterator
from fnmatch import fnmatch
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import msgpack
import pytest
from fastapi.testclient import TestClient

from ledger.api.activity import ChainActivity
from ledger.api.routes import explorer
from ledger.api.routes.web import FILES
from ledger.api.server import create_app
from ledger.codec import encode, from_plain
from ledger.consensus.messages import Prepare, Vote, encode_envelope, sign_message
from ledger.crypto import SigningKey
from ledger.genesis import Genesis
from ledger.net.frames import TransportError
from ledger.net.peers import PeerTracker
from ledger.net.sync import BlockBatch
from ledger.nft.assets import AssetMint
from ledger.nft.rights import LicenceGrant, LicenceRevoke, compute_licence_id
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.tx import make_tx
from tests.nodeutil import CHAIN_ID, Home, make_home

ROOT = Path(__file__).resolve().parent.parent
STATIC = ROOT / "ledger" / "web" / "static"
DAY = 86_400_000


class Net:
    def __init__(self, client: TestClient, home: Home) -> None:
        self.client = client
        self.home = home

    def send(self, key: SigningKey, kind: str, payload: Any) -> dict[str, Any]:
        nonce = self.client.get(f"/v1/members/{key.id}").json()["nonce"] + 1
        raw = encode(make_tx(key, CHAIN_ID, nonce, kind, payload))
        r = self.client.post("/v1/tx?wait=true", content=msgpack.packb([raw], use_bin_type=True),
                             headers={"content-type": "application/msgpack"})
        result: dict[str, Any] = r.json()["results"][0]
        assert result.get("ok"), result
        return result

    def register(self, handle: str, key: SigningKey | None = None) -> dict[str, Any]:
        payload = IdRegister(handle, (ValueSpec(1, "URL", "https://t/x"),))
        return self.send(key or self.home.org1, "id.register", payload)


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    home = make_home(tmp_path_factory.mktemp("web"), prefixes=(
        ("88.100.1", "org1"), ("gs1:9506000", "org1"), ("gs1:95060001", "org2")))
    with TestClient(create_app(home.path)) as client:
        n = Net(client, home)
        for i in (1, 2, 3):
            n.register(f"88.100.1/EQ-{i}")
        n.register("/01/09506000134376/21/A", home.org2)  # under gs1:95060001, the longest prefix: org2's
        n.register("/01/09506000234564/21/B")  # under gs1:9506000
        yield n


# --- pages and files -------------------------------------------------------------------------------


def test_every_page_path_serves_the_shell_with_a_strict_policy(net: Net) -> None:
    shell = net.client.get("/")
    assert shell.status_code == 200 and shell.headers["content-type"].startswith("text/html")
    policy = shell.headers["content-security-policy"]
    assert "default-src 'none'" in policy and "connect-src 'self'" in policy and "script-src 'self'" in policy
    for path in ("/resolve/88.100.1/EQ-1", "/resolve/https:/id.example/01/09506000134376", "/token/T-1",
                 "/block/3", "/network", "/labels?prefix=88.100.1"):
        r = net.client.get(path)
        assert r.status_code == 200 and r.content == shell.content, path
    app_js = net.client.get("/web/app.js")
    assert app_js.headers["content-type"].startswith("text/javascript")
    again = net.client.get("/web/app.js", headers={"if-none-match": app_js.headers["etag"]})
    assert again.status_code == 304 and again.content == b""
    for bad in ("/web/nope.js", "/web/../__init__.py", "/web/"):
        assert net.client.get(bad).status_code == 404, bad


def test_the_pages_do_not_shadow_the_api(net: Net) -> None:
    assert net.client.get("/healthz").json()["ok"] is True
    assert "height" in net.client.get("/v1/status").json()
    assert net.client.get("/api/handles/88.100.1/EQ-1").json()["responseCode"] == 1
    assert net.client.get("/api/handles/88.100.1/NOPE").json()["responseCode"] == 100
    assert net.client.get("/01/09506000234564/21/B", follow_redirects=False).status_code == 307
    assert net.client.get("/metrics").headers["content-type"].startswith("text/plain")
    assert "swagger" in net.client.get("/docs").text.lower()
    assert net.client.get("/v1/nothing-here").headers["content-type"].startswith("application/json")


def test_every_file_the_pages_load_is_served_and_packaged() -> None:
    """Each file named by index.html or imported by a module exists among the served files, and the
    package-data globs in pyproject.toml cover every static file (so an installed node has them)."""
    wanted = set(re.findall(r'(?:src|href)="/web/([^"]+)"', (STATIC / "index.html").read_text()))
    for module in STATIC.rglob("*.js"):
        base = module.parent.relative_to(STATIC)
        for target in re.findall(r'from "(\.{1,2}/[^"]+)"', module.read_text()):
            wanted.add((base / target).as_posix().replace("pages/../", "").removeprefix("./"))
    assert wanted and wanted <= set(FILES), wanted - set(FILES)
    globs = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["setuptools"]["package-data"]["ledger.web"]
    for path in STATIC.rglob("*"):
        if path.is_file():
            rel = path.relative_to(STATIC.parent).as_posix()
            assert any(fnmatch(rel, g) and rel.count("/") == g.count("/") for g in globs), rel


# --- JSON routes -----------------------------------------------------------------------------------


def test_block_list_and_the_block_at_a_time(net: Net) -> None:
    head = net.client.get("/v1/status").json()["height"]
    page = net.client.get("/v1/blocks", params={"limit": 2}).json()
    assert [b["height"] for b in page["blocks"]] == [head, head - 1] and page["next_before"] == head - 2
    block = net.client.get(f"/v1/blocks/{head - 1}").json()
    assert page["blocks"][1]["hash"] == block["hash"] and page["blocks"][1]["tx_count"] == block["tx_count"]
    older = net.client.get("/v1/blocks", params={"before": 1, "limit": 5}).json()
    assert [b["height"] for b in older["blocks"]] == [1, 0] and older["next_before"] is None
    # until=T names the last block at or before T.
    t = block["header"]["timestamp"]
    at = net.client.get("/v1/blocks", params={"until": str(t), "limit": 1}).json()["blocks"][0]
    assert at["timestamp"] <= t and at["height"] >= head - 1
    if at["height"] < head:
        assert net.client.get(f"/v1/blocks/{at['height'] + 1}").json()["header"]["timestamp"] > t
    iso = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime(t / 1000 + 3600))
    assert net.client.get("/v1/blocks", params={"until": iso, "limit": 1}).json()["blocks"][0]["height"] == head
    genesis_time = net.client.get("/v1/blocks/0").json()["header"]["timestamp"]
    assert net.client.get("/v1/blocks", params={"until": str(genesis_time - 1)}).json()["blocks"] == []
    assert net.client.get("/v1/blocks", params={"until": "yesterday"}).status_code == 400
    assert net.client.get("/v1/blocks", params={"limit": 101}).status_code == 400


def test_licence_tree_with_revoked_and_expired_branches(net: Net) -> None:
    home = net.home
    digest = hashlib.sha256(b"meta").digest()
    net.send(home.org1, "asset.mint", AssetMint("TREE-1", "equipment", "https://m/1", digest, "", ""))
    now = int(time.time() * 1000)

    def grant(key: SigningKey, parent: str, holder: SigningKey, days: int) -> str:
        result = net.send(key, "licence.grant", LicenceGrant("TREE-1", parent, holder.id, ("maintenance",), 0,
                                                             now + days * DAY, True, "", b""))
        return compute_licence_id(bytes.fromhex(result["tx_id"]))

    root = grant(home.org1, "", home.org2, 365)
    revoked = grant(home.org2, root, home.admin, 100)
    short = grant(home.org2, root, home.admin, 30)
    net.send(home.org2, "licence.revoke", LicenceRevoke(revoked))

    def states(at: int | None = None) -> dict[str, str]:
        body = net.client.get("/v1/assets/TREE-1/licences", params={} if at is None else {"at": str(at)}).json()
        assert {lic["id"]: lic["parent"] for lic in body["licences"]} == {root: "", revoked: root, short: root}
        return {lic["id"]: lic["inactive_reason"] or "active" for lic in body["licences"]}

    assert states() == {root: "active", revoked: "revoked", short: "active"}
    assert states(now + 60 * DAY) == {root: "active", revoked: "revoked", short: "expired"}
    assert states(now + 400 * DAY) == {root: "expired", revoked: "revoked", short: "expired"}
    names = net.client.get("/v1/assets/TREE-1/licences").json()["licences"]
    assert {lic["holder_name"] for lic in names} == {"org2", "admin"}
    assert net.client.get("/v1/assets/NOPE/licences").status_code == 404


def test_labels_for_a_prefix_are_paged_and_name_the_holder(net: Net) -> None:
    first = net.client.get("/v1/labels", params={"prefix": "88.100.1", "limit": 2}).json()
    assert [lb["identifier"] for lb in first["labels"]] == ["88.100.1/EQ-1", "88.100.1/EQ-2"]
    assert first["next_after"] == "88.100.1/EQ-2"
    rest = net.client.get("/v1/labels", params={"prefix": "88.100.1", "after": first["next_after"]}).json()
    assert [lb["identifier"] for lb in rest["labels"]] == ["88.100.1/EQ-3"] and rest["next_after"] is None
    label = first["labels"][0]
    assert label["holder_name"] == "org1" and label["registered"] is True
    assert label["url"] == "http://testserver/resolve/88.100.1/EQ-1"
    # A GS1 company prefix lists the items it owns, not those of a longer registered prefix.
    gs1 = net.client.get("/v1/labels", params={"prefix": "gs1:9506000"}).json()["labels"]
    assert [lb["identifier"] for lb in gs1] == ["gs1/01/09506000234564/21/B"]
    longer = net.client.get("/v1/labels", params={"prefix": "gs1:95060001"}).json()["labels"]
    assert [(lb["identifier"], lb["holder_name"]) for lb in longer] == [("gs1/01/09506000134376/21/A", "org2")]
    assert net.client.get("/v1/labels", params={"prefix": "77.1"}).status_code == 404
    assert net.client.get("/v1/labels", params={"prefix": "not a prefix"}).status_code == 400
    assert net.client.get("/v1/labels").json()["labels"] == []  # nothing asked, nothing to print


def test_a_labels_page_examines_a_bounded_number_of_keys(net: Net, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(explorer, "MAX_SCAN", 1)
    # gs1:9506000's scan meets first the item a longer prefix owns: the page ends there, empty, saying
    # where to go on; the next page finds the prefix's own item.
    first = net.client.get("/v1/labels", params={"prefix": "gs1:9506000"}).json()
    assert first["labels"] == [] and first["next_after"] == "gs1/01/09506000134376/21/A"
    rest = net.client.get("/v1/labels", params={"prefix": "gs1:9506000", "after": first["next_after"]}).json()
    assert [lb["identifier"] for lb in rest["labels"]] == ["gs1/01/09506000234564/21/B"]


def test_labels_for_a_list_and_the_qr_code_of_the_answer_page(net: Net) -> None:
    given = ["88.100.1/EQ-2", "urn:epc:id:sgtin:9506000.023456.B", "88.100.1/NEW", "no slash"]
    labels = net.client.get("/v1/labels", params={"identifier": given}).json()["labels"]
    assert [lb.get("identifier") for lb in labels] == ["88.100.1/EQ-2", "gs1/01/09506000234564/21/B",
                                                       "88.100.1/NEW", None]
    assert [lb.get("registered") for lb in labels[:3]] == [True, True, False]
    assert labels[3]["error"] == "invalid_identifier"
    for label in labels[:2]:
        qr = net.client.get(f"/v1/qr/{label['identifier']}.svg", params={"page": "true"})
        assert qr.headers["x-resolution-url"] == label["url"]
        assert qr.text.startswith('<svg xmlns="http://www.w3.org/2000/svg"')  # displays as an <img>
    # Without page=true the QR code still encodes the standard resolution URL.
    plain = net.client.get("/v1/qr/88.100.1/EQ-2.svg").headers["x-resolution-url"]
    assert plain == "http://testserver/api/handles/88.100.1/EQ-2"
    assert net.client.get("/v1/labels", params={"identifier": ["x/y"] * 201}).status_code == 400


def test_network_and_activity_on_a_single_validator(net: Net) -> None:
    status = net.client.get("/v1/status").json()
    body = net.client.get("/v1/network").json()
    (me,) = body["validators"]
    assert me["self"] and me["primary"] and me["name"] == "node0" and me["lag"] == 0
    assert me["height"] == status["height"] == body["height"]
    before = net.client.get("/v1/activity", params={"window_s": 60, "bucket_s": 10}).json()
    assert len(before["buckets"]) == 6
    net.register("88.100.1/EQ-ACT")  # committed after the series started: seen by its commit listener
    after = net.client.get("/v1/activity", params={"window_s": 60, "bucket_s": 10}).json()
    assert sum(b["txs"] for b in after["buckets"]) == sum(b["txs"] for b in before["buckets"]) + 1
    assert net.client.get("/v1/activity", params={"window_s": 5}).status_code == 400


# --- units -----------------------------------------------------------------------------------------


def test_genesis_route_serves_the_trust_root_whose_hash_is_block_0s_prev_hash(net: Net) -> None:
    served = net.client.get("/v1/genesis").json()
    assert from_plain(Genesis, served) == net.home.genesis
    block0 = net.client.get("/v1/blocks/0").json()
    assert block0["header"]["prev_hash"] == net.home.genesis.hash().hex()


def test_activity_series_buckets_blocks_and_their_intervals() -> None:
    activity = ChainActivity()
    for height, timestamp, txs in ((1, 1000, 3), (2, 1500, 1), (3, 2500, 4)):
        header = SimpleNamespace(height=height, timestamp=timestamp)
        activity.on_commit(SimpleNamespace(block=SimpleNamespace(header=header, txs=(b"",) * txs)))  # type: ignore[arg-type]
    series = activity.series(now_ms=3000, window_ms=3000, bucket_ms=1000)
    assert [(b["t"], b["txs"], b["blocks"], b["block_time_ms"]) for b in series] == [
        (0, 0, 0, None), (1000, 4, 2, 500), (2000, 4, 1, 1000)]
    assert series[1]["tx_per_s"] == 4.0


class FakeTransport:
    def __init__(self, head: int | None) -> None:
        self.head = head
        self.requests = 0

    async def request(self, peer: str, payload: bytes, timeout: float) -> bytes:
        self.requests += 1
        if self.head is None:
            raise TransportError("link down")
        return encode(BlockBatch(self.head, ()))


def test_peer_tracker_reads_views_and_heights_and_probes_heads() -> None:
    clock = [100.0]
    tracker = PeerTracker(clock=lambda: clock[0], monotonic=lambda: clock[0])
    key = SigningKey.from_seed(b"peer")
    prepare = encode_envelope(sign_message(key, CHAIN_ID, Prepare(3, 10, b"\x01" * 32)))
    vote = encode_envelope(sign_message(key, CHAIN_ID, Vote(9, 2, b"\x02" * 32)))
    tracker.heard("p", prepare)
    assert (tracker.seen("p").view, tracker.seen("p").height) == (3, None)
    clock[0] += 0.05
    tracker.heard("p", vote)  # within the decode interval: counted as seen, not looked into
    assert tracker.seen("p").height is None and tracker.seen("p").last_seen == clock[0]
    clock[0] += 1
    tracker.heard("p", vote)
    assert (tracker.seen("p").view, tracker.seen("p").height) == (3, 9)  # a vote's view is its block's: ignored
    clock[0] += 1
    tracker.heard("p", b"\xffgarbage")
    tracker.heard("p", None)  # a non-consensus message
    assert tracker.seen("p").last_seen == clock[0] and tracker.seen("p").view == 3
    assert tracker.seen("nobody").to_json(clock[0])["last_seen_ago_ms"] is None

    up, down = FakeTransport(42), FakeTransport(None)
    asyncio.run(tracker.refresh(up, ["p"]))
    asyncio.run(tracker.refresh(up, ["p"]))  # within max_age: no second probe
    assert up.requests == 1 and tracker.seen("p").height == 42 and tracker.seen("p").rtt_ms is not None
    clock[0] += 2
    asyncio.run(tracker.refresh(down, ["p", "q"]))
    assert down.requests == 2 and tracker.seen("p").height == 42 and tracker.seen("q").last_seen is None
