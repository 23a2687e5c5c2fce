"""A search over simulated schedules: many seeds, every scenario, a summary, and a transcript for
each failure.

A *schedule* is a scenario and a seed (`name:seed`); the seed alone also names one, its scenario
drawn from a hash of it (`pick`). A search starts from a *run seed* (SIM_SEED, or drawn from the
clock and printed), runs the systematic Twins enumeration (tests/sim/twins.py) with timings from that
seed, then schedules `run_seed + i` until it has run as many as asked. A failure is run again with a
transcript attached (the simulation is deterministic) and written to `sim-failures/`, with the
command that replays it: `make sim SEED=name:seed`.

Outcomes: ok; safety (two honest nodes decided differently, or a node's own chain broke); liveness
(what honest clients sent did not commit everywhere, or honest nodes did not reach one height, in
time); check (another assertion of the scenario); error (an exception: a bug in a replica or the
simulation).
"""

from __future__ import annotations

import logging
import os
import time
import traceback
from collections import Counter
from collections.abc import Callable, Iterable, Iterator
from concurrent.futures import ProcessPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from ledger.crypto import sha256
from tests.sim.adversarial import ADVERSARIAL
from tests.sim.apps import SafetyViolation
from tests.sim.checks import LivenessFailure, describe_nodes
from tests.sim.network import Network, start_transcript, watching
from tests.sim.scenarios import SCENARIOS
from tests.sim.twins import CASES as TWINS_CASES
from tests.sim.twins import describe_case, scenario_twins_round

REGISTRY: dict[str, Callable[[int], None]] = {**SCENARIOS, **ADVERSARIAL, "twins_round": scenario_twins_round}
DRAWN = sorted(REGISTRY)  # the scenarios a bare seed can name
REPO = Path(__file__).resolve().parents[2]
FAILURES_DIR = Path(os.environ.get("SIM_FAILURES_DIR", REPO / "sim-failures"))
OUTCOMES = ("ok", "safety", "liveness", "check", "error")


@dataclass(frozen=True)
class Schedule:
    name: str
    seed: int

    @property
    def label(self) -> str:
        return f"{self.name}:{self.seed}"


def pick(seed: int) -> Schedule:
    """The schedule a bare seed names: its scenario drawn from a hash of the seed."""
    digest = sha256(f"sim-schedule:{seed}".encode())
    return Schedule(DRAWN[int.from_bytes(digest[:8], "big") % len(DRAWN)], seed)


def parse(spec: str) -> Schedule:
    """`name:seed` or a bare seed."""
    name, _, seed = spec.rpartition(":")
    if not name:
        return pick(int(seed))
    if name not in REGISTRY:
        raise ValueError(f"unknown scenario {name!r}; known: {', '.join(DRAWN)}")
    return Schedule(name, int(seed))


def run_seed_from_env() -> int:
    """SIM_SEED if set, else a new seed from the clock (printed by whoever runs the search)."""
    env = os.environ.get("SIM_SEED")
    return int(env) if env else time.time_ns() % 1_000_000_007


def plan(run_seed: int, count: int, twins: bool = True) -> list[Schedule]:
    """`count` schedules: the Twins enumeration first (if `twins` and it fits), then drawn ones."""
    out: list[Schedule] = []
    if twins and count >= len(TWINS_CASES):
        out += [Schedule("twins_round", run_seed * len(TWINS_CASES) + k) for k in range(len(TWINS_CASES))]
    out += [pick(run_seed + i) for i in range(count - len(out))]
    return out


def drawn(run_seed: int) -> Iterator[Schedule]:
    """Schedules without end (a soak): the drawn ones of `plan`."""
    i = 0
    while True:
        yield pick(run_seed + i)
        i += 1


# --- running one ------------------------------------------------------------------------------------


@dataclass
class Result:
    schedule: Schedule
    outcome: str
    message: str = ""
    faults: Counter[str] = field(default_factory=Counter)
    observed: Counter[str] = field(default_factory=Counter)  # what the scenario saw happen (Network.observed)
    steps: int = 0
    messages: int = 0
    cpu_s: float = 0.0
    transcript: Path | None = None


def run(schedule: Schedule, trace: bool = False) -> tuple[Result, list[Network]]:
    """Run one schedule; with `trace`, every network it makes carries a transcript."""
    nets: list[Network] = []

    def watch(net: Network) -> None:
        nets.append(net)
        if trace:
            header = [f"schedule {schedule.label} (replay: make sim SEED={schedule.label})",
                      f"scenario {schedule.name}: {describe(schedule)}"]
            start_transcript(net, header)

    start = time.process_time()
    outcome, message = "ok", ""
    logging.getLogger("ledger.driver").setLevel(logging.ERROR)  # lying peers are expected here
    with watching(watch):
        try:
            REGISTRY[schedule.name](schedule.seed)
        except SafetyViolation as exc:
            outcome, message = "safety", _explain(exc)
        except LivenessFailure as exc:
            outcome, message = "liveness", _explain(exc)
        except AssertionError as exc:
            outcome, message = "check", _explain(exc)
        except Exception as exc:
            outcome, message = "error", _explain(exc)
    result = Result(schedule, outcome, message, cpu_s=time.process_time() - start)
    for net in nets:
        result.faults += net.faults
        result.observed += net.observed
        result.steps += net.time
        result.messages += net.delivered
    return result, nets


def _explain(exc: BaseException) -> str:
    tb = traceback.extract_tb(exc.__traceback__)
    where = next((f"{Path(f.filename).name}:{f.lineno}" for f in reversed(tb) if "tests" in f.filename), "")
    return f"{type(exc).__name__}: {exc} ({where})" if str(exc) else f"{type(exc).__name__} at {where}"


