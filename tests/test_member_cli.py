"""`ledger member ...` against a real node: add by name, roles, key rotation, removal."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.devnetutil import ledger
from tests.test_node_process import net as net  # noqa: F401 - the devnet fixture

pytestmark = pytest.mark.slow


@pytest.fixture
def keys(tmp_path: Path) -> Iterator[tuple[str, str]]:
    first, second = tmp_path / "acme.pem", tmp_path / "acme-2.pem"
    ledger("keygen", "--out", str(first))
    ledger("keygen", "--out", str(second))
    yield str(first), str(second)


def test_member_lifecycle_by_name(net: dict, keys: tuple[str, str]) -> None:  # noqa: F811
    d = net["dir"]
    first, second = keys
    added = json.loads(ledger("member", "add", "acme", "--key-file", first, "--role", "registrar", "--dir", d).stdout)
    assert added["roles"] == ["registrar"]
    dup = ledger("member", "add", "acme", "--key-file", second, "--dir", d, check=False)
    assert dup.returncode == 1 and "already named" in dup.stderr

    ledger("id", "prefix", "88.200.1", "--owner", "acme", "--dir", d)  # the owner named by its name
    ledger("id", "register", "88.200.1/A-1", "--url", "https://a", "--key", first, "--dir", d)

    roles = json.loads(ledger("member", "roles", "acme", "--role", "issuer", "--role", "registrar", "--dir", d).stdout)
    assert roles["roles"] == ["issuer", "registrar"]

    ledger("member", "rotate-key", "--new-key", second, "--key", first, "--dir", d)
    old = ledger("id", "register", "88.200.1/A-2", "--url", "https://a", "--key", first, "--dir", d, check=False)
    assert old.returncode == 1 and "bad_signature" in old.stderr
    ledger("id", "register", "88.200.1/A-2", "--url", "https://a", "--key", second, "--dir", d)

    ledger("member", "remove", "acme", "--dir", d)
    gone = ledger("id", "register", "88.200.1/A-3", "--url", "https://a", "--key", second, "--dir", d, check=False)
    assert gone.returncode != 0 and "unknown_sender" in gone.stderr

    unknown = ledger("member", "roles", "nobody-by-that-name", "--role", "issuer", "--dir", d, check=False)
    assert unknown.returncode == 2 and "unknown member" in unknown.stderr
