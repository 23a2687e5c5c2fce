"""Resolution APIs on a real in-process node: GS1 Digital Link resolver, native and batch resolve, QR codes,
the cached Handle route's freshness."""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger.api.server import create_app
from ledger.crypto import SigningKey
from ledger.resolver.registry import IdRegister, IdUpdate, IdValueSet, ValueSpec
from ledger.tx import make_tx, tx_to_plain
from ledger.verifier import verify_document
from tests.nodeutil import CHAIN_ID, Home, make_home

GTIN = "09506000134376"
ITEM = f"/01/{GTIN}/21/12345"


class Net:
    def __init__(self, client: TestClient, home: Home) -> None:
        self.client = client
        self.home = home
        self.nonce = 0

    def send(self, kind: str, payload: Any, key: SigningKey | None = None) -> dict[str, Any]:
        self.nonce += 1
        tx = make_tx(key or self.home.org1, CHAIN_ID, self.nonce, kind, payload)
        body: dict[str, Any] = self.client.post("/v1/tx?wait=true", json=tx_to_plain(tx)).json()
        assert body["ok"], body
        return body


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Net]:
    home = make_home(tmp_path_factory.mktemp("resolver"), prefixes=(("88.100.1", "org1"), ("gs1:9506000", "org1")))
    with TestClient(create_app(home.path), follow_redirects=False) as c:
        n = Net(c, home)
        n.send("id.register", IdRegister(ITEM, (
            ValueSpec(1, "URL", "https://shop.example/p/134376"),
            ValueSpec(2, "TWIN", "https://twin.example/items/12345"),
            ValueSpec(3, "DESC", "Pump P-100"),
        )))
        # A product-level record with two pip links.
        n.send("id.register", IdRegister(f"/01/{GTIN}", (
            ValueSpec(1, "URL", "https://shop.example/p/134376?lang=en"),
            ValueSpec(2, "URL", "https://shop.example/p/134376?lang=de"),
        )))
        n.send("id.register", IdRegister("88.100.1/EQ-1", (ValueSpec(1, "URL", "https://twin.example/EQ-1"),)))
        yield n


def test_gs1_redirects_to_the_default_link_keeping_the_query(net: Net) -> None:
    r = net.client.get(ITEM)
    assert r.status_code == 307
    assert r.headers["location"] == "https://twin.example/items/12345"  # TWIN is the default link
    assert r.headers["link"].startswith(f'<http://testserver{ITEM}?linkType=linkset>; rel="application/linkset"')
    r = net.client.get(ITEM + "?17=261231&foo=bar")
    assert r.status_code == 307 and r.headers["location"] == "https://twin.example/items/12345?17=261231&foo=bar"
    # The same item by its element-string form in the path (/10 lot kept as a qualifier).
    assert net.client.get(f"/01/{GTIN}/10/LOT1/21/12345").status_code == 307


@pytest.mark.parametrize("link_type", ["gs1:pip", "https://gs1.org/voc/pip", "PIP", "https://GS1.org/voc/Pip"])
def test_link_type_selection_is_case_insensitive(net: Net, link_type: str) -> None:
    r = net.client.get(ITEM, params={"linkType": link_type})
    assert r.status_code == 307
    assert r.headers["location"].startswith("https://shop.example/p/134376?linkType=")


def test_linkset_on_request(net: Net) -> None:
    for r in (net.client.get(ITEM, params={"linkType": "all"}),
              net.client.get(ITEM, headers={"Accept": "application/linkset+json"})):
        assert r.status_code == 200
        assert r.headers["content-type"].startswith("application/linkset+json")
        (ctx,) = r.json()["linkset"]
        assert ctx["anchor"] == f"http://testserver{ITEM}"
        assert ctx["https://gs1.org/voc/defaultLink"][0]["href"] == "https://twin.example/items/12345"
        assert ctx["https://gs1.org/voc/pip"] == [{"href": "https://shop.example/p/134376", "title": "Pump P-100"}]
        assert ctx["https://gs1.org/voc/serviceInfo"][0]["href"] == "https://twin.example/items/12345"


def test_several_matches_300_none_404(net: Net) -> None:
    r = net.client.get(f"/01/{GTIN}", params={"linkType": "pip"})
    assert r.status_code == 300
    assert len(r.json()["linkset"][0]["https://gs1.org/voc/pip"]) == 2
    assert "link" in r.headers
    r = net.client.get(ITEM, params={"linkType": "gs1:recipeInfo"})
    assert r.status_code == 404 and r.json()["error"] == "not_found"
    r = net.client.get("/01/80614141123458/21/1")
    assert r.status_code == 404 and r.json()["error"] == "not_found" and "link" in r.headers
    # An unregistered serial of a registered product falls back to the product (two URLs, no TWIN -> URL 1).
    r = net.client.get(f"/01/{GTIN}/21/999")
    assert r.status_code == 307 and r.headers["location"] == "https://shop.example/p/134376?lang=en"
    r = net.client.get("/01/09506000134377")
    assert r.status_code == 400 and "check digit" in r.json()["message"]


@pytest.mark.parametrize("form", [ITEM, f"https://id.gs1.org{ITEM}", "urn:epc:id:sgtin:9506000.013437.12345",
                                  f"gs1{ITEM}", f"gs1:9506000{ITEM}"])
