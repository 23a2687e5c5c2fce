"""`ledger id import` against a real one-node devnet: per-row error report, resume after an interruption."""

from __future__ import annotations

import csv
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.devnetutil import devnet_down, devnet_up, ledger

pytestmark = pytest.mark.slow


@pytest.fixture
def net(tmp_path: Path) -> Iterator[dict[str, Any]]:
    data = devnet_up(tmp_path / "devnet", 1)
    yield data
    devnet_down(data)


def write_csv(path: Path, rows: list[tuple[str, str]]) -> None:
    with path.open("w", newline="") as f:
        w = csv.writer(f)
        w.writerow(["identifier", "url"])
        w.writerows(rows)


def test_import_reports_row_errors_and_resumes(net: dict[str, Any], tmp_path: Path) -> None:
    d = net["dir"]
    ledger("id", "prefix", "88.100.1", "--owner", "org1", "--dir", d)
    ledger("id", "prefix", "gs1:9506000", "--owner", "org1", "--dir", d)
    good = [(f"88.100.1/EQ-{n:04d}", f"https://twin.example/{n}") for n in range(60)]
    good.append(("/01/09506000134376/21/777", "https://twin.example/gs1"))
    bad = [("no-slash", "https://x"), ("88.100.1/EMPTY", ""), ("77.1/EQ-1", "https://x"),
           ("/01/09506000134377/21/1", "https://x")]
    # First run: only the first 30 rows (an import interrupted after 30 committed rows).
    part = tmp_path / "part.csv"
    write_csv(part, good[:30])
    first = json.loads(ledger("id", "import", str(part), "--dir", d, "--batch", "7").stdout.strip().splitlines()[-1])
    assert first == {"imported": 30, "skipped": 0, "failed": 0, "report": f"{part}.errors.csv"}
    # Second run over the whole file, with bad rows and a conflicting row mixed in.
    full = tmp_path / "ids.csv"
    conflict = ("88.100.1/EQ-0003", "https://elsewhere.example/3")
    write_csv(full, [*good, *bad, conflict, good[40]])
    report = tmp_path / "errors.csv"
    proc = ledger("id", "import", str(full), "--dir", d, "--batch", "16", "--report", str(report), check=False)
    assert proc.returncode == 1, proc.stderr
    summary = json.loads(proc.stdout.strip().splitlines()[-1])
    assert summary["imported"] == 31 and summary["skipped"] == 31 and summary["failed"] == 5
    assert "rate" in proc.stderr or "/s" in proc.stderr  # the progress bar reports a rate
    with report.open() as f:
        rows = list(csv.DictReader(f))
    assert sorted(r["line"] for r in rows) == ["63", "64", "65", "66", "67"]
    assert {r["identifier"] for r in rows} == {b[0] for b in bad} | {conflict[0]}
    errors = {r["identifier"]: r["error"] for r in rows}
    assert errors["77.1/EQ-1"].startswith("not_found")
    assert "check digit" in errors["/01/09506000134377/21/1"]
    assert errors[conflict[0]].startswith("already_exists")
    url = net["nodes"][0]["http"]
    body = httpx.get(f"{url}/api/handles/88.100.1/EQ-0059").json()
    assert body["values"][0]["data"]["value"] == "https://twin.example/59"
    assert httpx.get(f"{url}/01/09506000134376/21/777").status_code == 307
