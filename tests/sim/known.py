"""Failures of the search that are known bugs, tracked in issue 18 ("no validator left alone in
another view"), found by `make sim SEEDS=5000` (run seed 542284264) and present in the code before
they were found. The search reports each one it meets, by name, with its transcript and replay
command, and does not fail CI for it; anything else fails, and a safety violation always does.
Remove an entry when its bug is fixed (its schedules then pass and stay in the search)."""

from __future__ import annotations

import re
from typing import NamedTuple


class KnownBug(NamedTuple):
    scenario: str
    outcome: str
    symptom: re.Pattern[str]
    what: str


KNOWN = (
    KnownBug("byzantine_view_change", "check", re.compile(r"no \d+ honest replicas in one view"),
             "honest replicas split between two views next to a forger (seeds 542286378, 679616916)"),
    KnownBug("chaos", "liveness", re.compile(r"no liveness after \d+ steps: "),  # and lone_higher_view
             "one replica left alone in a higher view while the others commit (seed 542284966)"),
)


def known_bug(scenario: str, outcome: str, message: str) -> KnownBug | None:
    if outcome == "safety":
        return None
    for bug in KNOWN:
        if (bug.scenario, bug.outcome) == (scenario, outcome) and bug.symptom.search(message):
            if outcome == "liveness" and not lone_higher_view(message):
                continue
            return bug
    return None


def lone_higher_view(message: str) -> bool:
    """The nodes a liveness failure describes ("node 1 h21 v4*, ...") share one view but one, which is
    in a higher view: the known symptom, not any other stall."""
    views = [int(v) for v in re.findall(r"node \d+ h\d+ v(\d+)", message)]
    common = max(set(views), key=views.count) if views else 0
    others = [v for v in views if v != common]
    return len(others) == 1 and others[0] > common
