"""The search excuses only the known bugs of tests/sim/known.py, by scenario, outcome and symptom; a
safety violation, another scenario or another kind of stall still fails it."""

from tests.sim.known import known_bug

LONE = "LivenessFailure: no liveness after 8000 steps: node 0 h24 v3, node 1 h21 v4*, node 2 h24 v3, node 3 h24 v3"
SPLIT = "AssertionError: no 3 honest replicas in one view: {2: 1, 3: 2} (adversarial.py:37)"


def test_the_known_symptoms_are_recognised() -> None:
    assert known_bug("chaos", "liveness", LONE) is not None
    assert known_bug("byzantine_view_change", "check", SPLIT) is not None


def test_anything_else_still_fails_the_search() -> None:
    assert known_bug("chaos", "safety", LONE) is None
    assert known_bug("lossy", "liveness", LONE) is None
    assert known_bug("chaos", "liveness", LONE.replace("v4*", "v3")) is None  # a stall with no lone view
    assert known_bug("chaos", "liveness", LONE.replace("v4*", "v2")) is None  # lone in a lower view
    assert known_bug("byzantine_view_change", "liveness", SPLIT) is None
