"""A devnet's peer links through relays (`devnet.faultproxy`, a process of its own).

Each validator's config names, for each peer, the relay of that directed link instead of the peer's
own port: the nemesis cuts one validator's links there (its HTTP stays reachable), the benchmark delays
every link by a one-way delay (a wide-area network on one host). Wire a devnet after
`launcher.create` and before its nodes start.

`PeerRelays` lives as long as its owner (the nemesis, the benchmark) and takes commands. `DelayedLinks`
is for `ledger devnet up --link-delay-ms`: a detached relay process on fixed ports, recorded in
`devnet.json` under `links` (`delay_ms`, `pid`) so that `devnet up` restarts it and `devnet down` stops it.
"""

from __future__ import annotations

import contextlib
import json
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

from devnet.processes import free_ports, is_alive, port_free, stop_pid
from devnet.record import DevnetError

Route = tuple[int, int, int]  # (from node, to node, the peer port `to` listens on)


def peer_routes(homes: Sequence[Path]) -> list[Route]:
    """Every directed peer link between the validators of `homes` (their configs name each other directly)."""
    p2p = [json.loads((h / "config.json").read_text())["p2p"]["port"] for h in homes]
    return [(i, j, p2p[j]) for i in range(len(homes)) for j in range(len(homes)) if i != j]


def route_through(homes: Sequence[Path], routes: Sequence[Route], relay_ports: Sequence[int]) -> None:
    """Rewrite each validator's config so that it dials each peer at the relay of that link."""
    relay = {(i, j): port for (i, j, _), port in zip(routes, relay_ports, strict=True)}
    index_of_port = {port: j for _, j, port in routes}
    for i, home in enumerate(homes):
        config = json.loads((home / "config.json").read_text())
        for peer in config["peers"]:
            peer["port"] = relay[(i, index_of_port[peer["port"]])]
        (home / "config.json").write_text(json.dumps(config, indent=2))


class PeerRelays:
    """The relay process of one devnet, and the commands it takes (`cut N`, `heal N`)."""

    def __init__(self, homes: Sequence[Path], delay_ms: float = 0.0) -> None:
        routes = peer_routes(homes)
        self.delay_ms = delay_ms
        self.proxy = subprocess.Popen([sys.executable, "-m", "devnet.faultproxy"], stdin=subprocess.PIPE,
                                      stdout=subprocess.PIPE, text=True, bufsize=1)
        ports = json.loads(self.say(json.dumps({"routes": routes, "delay_ms": delay_ms})))["ports"]
        route_through(homes, routes, ports)

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


class DelayedLinks:
    """The detached relay process of a devnet whose peer links are delayed (see the module's docstring)."""

    SPEC = "links.json"

    def __init__(self, directory: Path, data: dict[str, Any]) -> None:
        self.directory = directory
        self.data = data

    @property
    def wired(self) -> bool:
        return "links" in self.data

    def wire(self, delay_ms: float, first_port: int) -> None:
        """Route every peer link through a relay on a port of its own (from `first_port` up); once per devnet,
        before its nodes first start."""
        homes = [Path(e["home"]) for e in self.data["nodes"]]
        routes = peer_routes(homes)
        listen = free_ports(len(routes), first_port)
        route_through(homes, routes, listen)
        self.data["links"] = {"delay_ms": delay_ms, "pid": None}
        self._write_spec(routes, listen)

    def set_delay(self, delay_ms: float) -> None:
        """A new delay for the next start (the relays of a running devnet are restarted by `start`)."""
        spec = self._spec()
        if spec["delay_ms"] != delay_ms:
            self.stop()
            spec["delay_ms"] = delay_ms
            self._write_spec(spec["routes"], spec["listen"], delay_ms)
            self.data["links"]["delay_ms"] = delay_ms

    def start(self, log_dir: Path) -> None:
        """Start the relays unless they run; wait until each relay port listens."""
        links = self.data["links"]
        if is_alive(links.get("pid")):
            return
        log_dir.mkdir(parents=True, exist_ok=True)
        log = open(log_dir / "relays.log", "ab")  # noqa: SIM115 - owned by the child process
        proc = subprocess.Popen([sys.executable, "-m", "devnet.faultproxy", "--spec", str(self.directory / self.SPEC)],
                                stdout=log, stderr=subprocess.STDOUT, stdin=subprocess.DEVNULL, start_new_session=True)
        links["pid"] = proc.pid
        deadline = time.monotonic() + 15
        for port in self._spec()["listen"]:
            while port_free(port):
                if proc.poll() is not None or time.monotonic() > deadline:
                    raise DevnetError(f"the peer-link relays did not start (see {log_dir / 'relays.log'})")
                time.sleep(0.05)

    def stop(self) -> bool:
        links = self.data.get("links") or {}
        pid = links.get("pid")
        links["pid"] = None
        if pid is not None and is_alive(pid):
            stop_pid(pid)
            return True
        return False

    def _spec(self) -> dict[str, Any]:
        spec: dict[str, Any] = json.loads((self.directory / self.SPEC).read_text())
        return spec

    def _write_spec(self, routes: Sequence[Sequence[int]], listen: Sequence[int],
                    delay_ms: float | None = None) -> None:
        delay = self.data["links"]["delay_ms"] if delay_ms is None else delay_ms
        (self.directory / self.SPEC).write_text(json.dumps(
            {"routes": [list(r) for r in routes], "listen": list(listen), "delay_ms": delay}, indent=1))
