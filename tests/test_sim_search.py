"""The consensus simulation as a search (tests/sim/search.py): every run explores at least 1,000
schedules (the Twins enumeration of tests/sim/twins.py, then schedules drawn from the run seed, which
the header prints and SIM_SEED fixes); a failing schedule leaves its transcript in sim-failures/ and
`make sim SEED=name:seed` replays it. An injected quorum bug shows the search catches what it should."""

from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import pytest

from ledger import chain
from ledger.consensus import quorum
from tests.sim import search
from tests.sim.adversarial import FORGERIES_REFUSED, FORGING_SCENARIOS
from tests.sim.twins import CASES

SCHEDULES = int(os.environ.get("SIM_SCHEDULES", "1000"))
JOBS = int(os.environ.get("SIM_JOBS", "2"))
REGRESSION_DIR = Path(__file__).parent / "sim" / "regressions"


def run_seed() -> int:
    return int(os.environ["SIM_SEED"])  # set by tests/conftest.py when not given


@pytest.mark.timeout(3600)
def test_search_explores_a_thousand_schedules(terminal_note: Callable[[str], None]) -> None:
    schedules = search.plan(run_seed(), SCHEDULES)
    assert len(schedules) == SCHEDULES >= 1000 or "SIM_SCHEDULES" in os.environ  # fewer only when asked
    if len(CASES) <= SCHEDULES:
        enumerated = schedules[:len(CASES)]  # the whole Twins enumeration comes first
        assert {s.name for s in enumerated} == {"twins_round"}
        assert {s.seed % len(CASES) for s in enumerated} == set(range(len(CASES)))
    summary = search.search(run_seed(), schedules, jobs=JOBS)
    for line in summary.lines():
        terminal_note(line)
    assert len(summary.results) == SCHEDULES
    for scenario in FORGING_SCENARIOS:  # the attack reached the checks somewhere in the search
        runs, seen = summary.observed(scenario)
        assert runs < 5 or seen[FORGERIES_REFUSED] > 0, f"{runs} runs of {scenario}: no forgery reached a check"
    failures = summary.failures
    assert not failures, (
        f"{len(failures)} schedules failed (run seed {run_seed()}); transcripts in {search.FAILURES_DIR}:\n"
        + "\n".join(f"{r.schedule.label}: {r.outcome}: {r.message} -> {r.transcript}" for r in failures))


def _quorum_of_2f(n: int) -> int:
    return 2 * quorum.max_faulty(n)  # the bug: 2f instead of 2f + 1


def test_injected_quorum_bug_is_caught_with_a_transcript(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    """The first schedules of this run's search, with quorums of 2f (where the replicas count votes
    and where certificates are checked): the search reports a safety violation and writes a transcript
    that shows the two decisions and replays to the same end."""
    monkeypatch.setattr(quorum, "quorum_size", _quorum_of_2f)
    monkeypatch.setattr(chain, "quorum_size", _quorum_of_2f)
    monkeypatch.setattr(search, "FAILURES_DIR", tmp_path)
    summary = search.search(run_seed(), search.plan(run_seed(), SCHEDULES)[:40], jobs=1)
    unsafe = [r for r in summary.failures if r.outcome == "safety"]
    assert unsafe, f"a quorum of 2f went unnoticed: {summary.lines()}"
    first = unsafe[0]
    assert first.transcript is not None and first.transcript.parent == tmp_path
    text = first.transcript.read_text()
    assert f"replay: make sim SEED={first.schedule.label}" in text
    assert f"outcome: safety: {first.message}" in text  # the replay ended as the search's run did
    assert "the first run ended otherwise" not in text
    assert text.count("DECIDES") >= 2 and "twin of validator" in text  # who decided what, and who the twins are


def test_replay_of_a_passing_schedule_writes_its_transcript(tmp_path: Path) -> None:
    schedule = search.parse("symmetric_partition:3")
    result, _ = search.run(schedule)
    assert result.outcome == "ok", result.message
    assert result.faults["partition"] >= 1 and result.messages > 0
    path = search.write_transcript(result, tmp_path)
    text = path.read_text()
    assert "FAULT partition" in text and "DECIDES" in text and "outcome: ok" in text


def test_a_bare_seed_names_one_schedule_of_any_scenario() -> None:
    picked = {search.parse(str(seed)).name for seed in range(400)}
    assert picked == set(search.DRAWN)
    assert search.parse("123") == search.parse("123") == search.pick(123)
    with pytest.raises(ValueError, match="unknown scenario"):
        search.parse("no_such_scenario:1")


# --- failing schedules kept as regression tests, with their transcripts ------------------------------


def _kept() -> list[Path]:
    return sorted(REGRESSION_DIR.glob("*.txt"))


@pytest.mark.parametrize("transcript", _kept(), ids=lambda p: p.stem)
def test_kept_failure_now_passes(transcript: Path) -> None:
    """A schedule a search once failed, kept with the transcript of its failure: it now passes."""
    name, _, seed = transcript.stem.rpartition("-")
    header = transcript.read_text().splitlines()[0]
    assert f"schedule {name}:{seed}" in header  # the file is the transcript of that schedule
    result, _ = search.run(search.Schedule(name, int(seed)))
    assert result.outcome == "ok", f"{result.outcome}: {result.message}"