def test_native_resolve_accepts_every_form(net: Net, form: str) -> None:
    r = net.client.get(f"/v1/resolve/{form}", params={"proof": "true"})
    assert r.status_code == 200, r.text
    body = r.json()
    assert body["identifier"] == f"gs1{ITEM}"
    verified = verify_document(body, net.home.genesis)  # the whole answer, the form asked in `unproven`
    assert verified.state.keys[0] == f"id/gs1{ITEM}".encode() and verified.present
    assert verified.unproven == (None if form == f"gs1{ITEM}" else {"input": form})


def test_native_resolve_errors(net: Net) -> None:
    assert net.client.get("/v1/resolve/88.100.1/none").status_code == 404
    assert net.client.get("/v1/resolve/urn:epc:id:sgtin:bad").json()["error"] == "invalid_identifier"


def test_batch_resolve(net: Net) -> None:
    items = ["88.100.1/EQ-1", "88.100.1/none", ITEM, "bad id"]
    r = net.client.post("/v1/resolve", params={"proof": "true"}, json=items)
    assert r.status_code == 200
    body = r.json()
    res = body["results"]
    assert [x.get("record") is not None for x in res[:3]] == [True, False, True]
    assert res[3]["error"] == "invalid_identifier" and res[3]["input"] == "bad id"
    absent = verify_document(res[1], net.home.genesis)
    assert not absent.present and absent.state.height == body["height"]
    assert net.client.post("/v1/resolve", json=["x/y"] * 1001).status_code == 400
    # Proofs are built at most 100 per request: a longer batch is answered a page at a time.
    many = [f"88.100.1/P-{n}" for n in range(150)]
    page = net.client.post("/v1/resolve", params={"proof": "true"}, json=many).json()
    assert len(page["results"]) == 100 and page["next_start"] == 100 and "proof" in page["results"][99]
    last = net.client.post("/v1/resolve", params={"proof": "true", "start": 100, "height": page["height"]},
                           json=many).json()
    assert [r["identifier"] for r in last["results"]] == many[100:] and last["next_start"] is None
    assert len(net.client.post("/v1/resolve", json=many).json()["results"]) == 150  # without proofs: all
    assert net.client.post("/v1/resolve", json={"no": 1}).status_code == 400


def test_qr_code_is_svg_of_the_resolution_url(net: Net) -> None:
    r = net.client.get("/v1/qr/urn:epc:id:sgtin:9506000.013437.12345.svg")
    assert r.status_code == 200 and r.headers["content-type"].startswith("image/svg+xml")
    assert r.text.startswith("<svg") and r.headers["x-resolution-url"] == f"http://testserver{ITEM}"
    r = net.client.get("/v1/qr/88.100.1/EQ-1.svg", params={"base": "https://id.example.com"})
    assert r.headers["x-resolution-url"] == "https://id.example.com/api/handles/88.100.1/EQ-1"
    assert net.client.get("/v1/qr/88.100.1/EQ-1.png").status_code == 404
    assert net.client.get("/v1/qr/urn:epc:x.svg").status_code == 400


def test_handle_route_serves_gs1_keys(net: Net) -> None:
    body = net.client.get(f"/api/handles/gs1{ITEM}").json()
    assert body["responseCode"] == 1 and body["handle"] == f"gs1{ITEM}"
    admin = next(v for v in body["values"] if v["type"] == "HS_ADMIN")
    assert admin["data"]["value"]["handle"] == "0.NA/gs1:9506000"


def test_cached_handle_answers_are_never_stale(net: Net) -> None:
    cache = net.client.app.state.handle_cache  # type: ignore[attr-defined]
    path = "/api/handles/88.100.1/EQ-C"
    assert net.client.get(path).json()["responseCode"] == 100
    hits = cache.hits
    assert net.client.get(path).json()["responseCode"] == 100
    assert cache.hits == hits  # a 404 is not cached: clients could fill the cache with invented paths
    net.send("id.register", IdRegister("88.100.1/EQ-C", (ValueSpec(1, "URL", "https://v/1"),)))
    for n in range(2, 6):
        first = net.client.get(path).json()  # right after wait=true returned
        assert first["values"][0]["data"]["value"] == f"https://v/{n - 1}"
        hits = cache.hits
        assert net.client.get(path, params={"unknown": n}).json() == first
        assert cache.hits == hits + 1  # served from the cache, whatever unknown parameters say
        net.send("id.update", IdUpdate("88.100.1/EQ-C", (ValueSpec(1, "URL", f"https://v/{n}"),)))
    net.send("id.value_set", IdValueSet("88.100.1/EQ-C", ValueSpec(1, "URL", "https://v/final")))
    assert net.client.get(path).json()["values"][0]["data"]["value"] == "https://v/final"
    # A proof-bearing answer names the head: it is renewed at every block, even one without identifier changes.
    p1 = net.client.get(path, params={"proof": "true"}).json()["proof"]["height"]
    net.send("id.register", IdRegister("88.100.1/EQ-OTHER", (ValueSpec(1, "URL", "https://v/o"),)))
    p2 = net.client.get(path, params={"proof": "true"}).json()["proof"]["height"]
    assert p2 > p1
    # JSONP answers are cached per query string too.
    text = net.client.get(path, params={"callback": "cb"}).text
    assert text.startswith("cb(") and json.loads(text[3:-2])["handle"] == "88.100.1/EQ-C"


def test_openapi_documents_the_resolution_routes(net: Net) -> None:
    paths = net.client.get("/openapi.json").json()["paths"]
    for p in ("/api/handles/{prefix}/{suffix}", "/01/{rest}", "/v1/resolve", "/v1/qr/{identifier}",
              "/v1/resolve/{identifier}/history"):
        assert p in paths, p
