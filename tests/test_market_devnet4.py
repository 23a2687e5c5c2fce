"""Issue 15's market walk-through on a 4-validator devnet, through the `ledger` command and different nodes:
credits issued by the treasury, a token minted with a 5% royalty sold twice, a purchase without enough
credits refused, a licence bought that the rights check then allows, prices of the sales, and a balance
proven offline from the genesis file."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from ledger.crypto import SigningKey
from tests.devnetutil import devnet_down, devnet_up, ledger

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def net4(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path_factory.mktemp("market") / "devnet", 4)
    yield data
    devnet_down(data)


def test_market_walk_through(net4: dict[str, Any], tmp_path: Path) -> None:
    d = net4["dir"]
    node = [n["http"] for n in net4["nodes"]]
    ids = {name: SigningKey.load(net4["keys"][name]).id for name in ("org1", "org2", "org3")}


    def run(*args: str, check: bool = True) -> Any:
        return ledger(*args, "--dir", d, check=check)

    def out(*args: str) -> Any:
        return json.loads(run(*args).stdout)

    def balance(name: str, at: str) -> tuple[int, int]:
        """Read over HTTP (the CLI's `credits balance` is run once, with --proof, below)."""
        found = httpx.get(f"{at}/v1/credits/{ids[name]}", timeout=30).json()
        return found["available"], found["held"]

    # The treasury (the devnet's admin) issues 1,000 credits to org2.
    assert out("credits", "issue", "org2", "1000")["issued"] == 1000
    # org1 mints a data token with a 5% royalty and lists it at 200; org2 buys it through another node.
    minted = out("asset", "mint", "DATA-M1", "--kind", "data", "--uri", "https://d.example/m1",
                 "--hash", hashlib.sha256(b"m1").hexdigest(), "--royalty", "500", "--key", "org1", "--node", node[1])
    assert minted["royalty_bps"] == 500
    run("market", "list", "DATA-M1", "--price", "200", "--key", "org1")
    assert out("market", "buy", "DATA-M1", "--key", "org2", "--node", node[2])["price"] == 200
    # org2 lists it at 300; org3, without credits, is refused and nothing changes.
    run("market", "list", "DATA-M1", "--price", "300", "--key", "org2", "--node", node[2])
    refused = run("market", "buy", "DATA-M1", "--key", "org3", "--node", node[3], check=False)
    assert refused.returncode == 1 and "insufficient_credits" in refused.stderr, refused.stderr
    assert balance("org3", node[0]) == (0, 0) and balance("org2", node[3]) == (800, 0)
    shown = out("market", "show", "DATA-M1", "--node", node[1])
    assert shown["listing"]["seller"] == ids["org2"] and shown["buyable"]
    # org2, the owner now, offers analytics licences; org3, given credits, buys one, which the rights check allows.
    offer = out("market", "licence-offer", "DATA-M1", "--purpose", "analytics", "--days", "30", "--price", "40",
                "--max", "5", "--key", "org2")["offer_id"]
    run("credits", "issue", "org3", "340")
    assert out("market", "licence-buy", offer, "--key", "org3", "--node", node[1])["price"] == 40
    assert run("rights", "check", "DATA-M1", "--holder", "org3", "--purpose", "analytics", "--node", node[2],
               check=False).returncode == 0
    # Then org3 buys the token: org1 got 200 and a 15 royalty, org2 paid 200 and got 285 (and 40 for the
    # licence), the token is org3's.
    run("market", "buy", "DATA-M1", "--key", "org3", "--node", node[3])
    assert balance("org1", node[1]) == (215, 0)
    assert balance("org2", node[2]) == (1085 + 40, 0)
    assert balance("org3", node[3]) == (0, 0)
    assert out("asset", "show", "DATA-M1", "--node", node[2])["owner"] == ids["org3"]
    assert out("market", "show", "DATA-M1")["listing"] is None
    # The prices show both sales.
    prices = out("market", "prices", "--kind", "data", "--node", node[3])
    assert [(s["price"], s["royalty"], s["buyer"]) for s in prices["sales"]] == [
        (300, 15, ids["org3"]), (200, 0, ids["org2"])]
    assert {k: prices["windows"]["24h"][k] for k in ("count", "volume", "last", "median", "vwap")} == {
        "count": 2, "volume": 500, "last": 300, "median": 250, "vwap": 250.0}
    licences = out("market", "prices", "--purpose", "analytics")
    assert [(s["price"], s["via"], s["buyer"]) for s in licences["sales"]] == [(40, "licence", ids["org3"])]
    # A balance comes with a proof that checks offline against the genesis file alone.
    proven = out("credits", "balance", "org1", "--proof", "--node", node[2])
    assert (proven["available"], proven["held"]) == (215, 0)
    (tmp_path / "balance.json").write_text(json.dumps(proven["proof"]))
    verdict = json.loads(ledger("verify", str(tmp_path / "balance.json"), "--genesis", net4["genesis"]).stdout)
    assert verdict["valid"] and verdict["present"]
