"""Registry state module through a real in-process node: GS1 ownership, prefix delegation and transfer,
value-level updates, complete history."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger.api.server import create_app
from ledger.crypto import SigningKey
from ledger.resolver.registry import (
    IdDelete,
    IdRegister,
    IdUpdate,
    IdValueRemove,
    IdValueSet,
    PrefixCreate,
    PrefixTransfer,
    ValueSpec,
)
from ledger.tx import make_tx, tx_to_plain
from tests.nodeutil import CHAIN_ID, Home, make_home

GTIN = "09506000134376"
KEY = f"gs1/01/{GTIN}/21/12345"


class Net:
    def __init__(self, client: TestClient, home: Home) -> None:
        self.client = client
        self.home = home
        self.nonces: dict[str, int] = {}

    def send(self, key: SigningKey, kind: str, payload: Any) -> dict[str, Any]:
        nonce = self.nonces.get(key.id, 0) + 1
        self.nonces[key.id] = nonce
        r = self.client.post("/v1/tx?wait=true", json=tx_to_plain(make_tx(key, CHAIN_ID, nonce, kind, payload)))
        body: dict[str, Any] = r.json()
        return body

    def record(self, identifier: str) -> Any:
        r = self.client.get(f"/v1/resolve/{identifier}")
        return r.json().get("record") if r.status_code == 200 else None


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    home = make_home(tmp_path_factory.mktemp("registry"), prefixes=(("88.100", "org1"), ("gs1:9506", "admin")))
    with TestClient(create_app(home.path)) as c:
        yield Net(c, home)


def url(u: str, index: int = 1) -> tuple[ValueSpec, ...]:
    return (ValueSpec(index, "URL", u),)


def test_gs1_items_belong_to_the_longest_registered_company_prefix(net: Net) -> None:
    h = net.home
    # org2 gets the longer company prefix gs1:9506000 (created by the admin: gs1 prefixes have no parent).
    assert net.send(h.admin, "prefix.create", PrefixCreate("gs1:9506000", h.org2.id))["ok"]
    # The admin owns gs1:9506 but not the longest candidate: refused.
    r = net.send(h.admin, "id.register", IdRegister(f"/01/{GTIN}/21/12345", url("https://a.example/x")))
    assert not r["ok"] and r["reason"] == "unauthorized"
    # org2 registers through the EPC URN form; it is stored under the canonical key.
    r = net.send(h.org2, "id.register", IdRegister("urn:epc:id:sgtin:9506000.013437.12345", url("https://b.example/x")))
    assert r["ok"], r
    for form in (KEY, f"/01/{GTIN}/21/12345", "urn:epc:id:sgtin:9506000.013437.12345",
                 f"https://id.example.com/01/{GTIN}/21/12345"):
        assert net.record(form)["handle"] == KEY
    # Another form of the same item is a duplicate.
    r = net.send(h.org2, "id.register", IdRegister(f"(01){GTIN}(21)12345", url("https://c.example/x")))
    assert r["reason"] == "already_exists"
    # A bad check digit is an invalid value.
    r = net.send(h.org2, "id.register", IdRegister("/01/09506000134377/21/1", url("https://c.example/x")))
    assert r["reason"] == "invalid_value"


def test_delegation_and_transfer(net: Net) -> None:
    h = net.home
    assert net.send(h.org1, "prefix.create", PrefixCreate("88.100.7", h.org2.id))["ok"]
    # Only the owner creates under its prefix.
    assert net.send(h.org1, "prefix.create", PrefixCreate("88.100.7.1", h.org1.id))["reason"] == "unauthorized"
    assert net.send(h.org2, "id.register", IdRegister("88.100.7/EQ-1", url("https://t.example/1")))["ok"]
    # The delegator (owner of 88.100) takes 88.100.7 back; a stranger cannot transfer it.
    assert net.send(h.admin, "prefix.transfer", PrefixTransfer("88.100.7", h.admin.id))["reason"] == "unauthorized"
    assert net.send(h.org1, "prefix.transfer", PrefixTransfer("88.100.7", h.org1.id))["ok"]
    # Now org2 no longer changes its identifiers, org1 does.
    assert net.send(h.org2, "id.delete", IdDelete("88.100.7/EQ-1"))["reason"] == "unauthorized"
    assert net.send(h.org1, "id.value_set", IdValueSet("88.100.7/EQ-1", ValueSpec(2, "TWIN", "https://tw/1")))["ok"]
    # Transfer to a non-member fails.
    assert net.send(h.org1, "prefix.transfer", PrefixTransfer("88.100.7", "nobody"))["reason"] == "not_found"


def test_value_level_updates_and_history(net: Net) -> None:
    h = net.home
    hd = "88.100/EQ-H"
    assert net.send(h.org1, "id.register", IdRegister(hd, url("https://v.example/1")))["ok"]
    assert net.send(h.org1, "id.value_set", IdValueSet(hd, ValueSpec(2, "EMAIL", "ops@example.com")))["ok"]
    assert net.send(h.org1, "id.value_set", IdValueSet(hd, ValueSpec(1, "URL", "https://v.example/2")))["ok"]
    values = {v["index"]: (v["type"], v["value"]) for v in net.record(hd)["values"]}
    assert values == {1: ("URL", "https://v.example/2"), 2: ("EMAIL", "ops@example.com")}
    assert net.send(h.org1, "id.value_remove", IdValueRemove(hd, 9))["reason"] == "not_found"
    assert net.send(h.org1, "id.value_remove", IdValueRemove(hd, 1))["ok"]
    # The last value goes only with the identifier.
    assert net.send(h.org1, "id.value_remove", IdValueRemove(hd, 2))["reason"] == "invalid_value"
    assert net.send(h.org1, "id.value_set", IdValueSet(hd, ValueSpec(3, "BOGUS", "x")))["reason"] == "invalid_value"
    assert net.send(h.org1, "id.update", IdUpdate(hd, url("https://v.example/3")))["ok"]
    assert net.send(h.org1, "id.delete", IdDelete(hd))["ok"]
    assert net.record(hd) is None
    hist = net.client.get(f"/v1/resolve/{hd}/history").json()
    changes = [e["change"] for e in hist["history"]]
    assert changes == ["id.register", "id.value_set", "id.value_set", "id.value_remove", "id.update", "id.delete"]
    assert hist["total"] == 6 and [e["seq"] for e in hist["history"]] == list(range(6))
    assert all(e["actor"] == h.org1.id and len(e["tx_id"]) == 64 for e in hist["history"])
    assert hist["history"][-1]["values"] == []
    heights = [e["height"] for e in hist["history"]]
    assert heights == sorted(heights)
    # History as of an earlier height stops there; paging works.
    early = net.client.get(f"/v1/resolve/{hd}/history", params={"height": heights[1]}).json()
    assert early["total"] == 2
    # Before any change the one entry is derived from the record; it equals the entry stored later.
    first = net.client.get(f"/v1/resolve/{hd}/history", params={"height": heights[0]}).json()
    assert first["total"] == 1 and first["history"] == hist["history"][:1]
    page = net.client.get(f"/v1/resolve/{hd}/history", params={"start": 4, "limit": 1}).json()
    assert [e["change"] for e in page["history"]] == ["id.update"]
    # Registered again after deletion: history goes on.
    assert net.send(h.org1, "id.register", IdRegister(hd, url("https://v.example/4")))["ok"]
    assert net.client.get(f"/v1/resolve/{hd}/history").json()["total"] == 7
    assert net.client.get("/v1/resolve/88.100/never/history").status_code == 404
