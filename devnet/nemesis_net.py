"""The nemesis's devnet: 4 validators without Ethereum whose peer links all pass through relays
(`devnet.relays`), and the faults it can do to one of them: a partition cuts exactly the peer links
of one validator and leaves its HTTP alone.
The devnet's members are `admin` and one registrar per load client (`load0`, `load1`, ...).
"""

from __future__ import annotations

import contextlib
import os
import signal
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import replace
from pathlib import Path
from typing import Any

import httpx

from devnet import launcher
from devnet.definition import load_definition
from devnet.processes import any_free_port, is_alive, start_node, stop_pid, wait_healthy
from devnet.record import save_devnet
from devnet.relays import PeerRelays

START_TIMEOUT_S = 180.0  # for a restarted validator to answer /healthz


class NemesisNet:
    def __init__(self, directory: Path, nodes: int, clients: int) -> None:
        self.dir = directory
        if (directory / "devnet.json").exists():
            raise RuntimeError(f"{directory} holds a devnet already: the nemesis builds its own (give a new --dir)")
        base = load_definition()
        definition = replace(
            base,
            members=(("admin", ("admin",)), *((f"load{k}", ("registrar",)) for k in range(clients))),
            anchoring=replace(base.anchoring, chain="none"),
        ).with_overrides(nodes=nodes, http_base_port=any_free_port())
        created = launcher.create(directory, definition)
        self.relays = PeerRelays([Path(n["home"]) for n in created["nodes"]])
        self.data = launcher.up(directory, definition=definition, ethereum="none")
        self.nodes: list[dict[str, Any]] = self.data["nodes"]
        self.urls = [n["http"] for n in self.nodes]

    # --- faults ------------------------------------------------------------------------------------

    def kill(self, i: int) -> None:
        pid = self.nodes[i]["pid"]
        os.kill(pid, signal.SIGKILL)
        deadline = time.monotonic() + 10
        while time.monotonic() < deadline:
            with contextlib.suppress(ChildProcessError):
                os.waitpid(pid, os.WNOHANG)  # reap it if it is our child
            if not is_alive(pid):
                return
            time.sleep(0.02)
        raise RuntimeError(f"node{i} (pid {pid}) did not die after SIGKILL")

    def terminate(self, i: int) -> None:
        stop_pid(self.nodes[i]["pid"])

    def start(self, i: int) -> None:
        node = self.nodes[i]
        proc = start_node(node["home"], self.dir / "logs")
        node["pid"] = proc.pid
        save_devnet(self.dir, self.data)  # so `ledger devnet down --dir` finds the new process
        # A validator restarted on a loaded machine answers late while it catches up: allow for it.
        wait_healthy(node["http"], proc, self.dir / "logs" / f"node{i}.log", timeout=START_TIMEOUT_S)

    def pause(self, i: int) -> None:
        os.kill(self.nodes[i]["pid"], signal.SIGSTOP)

    def resume(self, i: int) -> None:
        os.kill(self.nodes[i]["pid"], signal.SIGCONT)

    def cut(self, i: int) -> None:
        self.relays.cut(i)

    def heal(self, i: int) -> None:
        self.relays.heal(i)

    # --- looking ---------------------------------------------------------------------------------

    def status(self, i: int, timeout: float = 2.0) -> dict[str, Any]:
        body: dict[str, Any] = httpx.get(f"{self.urls[i]}/v1/status", timeout=timeout).json()
        return body

    def primary(self, among: list[int]) -> int | None:
        """The index of the primary that the first answering node in `among` follows."""
        ids = [n["id"] for n in self.nodes]
        for i in among:
            with contextlib.suppress(httpx.HTTPError, ValueError, KeyError):
                return ids.index(self.status(i)["primary"])
        return None

    def linked_since(self, i: int, renewed: int | None = None, after: float = 0.0) -> float | None:
        """Since when (time.time()) node i has had both directions of its link with every other up, as
        its transport recorded it (`connected_since` in GET /v1/network); None while one is down, or
        while a link with node `renewed` dates from before `after` (one its fault broke, not noticed yet)."""
        try:
            # /v1/network probes the peers (up to 1 s for one that does not answer): a timeout above that
            validators = httpx.get(f"{self.urls[i]}/v1/network", timeout=3).json()["validators"]
            peers = [v for v in validators if not v["self"]]
            if not all(v["connected"] for v in peers):
                return None
            since = [v["connected_since"] / 1000 for v in peers]
            if renewed is not None and any(t < after for v, t in zip(peers, since, strict=True)
                                           if i == renewed or v["id"] == self.nodes[renewed]["id"]):
                return None
            return max(since, default=0.0)
        except (httpx.HTTPError, ValueError, KeyError, TypeError):
            return None

    def all_linked(self) -> bool:
        return all(self.linked_since(i) is not None for i in range(len(self.urls)))

    def when_linked(self, timeout: float, renewed: int | None = None, after: float = 0.0) -> float | None:
        """When (time.time()) the last link of all came up, as the validators' transports recorded it
        (not when an answer saying so arrived: a loaded node answers seconds late), each node asked on
        a thread of its own until all its links are up (those with node `renewed` made after `after`);
        None if one's were not within `timeout` s."""
        deadline = time.monotonic() + timeout

        def poll(i: int) -> float | None:
            while time.monotonic() < deadline:
                if (since := self.linked_since(i, renewed, after)) is not None:
                    return since
                time.sleep(0.05)
            return None

        with ThreadPoolExecutor(len(self.urls)) as pool:
            times = list(pool.map(poll, range(len(self.urls))))
        return None if None in times else max(t for t in times if t is not None)

    def stop(self) -> None:
        for node in self.nodes:
            if is_alive(node.get("pid")):
                with contextlib.suppress(ProcessLookupError):
                    os.kill(node["pid"], signal.SIGCONT)  # a paused node must run to act on SIGTERM
        launcher.down(self.dir)
        self.relays.close()
