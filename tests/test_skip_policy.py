"""tests/conftest.py's skip policy, run on a small suite of its own: a run ends by listing every skipped
test with its reason, and in strict mode (LEDGER_STRICT_SKIPS=1, what .ci/run sets) a skip fails the run."""

from __future__ import annotations

from pathlib import Path

import pytest

pytest_plugins = ["pytester"]

SUITE = """
import pytest

def test_runs():
    pass

@pytest.mark.skipif(True, reason="no chromium: apt-get install chromium")
def test_browser():
    pass

def test_anvil():
    pytest.skip("Anvil binary absent: run make install")
"""


@pytest.fixture
def suite(pytester: pytest.Pytester) -> pytest.Pytester:
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_suite=SUITE)
    return pytester


def test_a_run_ends_by_listing_skipped_tests_with_their_reasons(suite: pytest.Pytester,
                                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("LEDGER_STRICT_SKIPS", raising=False)
    result = suite.runpytest_subprocess("-q")
    assert result.ret == pytest.ExitCode.OK
    tail = "\n".join(result.outlines[-5:])
    assert "1 skipped in test_suite.py: no chromium: apt-get install chromium" in tail
    assert "1 skipped in test_suite.py: Anvil binary absent: run make install" in tail


def test_strict_mode_fails_a_run_with_a_skip(suite: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_STRICT_SKIPS", "1")
    result = suite.runpytest_subprocess("-q")
    assert result.ret == pytest.ExitCode.TESTS_FAILED
    result.stdout.fnmatch_lines(["*2 skipped tests: strict mode fails the run*"])


def test_strict_mode_passes_a_run_without_skips(pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("LEDGER_STRICT_SKIPS", "1")
    pytester.makeconftest((Path(__file__).parent / "conftest.py").read_text())
    pytester.makepyfile(test_suite="def test_runs():\n    pass\n")
    result = pytester.runpytest_subprocess("-q")
    assert result.ret == pytest.ExitCode.OK
    result.stdout.fnmatch_lines(["no test skipped"])
