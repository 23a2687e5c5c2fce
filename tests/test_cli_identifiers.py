"""Every identifier-taking `ledger` command accepts every form the resolver accepts, against a real node."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.devnetutil import devnet_down, devnet_up, ledger

pytestmark = pytest.mark.slow

ITEM_URI = "https://id.gs1.org/01/09506000134376/21/12345"
ITEM_FORMS = ("/01/09506000134376/21/12345", "urn:epc:id:sgtin:9506000.013437.12345", "(01)09506000134376(21)12345")
ITEM_KEY = "gs1/01/09506000134376/21/12345"


@pytest.fixture(scope="module")
def net(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path_factory.mktemp("cli-ids") / "devnet", 1)
    ledger("id", "prefix", "gs1:9506000", "--owner", "org1", "--dir", data["dir"])
    ledger("id", "prefix", "88.100.1", "--owner", "org1", "--dir", data["dir"])
    yield data
    devnet_down(data)


def resolve(net: dict[str, Any], identifier: str) -> dict[str, Any]:
    result: dict[str, Any] = json.loads(ledger("resolve", identifier, "--dir", net["dir"]).stdout)
    return result


def test_gs1_uri_registration_resolves_by_path_urn_and_element_string(net: dict[str, Any]) -> None:
    out = json.loads(ledger("id", "register", ITEM_URI, "--url", "https://products.example/pump",
                            "--value", "TWIN=https://twin.example/pump", "--dir", net["dir"]).stdout)
    assert (out["identifier"], out["input"]) == (ITEM_KEY, ITEM_URI)
    answers = [resolve(net, form) for form in (ITEM_URI, *ITEM_FORMS)]
    assert {a["identifier"] for a in answers} == {ITEM_KEY}
    record = answers[0]["record"]
    assert [(v["type"], v["value"]) for v in record["values"]] == [
        ("URL", "https://products.example/pump"), ("TWIN", "https://twin.example/pump")]
    assert all(a["record"] == record for a in answers)  # one record, not four
    # Another form of the registered item is the same identifier: refused as a duplicate.
    again = ledger("id", "register", ITEM_FORMS[1], "--url", "https://x", "--dir", net["dir"], check=False)
    assert again.returncode == 1 and "already_exists" in again.stderr


def test_asset_mint_binds_a_gs1_item_given_in_another_form(net: dict[str, Any]) -> None:
    ledger("id", "register", "/01/09506000134376/21/777", "--url", "https://products.example/777", "--dir", net["dir"])
    meta = hashlib.sha256(b"pump 777").hexdigest()
    minted = json.loads(ledger("asset", "mint", "PUMP-777", "--kind", "equipment", "--identifier",
                               "(01)09506000134376(21)777", "--uri", "https://m.example/777", "--hash", meta,
                               "--dir", net["dir"]).stdout)
    assert minted["identifier"] == "gs1/01/09506000134376/21/777"
    record = resolve(net, "urn:epc:id:sgtin:9506000.013437.777")["record"]
    assert ("NFT", "PUMP-777") in [(v["type"], v["value"]) for v in record["values"]]


def test_resolve_with_proof_takes_any_form_and_verifies(net: dict[str, Any], tmp_path: Path) -> None:
    ledger("id", "register", "/01/09506000134376/21/888", "--url", "https://products.example/888", "--dir", net["dir"])
    proof = tmp_path / "proof.json"
    proof.write_text(ledger("resolve", "(01)09506000134376(21)888", "--proof", "--dir", net["dir"]).stdout)
    verified = json.loads(ledger("verify", str(proof), "--genesis", net["genesis"]).stdout)
    assert verified["valid"] and verified["key"] == "id/gs1/01/09506000134376/21/888" and verified["present"]


def test_handle_with_url_special_characters_resolves_to_itself(net: dict[str, Any]) -> None:
    # '?', '#' and '%' are part of a Handle's suffix, not a query, a fragment or an escape.
    handle = "88.100.1/EQ?rev=2#a%20b"
    ledger("id", "register", handle, "--url", "https://twin.example/odd", "--dir", net["dir"])
    assert resolve(net, handle)["identifier"] == handle
    missing = ledger("resolve", "88.100.1/EQ", "--dir", net["dir"], check=False)
    assert missing.returncode == 1 and "not_found" in missing.stderr


def test_malformed_identifier_is_a_usage_error_with_the_parsers_reason(net: dict[str, Any]) -> None:
    for command in (("id", "register", "/01/09506000134377/21/1", "--url", "https://x"),  # bad check digit
                    ("resolve", "urn:epc:id:sgtin:nonsense")):
        bad = ledger(*command, "--dir", net["dir"], check=False)
        assert bad.returncode == 2 and "invalid identifier" in bad.stderr, bad.stderr
