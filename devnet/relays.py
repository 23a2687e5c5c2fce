"""A devnet's peer links through relays (`devnet.faultproxy`, a process of its own).

Each validator's config names, for each peer, the relay of that directed link instead of the peer's
own port: the nemesis cuts one validator's links there (its HTTP stays reachable), the benchmark delays
every link by a one-way delay (a wide-area network on one host). Wire a devnet after
`launcher.create` and before its nodes start.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
from collections.abc import Sequence
from pathlib import Path


class PeerRelays:
    """The relay process of one devnet, and the commands it takes (`cut N`, `heal N`)."""

    def __init__(self, homes: Sequence[Path], delay_ms: float = 0.0) -> None:
        configs = [json.loads((h / "config.json").read_text()) for h in homes]
        p2p = [c["p2p"]["port"] for c in configs]
        routes = [(i, j, p2p[j]) for i in range(len(homes)) for j in range(len(homes)) if i != j]
        self.delay_ms = delay_ms
        self.proxy = subprocess.Popen([sys.executable, "-m", "devnet.faultproxy"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1)
        ports = json.loads(self.say(json.dumps({"routes": routes, "delay_ms": delay_ms})))["ports"]
        relay = {(i, j): port for (i, j, _), port in zip(routes, ports, strict=True)}
        index_of_port = {port: j for j, port in enumerate(p2p)}
        for i, (home, config) in enumerate(zip(homes, configs, strict=True)):
            for peer in config["peers"]:
                peer["port"] = relay[(i, index_of_port[peer["port"]])]
            (home / "config.json").write_text(json.dumps(config, indent=2))

    def say(self, line: str) -> str:
        assert self.proxy.stdin is not None and self.proxy.stdout is not None
        self.proxy.stdin.write(line + "\n")
        self.proxy.stdin.flush()
        answer = self.proxy.stdout.readline().strip()
        if not answer or answer.startswith("error"):
            raise RuntimeError(f"fault proxy answered {answer!r} to {line!r}")
        return answer

    def cut(self, i: int) -> None:
        self.say(f"cut {i}")

    def heal(self, i: int) -> None:
        self.say(f"heal {i}")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.say("quit")
        with contextlib.suppress(subprocess.TimeoutExpired):
            self.proxy.wait(5)
        if self.proxy.poll() is None:
            self.proxy.kill()
            self.proxy.wait()
