"""Suite-wide settings: Hypothesis profiles, the simulation's run seed, and the list of skipped tests.

- Hypothesis: HYPOTHESIS_PROFILE picks `dev` (the default: no per-example deadline, which fails
  spuriously on a busy machine), `ci` (the same, derandomised: every CI run tries the same examples)
  or `soak` (no deadline, 20 times the examples of tests that do not fix their own count).
- The simulation search (tests/test_sim_search.py) draws its schedules from SIM_SEED; when it is not
  set, one is drawn here, printed in the header, and kept in the environment for the whole run.
- Skips are never silent: the run ends by listing every skipped test with its reason, and with
  LEDGER_STRICT_SKIPS=1 (what .ci/run sets) any skip fails the run.
"""

from __future__ import annotations

import os
import time
from collections import defaultdict
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings

settings.register_profile("dev", deadline=None)
settings.register_profile("ci", deadline=None, derandomize=True, print_blob=True,
                          suppress_health_check=[HealthCheck.too_slow])
settings.register_profile("soak", deadline=None, max_examples=2000, suppress_health_check=[HealthCheck.too_slow])
settings.load_profile(os.environ.get("HYPOTHESIS_PROFILE", "dev"))

STRICT = os.environ.get("LEDGER_STRICT_SKIPS", "") not in ("", "0")
_skipped: dict[str, list[str]] = defaultdict(list)  # reason -> test ids
_notes: list[str] = []  # lines tests ask to show at the end of the run (the simulation search's summary)


@pytest.fixture
def terminal_note() -> Callable[[str], None]:
    """Show a line at the end of the run, whatever the test's outcome and output capture."""
    return _notes.append


def pytest_configure(config: pytest.Config) -> None:
    if not os.environ.get("SIM_SEED"):  # as tests/sim/search.py draws one (not imported: it patches libsodium calls)
        os.environ["SIM_SEED"] = str(time.time_ns() % 1_000_000_007)


def pytest_report_header(config: pytest.Config) -> list[str]:
    lines = [f"simulation run seed: SIM_SEED={os.environ['SIM_SEED']}; hypothesis profile: "
             f"{settings.get_current_profile_name()}"]
    if STRICT:
        lines.append("strict mode (LEDGER_STRICT_SKIPS=1): any skipped test fails the run")
    return lines


def pytest_runtest_logreport(report: pytest.TestReport) -> None:
    if report.skipped and not hasattr(report, "wasxfail"):
        longrepr = report.longrepr
        reason = longrepr[2] if isinstance(longrepr, tuple) else str(longrepr)
        _skipped[reason.removeprefix("Skipped: ")].append(report.nodeid)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter, exitstatus: int) -> None:
    tr = terminalreporter
    if _notes:
        tr.section("notes", sep="=")
        for line in _notes:
            tr.write_line(line)
    if not _skipped:
        tr.write_line("no test skipped")
        return
    count = sum(len(ids) for ids in _skipped.values())
    tr.section(f"{count} skipped tests" + (": strict mode fails the run" if STRICT else ""), sep="=",
               red=STRICT, yellow=not STRICT)
    for reason, ids in sorted(_skipped.items(), key=lambda item: -len(item[1])):
        files = sorted({i.split("::")[0] for i in ids})
        tr.write_line(f"{len(ids)} skipped in {', '.join(files)}: {reason}")


@pytest.hookimpl(trylast=True)
def pytest_sessionfinish(session: pytest.Session, exitstatus: int) -> None:
    if STRICT and _skipped and exitstatus == pytest.ExitCode.OK:
        session.exitstatus = pytest.ExitCode.TESTS_FAILED
