"""The profile's stage split and flame graph (ledger/profiling.py), and py-spy on a real process."""

from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from pathlib import Path

from ledger.profiling import OTHER, Profilers, flame_svg, parse_collapsed, stage_of, stage_samples, stage_table

ROOT = "<module> (/srv/x/ledger/cli/__init__.py:10)"
SAMPLE = "".join(f"{';'.join((ROOT, *frames))} {count}\n" for frames, count in [
    (("run (/srv/x/ledger/node.py:5)", "verify_many (/srv/x/ledger/crypto.py:210)"), 40),
    (("commit (/srv/x/ledger/chaindb.py:7)", "update (/srv/x/ledger/smt.py:90)",
      "sha256 (/srv/x/ledger/crypto.py:234)"), 25),
    (("commit (/srv/x/ledger/chaindb.py:7)", "_write (/srv/x/ledger/chaindb.py:9)",
      "write_batch (/srv/x/ledger/store.py:129)"), 20),
    (("run_forever (/usr/lib/python3.11/asyncio/base_events.py:600)",), 10),
    (("handle (/venv/lib/python3.11/site-packages/h11/_connection.py:3)", "decode (/srv/x/ledger/codec.py:359)",
      "decode_record (<string>:2)"), 5),
])


def test_parsing_drops_line_numbers_and_shortens_paths() -> None:
    stacks = parse_collapsed(SAMPLE + "a line that is no stack\n")
    assert sum(stacks.values()) == 100
    assert ("<module> (ledger/cli/__init__.py)", "run (ledger/node.py)", "verify_many (ledger/crypto.py)") in stacks
    assert any(f == "handle (h11/_connection.py)" for s in stacks for f in s)


def test_the_innermost_claimed_frame_decides_and_unclaimed_frames_pass_to_their_callers() -> None:
    stacks = parse_collapsed(SAMPLE)
    by_stage = stage_samples(stacks)
    assert by_stage["signature check"] == 40
    # sha256 lives in crypto.py but is no verification: its caller, the state tree, gets the sample.
    assert by_stage["state tree"] == 25
    assert by_stage["LevelDB write"] == 20
    assert by_stage["decode"] == 5  # a generated record decoder, called from the HTTP server
    assert by_stage["event loop and socket I/O"] == 10  # the loop itself, not the CLI that started it
    assert stage_of(("main (somewhere/else.py)",)) == OTHER


def test_the_table_gives_each_nodes_shares_and_the_total() -> None:
    stacks = parse_collapsed(SAMPLE)
    table = stage_table({"node0": stacks, "node1": {s: 2 * n for s, n in stacks.items()}})
    rows = {line.split(" | ")[0].lstrip("| "): line for line in table.splitlines()}
    assert rows["signature check"] == "| signature check | 40.0% | 40.0% | 40.0% |"
    assert rows["samples"] == "| samples | 100 | 200 | 300 |"


def test_the_flame_graph_is_svg_with_a_bar_per_frame_and_shares_in_its_tooltips() -> None:
    stacks = parse_collapsed(SAMPLE)
    svg = ET.fromstring(flame_svg(stacks, "a <title>"))
    titles = [t.text or "" for t in svg.iter("{http://www.w3.org/2000/svg}title")]
    assert "<module> (ledger/cli/__init__.py): 100.00% (signature check)" in titles  # the root, 40 of 100
    assert "verify_many (ledger/crypto.py): 40.00% (signature check)" in titles
    assert "sha256 (ledger/crypto.py): 25.00% (state tree)" in titles
    frames = {f for s in stacks for f in s}
    assert len(titles) == len(frames)


def test_py_spy_samples_a_running_process(tmp_path: Path) -> None:
    busy = tmp_path / "busy.py"
    busy.write_text("import hashlib\ndef spin():\n    while True:\n        hashlib.sha256(b'x' * 4096).digest()\n"
                    "spin()\n")
    proc = subprocess.Popen([sys.executable, str(busy)])
    try:
        profilers = Profilers({"busy": proc.pid}, tmp_path / "out", rate=50)
        time.sleep(1.5)
        stacks = profilers.stop()["busy"]
    finally:
        proc.kill()
        proc.wait()
    assert sum(stacks.values()) >= 20, stacks
    assert any(frame.startswith("spin (") for stack in stacks for frame in stack)
