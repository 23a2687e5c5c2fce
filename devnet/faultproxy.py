"""TCP relays on the peer links of a devnet: the nemesis partitions a validator there, the benchmark
delays every link (a wide-area network on one host).

Run as its own process (`python -m devnet.faultproxy`), so relaying never waits for the nemesis's
threads (one interpreter lock). It reads one JSON line on stdin, `{"routes": [[from, to, port],
...], "delay_ms": D}`: one relay per directed peer link, `from` dialing `to` whose peer port is `port`,
each byte delivered D ms after it arrived, in order, in both directions (a one-way delay of D; default
0). It answers one JSON line, `{"ports": [...]}`, the relays' listening ports in the same order
(`devnet.relays` writes them into the nodes' configs). Then it takes commands, one a line, each
answered `ok`:

- `cut N`: node N is partitioned. Bytes on its open connections are dropped, the connections stay
  open (as packets vanishing on a cut cable: the nodes notice only by their heartbeats), and new
  connections to or from it are accepted and never connected through.
- `heal N`: the partition ends. The held connections are closed (the nodes already gave them up);
  new ones are relayed again.
- `quit` (or the end of stdin): stop.

Only peer links pass through the relays: a partitioned node still answers HTTP.

`python -m devnet.faultproxy --spec FILE` runs detached instead (`ledger devnet up --link-delay-ms`): the
same JSON from a file, with `"listen": [...]`, the port of each route's relay (so that the nodes' configs
stay right across restarts), and no commands: it relays until it is stopped (SIGTERM).
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import signal
import sys
from dataclasses import dataclass, field

CHUNK = 1 << 16


@dataclass(eq=False)  # each connection is itself, in a set
class Conn:
    """One relayed connection: the dialer's side, the upstream side once connected."""

    ends: frozenset[int]  # the two nodes of the link
    writers: list[asyncio.StreamWriter] = field(default_factory=list)

    def abort(self) -> None:
        for w in self.writers:
            transport = w.transport
            with contextlib.suppress(Exception):
                transport.abort()


class Relays:
    def __init__(self, delay_s: float = 0.0) -> None:
        self.cut: set[int] = set()
        self.conns: set[Conn] = set()
        self.delay_s = delay_s

    def is_cut(self, ends: frozenset[int]) -> bool:
        return bool(ends & self.cut)

    async def serve(self, src: int, dst: int, target_port: int, listen: int = 0) -> int:
        ends = frozenset((src, dst))

        async def relay(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            conn = Conn(ends, [writer])
            self.conns.add(conn)
            try:
                if self.is_cut(ends):
                    while await reader.read(CHUNK):
                        pass  # held: read and drop until the peer or a heal closes it
                    return
                try:
                    up_reader, up_writer = await asyncio.open_connection("127.0.0.1", target_port)
                except OSError:
                    return
                conn.writers.append(up_writer)
                await asyncio.gather(self._pump(reader, up_writer, ends), self._pump(up_reader, writer, ends))
            finally:
                self.conns.discard(conn)
                conn.abort()

        server = await asyncio.start_server(relay, "127.0.0.1", listen)
        port: int = server.sockets[0].getsockname()[1]
        return port

    async def _pump(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, ends: frozenset[int]) -> None:
        # RuntimeError: uvloop's write on a connection a heal aborted meanwhile (the other direction's end)
        with contextlib.suppress(ConnectionError, OSError, RuntimeError):
            if self.delay_s > 0:
                await self._pump_delayed(src, dst, ends)
            else:
                while chunk := await src.read(CHUNK):
                    if self.is_cut(ends):
                        continue  # dropped, as on a cut cable
                    dst.write(chunk)
                    await dst.drain()
        with contextlib.suppress(Exception):
            dst.close()

    async def _pump_delayed(self, src: asyncio.StreamReader, dst: asyncio.StreamWriter, ends: frozenset[int]) -> None:
        """Each chunk is written `delay_s` after it was read, in order; reading goes on meanwhile, so the
        delay adds latency, not a bandwidth limit (as a long cable does)."""
        loop = asyncio.get_running_loop()
        queue: asyncio.Queue[tuple[float, bytes] | None] = asyncio.Queue()

        async def deliver() -> None:
            while (item := await queue.get()) is not None:
                due, chunk = item
                if (wait := due - loop.time()) > 0:
                    await asyncio.sleep(wait)
                dst.write(chunk)
                await dst.drain()

        sender = asyncio.create_task(deliver())
        try:
            while chunk := await src.read(CHUNK):
                if not self.is_cut(ends):  # dropped on a cut cable
                    queue.put_nowait((loop.time() + self.delay_s, chunk))
            queue.put_nowait(None)
            await sender
        finally:
            sender.cancel()

    def command(self, line: str) -> str:
        verb, _, arg = line.strip().partition(" ")
        if verb == "cut":
            self.cut.add(int(arg))
        elif verb == "heal":
            node = int(arg)
            self.cut.discard(node)
            for conn in [c for c in self.conns if node in c.ends]:
                conn.abort()  # connections cut off during the partition are closed, not resumed
        else:
            return f"error: unknown command {line.strip()!r}"
        return "ok"


async def serve_spec(spec: dict[str, object]) -> tuple[Relays, list[int]]:
    """Relays for every route of `spec`, each on its `listen` port if the spec names them; their ports."""
    routes = spec["routes"]
    assert isinstance(routes, list)
    listen = spec.get("listen") or [0] * len(routes)
    assert isinstance(listen, list) and len(listen) == len(routes)
    relays = Relays(float(spec.get("delay_ms", 0)) / 1000)  # type: ignore[arg-type]
    ports = [await relays.serve(int(src), int(dst), int(port), int(at))
             for (src, dst, port), at in zip(routes, listen, strict=True)]
    return relays, ports


async def detached(spec_path: str) -> None:
    with open(spec_path) as f:
        await serve_spec(json.load(f))
    print(f"relaying, spec {spec_path}", flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    await stop.wait()


async def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] == "--spec":
        await detached(sys.argv[2])
        return
    loop = asyncio.get_running_loop()
    reader = asyncio.StreamReader()
    await loop.connect_read_pipe(lambda: asyncio.StreamReaderProtocol(reader), sys.stdin)
    relays, ports = await serve_spec(json.loads(await reader.readline()))
    print(json.dumps({"ports": ports}), flush=True)
    while line := (await reader.readline()).decode():
        if line.strip() == "quit":
            break
        print(relays.command(line), flush=True)


if __name__ == "__main__":
    try:
        import uvloop
        uvloop.run(main())
    except ImportError:
        asyncio.run(main())
