"""`python -m tests.sim`: search simulated schedules, or replay one (what `make sim` runs).

    python -m tests.sim --schedules 5000 [--jobs 2]   # the Twins enumeration, then drawn schedules
    python -m tests.sim --minutes 60 --jobs 2         # a soak: drawn schedules until time is up
    python -m tests.sim --replay chaos:1234           # one schedule, its transcript written
    SIM_SEED=R python -m tests.sim ...                # the run seed (else drawn from the clock)

Exit status 1 if any schedule failed; each failure's transcript is in sim-failures/.
"""

from __future__ import annotations

import argparse
import itertools
import os
import sys
import time
from collections.abc import Iterator

from tests.sim import search


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m tests.sim", description=__doc__.split("\n")[0])
    parser.add_argument("--schedules", type=int, default=1000, help="how many schedules (default 1000)")
    parser.add_argument("--minutes", type=float, help="run drawn schedules until this much time has passed")
    parser.add_argument("--replay", metavar="SCHEDULE", help="run one schedule (name:seed, or a seed) and "
                        "write its transcript")
    parser.add_argument("--jobs", type=int, default=int(os.environ.get("SIM_JOBS", "1")),
                        help="worker processes (default: SIM_JOBS or 1)")
    parser.add_argument("--no-twins", action="store_true", help="leave out the Twins enumeration")
    args = parser.parse_args(argv)

    if args.replay:
        schedule = search.parse(args.replay)
        print(f"replaying {schedule.label}: {search.describe(schedule)}", flush=True)
        result, _ = search.run(schedule)
        path = search.write_transcript(result)
        print(f"outcome: {result.outcome}{': ' + result.message if result.message else ''}")
        print(f"faults injected: {dict(result.faults)}; {result.steps} steps, {result.messages} messages delivered")
        print(f"transcript: {path}")
        return 0 if result.outcome == "ok" else 1

    run_seed = search.run_seed_from_env()
    print(f"simulation search: run seed {run_seed} (SIM_SEED={run_seed} runs it again)", flush=True)
    if args.minutes:  # the Twins enumeration, then drawn schedules until the time is up
        deadline: float | None = time.monotonic() + 60 * args.minutes
        twins = search.plan(run_seed, len(search.TWINS_CASES), twins=not args.no_twins) if not args.no_twins else []
        source: Iterator[search.Schedule] = itertools.chain(twins, search.drawn(run_seed))
    else:
        deadline = None
        source = iter(search.plan(run_seed, args.schedules, twins=not args.no_twins))
    done = [0]

    def progress(result: search.Result) -> None:
        done[0] += 1
        if result.outcome != "ok":
            print(f"  FAILED {result.schedule.label}: {result.outcome}: {result.message}\n"
                  f"    transcript: {result.transcript}", flush=True)
        if done[0] % 100 == 0:
            print(f"  {done[0]} schedules run", flush=True)

    summary = search.search(run_seed, source, jobs=args.jobs, deadline=deadline, progress=progress)
    print("\n".join(summary.lines()))
    return 1 if summary.failures else 0


if __name__ == "__main__":
    sys.exit(main())