def describe(schedule: Schedule) -> str:
    if schedule.name == "twins_round":
        return describe_case(schedule.seed)
    doc = (REGISTRY[schedule.name].__doc__ or "").strip()
    return " ".join(doc.split())


def write_transcript(result: Result, directory: Path | None = None) -> Path:
    """Run a failed schedule again with a transcript and write it (in FAILURES_DIR by default)."""
    again, nets = run(result.schedule, trace=True)
    path = (directory or FAILURES_DIR) / f"{result.schedule.name}-{result.schedule.seed}.txt"
    footer = [f"outcome: {again.outcome}: {again.message}"]
    if (again.outcome, again.message) != (result.outcome, result.message):
        footer.append(f"(the first run ended otherwise: {result.outcome}: {result.message})")
    footer += [f"faults injected: {dict(again.faults)}"]
    for net in nets:
        footer.append(f"at the end: {describe_nodes(net)}")
        for node in net.nodes:
            chain = " ".join(h.hex()[:8] for h, _ in node.committed[1:])
            footer.append(f"node {node.index} ({node.role}) committed: {chain or '-'}")
    footer.append(f"replay: make sim SEED={result.schedule.label}")
    if not nets or nets[0].trace is None:
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text("\n".join("# " + line for line in footer) + "\n")
        return path
    trace = nets[0].trace
    for extra in nets[1:]:  # scenarios make one network; a second one's lines follow the first's
        if extra.trace is not None:
            trace.head += ["--- another network ---", *extra.trace.head, *extra.trace.tail]
    return trace.write(path, footer)


def _run_and_record(schedule: Schedule) -> Result:
    result, _ = run(schedule)
    if result.outcome != "ok":
        result.transcript = write_transcript(result)
    return result


# --- running many -----------------------------------------------------------------------------------


@dataclass
class Summary:
    run_seed: int
    results: list[Result] = field(default_factory=list)
    wall_s: float = 0.0

    def add(self, result: Result) -> None:
        self.results.append(result)

    def observed(self, scenario: str) -> tuple[int, Counter[str]]:
        """How many schedules of `scenario` ran, and what they saw happen, summed."""
        mine = [r for r in self.results if r.schedule.name == scenario]
        total: Counter[str] = Counter()
        for r in mine:
            total += r.observed
        return len(mine), total

    @property
    def failures(self) -> list[Result]:
        return [r for r in self.results if r.outcome != "ok"]

    def lines(self) -> list[str]:
        results = self.results
        faults: Counter[str] = Counter()
        for r in results:
            faults += r.faults
        cpu = sum(r.cpu_s for r in results)
        out = [f"simulation search, run seed {self.run_seed} (SIM_SEED={self.run_seed} runs it again): "
               f"{len(results)} schedules, {sum(r.steps for r in results):,} steps, "
               f"{sum(r.messages for r in results):,} messages delivered"]
        out.append(f"  {'scenario':<28} {'runs':>5} " + " ".join(f"{o:>8}" for o in OUTCOMES) + "  cpu ms/run")
        for name in sorted({r.schedule.name for r in results}):
            mine = [r for r in results if r.schedule.name == name]
            counts = Counter(r.outcome for r in mine)
            out.append(f"  {name:<28} {len(mine):>5} " + " ".join(f"{counts[o]:>8}" for o in OUTCOMES)
                       + f"  {1000 * sum(r.cpu_s for r in mine) / len(mine):>10.0f}")
        totals = Counter(r.outcome for r in results)
        out.append(f"  {'all':<28} {len(results):>5} " + " ".join(f"{totals[o]:>8}" for o in OUTCOMES)
                   + f"  {1000 * cpu / max(1, len(results)):>10.0f}")
        out.append("faults injected: " + (", ".join(f"{k} {v}" for k, v in sorted(faults.items())) or "none")
                   + f" ({sum(faults.values())} in all)")
        for name in sorted({r.schedule.name for r in results}):
            runs, seen = self.observed(name)
            if seen:
                seen_text = ", ".join(f"{k} {v}" for k, v in sorted(seen.items()))
                out.append(f"observed in {name} ({runs} runs): {seen_text}")
        if self.wall_s:
            out.append(f"time: {self.wall_s:.0f} s wall, {cpu:.0f} s cpu in schedules")
        for r in self.failures:
            out.append(f"FAILED {r.schedule.label}: {r.outcome}: {r.message}")
            out.append(f"  transcript: {r.transcript}; replay: make sim SEED={r.schedule.label}")
        return out


def search(run_seed: int, schedules: Iterable[Schedule], jobs: int = 1, deadline: float | None = None,
           progress: Callable[[Result], None] | None = None) -> Summary:
    """Run `schedules` (in `jobs` processes), until they are done or `deadline` (monotonic) passes."""
    summary = Summary(run_seed)
    start = time.monotonic()
    it = iter(schedules)
    if jobs <= 1:
        for schedule in it:
            if deadline is not None and time.monotonic() > deadline:
                break
            summary.add(_run_and_record(schedule))
            if progress:
                progress(summary.results[-1])
    else:
        with ProcessPoolExecutor(jobs) as pool:
            pending = []
            for schedule in it:
                if deadline is not None and time.monotonic() > deadline:
                    break
                pending.append(pool.submit(_run_and_record, schedule))
                if len(pending) >= 4 * jobs:
                    summary.add(pending.pop(0).result())
                    if progress:
                        progress(summary.results[-1])
            for future in pending:
                summary.add(future.result())
                if progress:
                    progress(summary.results[-1])
    summary.wall_s = time.monotonic() - start
    return summary
