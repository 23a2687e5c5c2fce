"""An existing Handle client library (pyhandle), unchanged, against a 4-node devnet.

The identifier is registered through node0 and resolved through node2 with pyhandle's REST client, as a
user of a Handle.Net server would: `PyHandleClient('rest').instantiate_for_read_access(handle_server_url=...)`.
pyhandle reads over plain http as well as https (it passes the URL to `requests`; `HTTPS_verify` only
matters for https), so the devnet's http URL is used as is.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from typing import Any

import httpx
import pytest
from pyhandle.handleclient import PyHandleClient  # a dev dependency: pip install -e '.[dev]'
from pyhandle.handleexceptions import HandleNotFoundException

from tests.devnetutil import devnet_down, devnet_up, ledger, wait_until

pytestmark = pytest.mark.slow

HANDLE = "88.100.1/PUMP-2024-000042"
URL = "https://twin.example.com/PUMP-2024-000042"
EMAIL = "maintenance@plant.example.com"
TWIN = "https://twins.example.com/api/PUMP-2024-000042"
# A GS1 item in its Handle form: pyhandle cannot send `gs1:` prefixes (a `:` means index:handle to it).
GS1_HANDLE = "gs1/01/09506000134376/21/12345"
GS1_URL = "https://twin.example.com/gs1/09506000134376/12345"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path_factory.mktemp("hc") / "devnet", 4)
    try:
        d = data["dir"]
        ledger("id", "prefix", "88.100.1", "--owner", "org1", "--dir", d)
        ledger("id", "prefix", "gs1:9506000", "--owner", "org1", "--dir", d)
        ledger("id", "register", GS1_HANDLE, "--url", GS1_URL, "--dir", d)
        out = ledger("id", "register", HANDLE, "--url", URL, "--value", f"EMAIL={EMAIL}",
                     "--value", f"TWIN={TWIN}", "--dir", d)
        wait_for_height(data["nodes"][2]["http"], json.loads(out.stdout)["height"])
        yield data
    finally:
        devnet_down(data)


def wait_for_height(url: str, height: int, deadline_s: float = 30.0) -> None:
    """Until the node has committed `height` (a write through node0 reaches node2 a moment later)."""
    wait_until(lambda: httpx.get(f"{url}/healthz", timeout=2).json()["height"] >= height, deadline_s,
               f"{url} to reach height {height}")


@pytest.fixture(scope="module")
def client(net: dict[str, Any]) -> Any:
    return PyHandleClient("rest").instantiate_for_read_access(handle_server_url=net["nodes"][2]["http"])


def test_record_resolves_through_another_node(client: Any) -> None:
    record = client.retrieve_handle_record(HANDLE)
    assert record["URL"] == URL
    assert record["EMAIL"] == EMAIL
    assert record["TWIN"] == TWIN
    assert "HS_ADMIN" in record  # derived from prefix ownership
    assert client.get_value_from_handle(HANDLE, "URL") == URL
    admin = client.get_value_from_handle(HANDLE, "HS_ADMIN")
    assert admin == {"handle": "0.NA/88.100.1", "index": 200, "permissions": "011111110011"}


def test_full_record_json(client: Any) -> None:
    body = client.retrieve_handle_record_json(HANDLE)
    assert body["responseCode"] == 1 and body["handle"] == HANDLE
    by_type = {v["type"]: v for v in body["values"]}
    assert by_type["URL"]["index"] == 1
    assert by_type["URL"]["data"] == {"format": "string", "value": URL}
    assert by_type["HS_ADMIN"]["index"] == 100 and by_type["HS_ADMIN"]["data"]["format"] == "admin"
    assert all(isinstance(v["ttl"], int) and v["timestamp"].endswith("Z") for v in body["values"])


def test_filters_and_cache_bypass(client: Any) -> None:
    # The library's own ways of asking for part of a record, and of bypassing caches (auth=true).
    only_url = client.retrieve_handle_record_json(HANDLE, indices=[1])
    assert [v["type"] for v in only_url["values"]] == ["URL"]
    email = client.retrieve_handle_record_json(HANDLE, type="EMAIL")
    assert [v["data"]["value"] for v in email["values"]] == [EMAIL]
    fresh = client.retrieve_handle_record(HANDLE, auth=True)
    assert fresh["URL"] == URL
    # A filter that matches nothing is responseCode 200 (values not found), which pyhandle returns as is.
    empty = client.retrieve_handle_record_json(HANDLE, indices=[77])
    assert empty["responseCode"] == 200 and empty["handle"] == HANDLE


def test_gs1_item_in_handle_form(client: Any) -> None:
    assert client.get_value_from_handle(GS1_HANDLE, "URL") == GS1_URL
    assert client.retrieve_handle_record_json(GS1_HANDLE)["handle"] == GS1_HANDLE  # echoed as asked


def test_unknown_handle_is_the_librarys_not_found(client: Any) -> None:
    unknown = "88.100.1/PUMP-NO-SUCH-UNIT"
    assert client.retrieve_handle_record_json(unknown) is None  # the library's "does not exist"
    assert client.retrieve_handle_record(unknown) is None
    with pytest.raises(HandleNotFoundException):
        client.get_value_from_handle(unknown, "URL")
    # Asked twice: the second answer comes from the node's response cache and must be the same.
    with pytest.raises(HandleNotFoundException):
        client.get_value_from_handle(unknown, "URL")


def test_gs1_digital_link_through_another_node(net: dict[str, Any]) -> None:
    """The same GS1 item, as a scanner's Digital Link: a 307 to its link (query kept), or its linkset."""
    url = net["nodes"][3]["http"]
    r = httpx.get(f"{url}/01/09506000134376/21/12345?src=scan", follow_redirects=False, timeout=10)
    assert r.status_code == 307 and r.headers["location"] == f"{GS1_URL}?src=scan"
    r = httpx.get(f"{url}/01/09506000134376/21/12345", headers={"Accept": "application/linkset+json"}, timeout=10)
    assert r.status_code == 200 and r.headers["content-type"].startswith("application/linkset+json")
    (context,) = r.json()["linkset"]
    assert any(link["href"] == GS1_URL for links in context.values() if isinstance(links, list) for link in links)
