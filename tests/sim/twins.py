"""Twins scenarios enumerated systematically, as the Twins paper (Bano et al., 2020) does.

Twins: one validator's key runs on two nodes (each with its own clients and its own view of the
network), which is how a Byzantine validator's equivocation looks from outside. A case is a choice
of the twinned validator and of a partition for each round:

- the twinned validator t in 0..3: validator t is the primary of view t (mod 4), so across the
  cases the twins lead view 0, 1, 2 and 3, the views partitions push the replicas through;
- per round, one of 9 partitions: none, or the original twin on side A, its copy on side B and
  each of the 3 honest validators on either side (2^3 ways), both sides active with clients.

`ROUNDS` rounds give 4 x 9^ROUNDS cases: 324 for two rounds, which CI runs in full every time
(tests/test_sim_search.py), each with timings and delays drawn from that run's seed. A round lasts
long enough for view changes to happen in it. After the last round the network heals, and the
honest nodes must commit every transaction honest clients sent, at one height; safety is checked
throughout by the network.
"""

from __future__ import annotations

import itertools

from tests.sim.checks import clients_go_on, finish, make_txs
from tests.sim.network import Network

ROUNDS = 2
N = 4
# None: no partition; otherwise, for each honest validator (in order), whether it is on side B.
PARTITIONS: tuple[tuple[bool, ...] | None, ...] = (None, *itertools.product((False, True), repeat=N - 1))
CASES: tuple[tuple[int, tuple[tuple[bool, ...] | None, ...]], ...] = tuple(
    (twinned, rounds) for twinned in range(N) for rounds in itertools.product(PARTITIONS, repeat=ROUNDS)
)


def describe_case(index: int) -> str:
    twinned, rounds = CASES[index % len(CASES)]
    honest = [i for i in range(N) if i != twinned]
    parts = []
    for p in rounds:
        if p is None:
            parts.append("no partition")
        else:
            a = [twinned] + [h for h, b in zip(honest, p, strict=True) if not b]
            b = [N] + [h for h, b in zip(honest, p, strict=True) if b]
            parts.append(f"{a} | {b}")
    return f"validator {twinned} twinned (node {N} is its copy); rounds: " + "; ".join(parts)


def scenario_twins_round(seed: int) -> None:
    """Case `seed % len(CASES)` of the enumeration, with the network's draws from `seed`."""
    twinned, rounds = CASES[seed % len(CASES)]
    net = Network(N, seed, twins=(twinned,), drop=0.02)
    copy = N  # the twin's second node
    honest = [i for i in range(N) if i != twinned]
    sent: list[bytes] = []
    for r, partition in enumerate(rounds):
        if partition is None:
            net.heal()
            sides = [honest + [twinned, copy]]
        else:
            side_a = [twinned] + [h for h, on_b in zip(honest, partition, strict=True) if not on_b]
            side_b = [copy] + [h for h, on_b in zip(honest, partition, strict=True) if on_b]
            net.partition(side_a, side_b)
            sides = [side_a, side_b]
        for k in range(net.rng.randint(3, 6)):
            for s, side in enumerate(sides):
                on_side = [i for i in side if i in honest]
                if on_side:
                    batch = make_txs(f"twins-{r}-{k}-{s}", 2)
                    net.submit(batch, net.rng.choice(on_side))
                    sent += batch
            net.submit([f"twin-{r}-{k}".encode()], twinned)
            net.submit([f"copy-{r}-{k}".encode()], copy)
            net.run(net.rng.randint(10, 30))
        net.run(net.rng.randint(150, 400))
    net.heal()
    clients_go_on(net, sent)
    finish(net)
