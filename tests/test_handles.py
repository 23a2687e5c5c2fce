"""Handle.Net REST conformance, driven by the request/response cases in tests/data/handle-responses.json.

The ledger holds the same record as the Handle documentation's example (4263537/4000 with a URL at
index 1 and an EMAIL at index 2); each documented GET case is replayed against it and the answer is
compared with the documented body. Timestamps are the ledger's block time, so only their format is
compared; HS_ADMIN carries the permissions the ledger derives from prefix ownership.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from fastapi.testclient import TestClient

from ledger.api.server import create_app
from ledger.resolver.handle_format import OWNER_PERMISSIONS
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.tx import make_tx, tx_to_plain
from tests.nodeutil import CHAIN_ID, make_home

CASES = json.loads((Path(__file__).parent / "data" / "handle-responses.json").read_text())
ISO = re.compile(r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\dZ")


@pytest.fixture(scope="module")
def client(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TestClient]:
    home = make_home(tmp_path_factory.mktemp("handles"), prefixes=(("4263537", "org1"), ("88.100.1", "org1")))
    with TestClient(create_app(home.path)) as c:
        values = (ValueSpec(1, "URL", "http://www.handle.net/index.html"),
                  ValueSpec(2, "EMAIL", "hdladmin@cnri.reston.va.us"))
        tx = make_tx(home.org1, CHAIN_ID, 1, "id.register", IdRegister("4263537/4000", values))
        r = c.post("/v1/tx?wait=true", json=tx_to_plain(tx))
        assert r.json()["ok"] is True
        yield c


def _normalise(values: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """Values in index order, timestamps checked for format and dropped, HS_ADMIN permissions masked."""
    out = []
    for v in sorted(values, key=lambda v: v["index"]):
        assert ISO.fullmatch(v["timestamp"]), v["timestamp"]
        v = {k: x for k, x in v.items() if k != "timestamp"}
        if v["type"] == "HS_ADMIN":
            v["data"] = {**v["data"], "value": {**v["data"]["value"], "permissions": "*"}}
        out.append(v)
    return out


def _documented_get_cases() -> list[dict[str, Any]]:
    return [c for c in CASES["cases"] if c["request"].get("method") == "GET" and
            c["request"].get("path", "").startswith("/api/handles/4263537/4000")]


@pytest.mark.parametrize("case", _documented_get_cases(), ids=lambda c: c["name"])
def test_documented_resolution_cases(client: TestClient, case: dict[str, Any]) -> None:
    req = case["request"]
    r = client.get(req["path"], params=req.get("query", []))
    expected = case["response"]
    assert r.status_code == expected["status"]
    text = r.text
    if "body_text_prefix" in expected:
        assert text.startswith(expected["body_text_prefix"]) and text.endswith(expected["body_text_suffix"])
        text = text[len(expected["body_text_prefix"]) : -len(expected["body_text_suffix"])]
    body = json.loads(text)
    want = expected["body"]
    assert body["responseCode"] == want["responseCode"]
    assert body["handle"] == want["handle"]
    assert _normalise(body["values"]) == _normalise(want["values"])


def test_hs_admin_is_derived_from_prefix_ownership(client: TestClient) -> None:
    body = client.get("/api/handles/4263537/4000", params={"type": "HS_ADMIN"}).json()
    (admin,) = body["values"]
    assert admin["index"] == 100
    assert admin["data"] == {"format": "admin",
                             "value": {"handle": "0.NA/4263537", "index": 200, "permissions": OWNER_PERMISSIONS}}


def test_not_found_matches_the_documented_shape(client: TestClient) -> None:
    r = client.get("/api/handles/4263537/no-such-thing")
    assert r.status_code == 404
    assert r.json() == {"responseCode": 100, "handle": "4263537/no-such-thing"}


def test_filters_matching_nothing_answer_values_not_found(client: TestClient) -> None:
    r = client.get("/api/handles/4263537/4000", params={"type": "DESC"})
    assert r.status_code == 200
    assert r.json() == {"responseCode": 200, "handle": "4263537/4000"}


def test_type_with_trailing_period_matches_subtypes(client: TestClient) -> None:
    body = client.get("/api/handles/4263537/4000", params={"type": "URL."}).json()
    assert [v["type"] for v in body["values"]] == ["URL"]


def test_prefix_not_homed_here_is_301(client: TestClient) -> None:
    r = client.get("/api/handles/99.1/thing")
    assert r.status_code == 400
    assert r.json()["responseCode"] == 301 and r.json()["handle"] == "99.1/thing"


@pytest.mark.parametrize("path", ["/api/handles/bad%20prefix/x", "/api/handles/88.100.1/%01ctl",
                                  "/api/handles/88.100.1/a/%2E%2E/b"])
def test_invalid_handles_are_102(client: TestClient, path: str) -> None:
    r = client.get(path)
    assert r.status_code == 400 and r.json()["responseCode"] == 102


def test_bad_index_parameter_is_a_json_error(client: TestClient) -> None:
    r = client.get("/api/handles/4263537/4000", params={"index": "one"})
    assert r.status_code == 400 and "responseCode" in r.json()


def test_unsafe_jsonp_callback_is_ignored(client: TestClient) -> None:
    r = client.get("/api/handles/4263537/4000", params={"callback": "alert(1)//"})
    assert r.headers["content-type"].startswith("application/json")
    assert r.json()["responseCode"] == 1
