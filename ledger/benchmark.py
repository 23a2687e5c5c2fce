"""`ledger bench`: a real devnet under load from several members, measured end to end.

It starts N node processes, adds one member (with a prefix) per client, pre-signs the transactions
(identifier registrations; the mixed workload: asset mints, licence grants and transfers in equal parts; or
the market workload: mints, licence grants, listings, licence offers, and purchases of the listed tokens and
of the offered licences, in equal parts, by a buyer member per client holding credits), then has each client
submit its batches over HTTP (msgpack, `wait=true`) to its node. Throughput is counted from the first submit
until every node has committed the last transaction; latency is per transaction, from its request's start
until the node answered that it committed. The ceiling printed beside it, Ed25519 verifications per second
on this machine (all cores), is measured in the same run.

That is a closed loop: a client sends its next batch once the one before committed, so throughput is about
(clients x batch) / latency. With `rate`, an open loop instead (`ledger.openloop`): the requests go out on a
fixed schedule, R tx/s in all, whatever was answered; each request is signed by a member of its own, so that
requests in flight together cannot fail each other's nonces whatever order they reach the primary in.

With a link delay, every peer link passes through a relay (`devnet.relays`) that delivers each byte D ms
after it arrived, both ways: validators in different plants, on one host. (Linux netem on the loopback
device would delay every packet of the host, the clients' HTTP and the relays' too, and needs
CAP_NET_ADMIN; the relay delays exactly the peer links.) With a plot file, each node's committed
transactions (its /metrics) are sampled during the run, and the chart shows committed tx/s and commit
latency over the run, one line per node.
"""

from __future__ import annotations

import collections
import contextlib
import json
import os
import shutil
import statistics
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

import httpx
import msgpack

from devnet import launcher
from devnet.definition import load_definition
from devnet.record import DevnetError
from devnet.relays import PeerRelays
from ledger.bench_members import add_bench_members
from ledger.bench_preload import preload as preload_state
from ledger.chart import Panel, draw
from ledger.client import LedgerClient, Signer
from ledger.codec import encode
from ledger.config import NodeConfig
from ledger.crypto import DOMAIN_TX, SigningKey, signing_digest, verify_digest
from ledger.market.credits import CreditsIssue
from ledger.market.licences import LicenceBuy, LicenceOfferMake, compute_licence_offer_id
from ledger.market.trading import MarketBuy, MarketList
from ledger.members import MemberAdd
from ledger.nft.assets import AssetMint, AssetTransfer
from ledger.nft.rights import LicenceGrant
from ledger.openloop import lag_figures, open_loop_schedule, schedule_seconds, send_on_schedule, steady_rate
from ledger.profiling import Profilers, find_py_spy, write_report
from ledger.resolver.registry import IdRegister, ValueSpec
from ledger.tx import compute_tx_id


def measure_verify_ceiling(seconds: float = 1.0, threads: int | None = None) -> float:
    """Ed25519 verifications per second with one thread per core (libsodium releases the GIL)."""
    key = SigningKey.generate()
    digest = signing_digest(DOMAIN_TX, b"ceiling")
    sig = key.sign_digest(digest)
    threads = threads or os.cpu_count() or 1
    counts = [0] * threads
    stop = time.perf_counter() + seconds

    def work(i: int) -> None:
        n = 0
        while time.perf_counter() < stop:
            for _ in range(200):
                verify_digest(key.public_key, digest, sig)
            n += 200
        counts[i] = n

    started = time.perf_counter()
    workers = [threading.Thread(target=work, args=(i,)) for i in range(threads)]
    for w in workers:
        w.start()
    for w in workers:
        w.join()
    return sum(counts) / (time.perf_counter() - started)


def proc_memory_mb(pid: int, field: str = "VmRSS") -> float:
    """A process's resident memory from /proc: VmRSS in all, RssAnon its own heap, RssFile the pages of mapped
    files (LevelDB maps its table files: that part is the page cache of its reads, shared and reclaimable)."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith(f"{field}:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def _registration(i: int, n: int) -> tuple[str, Any]:
    return "id.register", IdRegister(f"88.900.{i}/EQ-{n:08d}", (ValueSpec(1, "URL", f"https://twin.example/{i}/{n}"),))


def _mixed(keys: list[SigningKey], i: int, n: int) -> tuple[str, Any]:
    """A cycle of mint, licence grant and transfer on the client's own fresh token."""
    token = f"B{i}-{n - n % 3}"
    other = keys[(i + 1) % len(keys)].id
    step = n % 3
    if step == 0:
        return "asset.mint", AssetMint(token, "data", f"https://data.example/{token}", bytes(32), "", "")
    if step == 1:
        month = int(time.time() * 1000) + 30 * 86_400_000
        return "licence.grant", LicenceGrant(token, "", other, ("analytics",), 0, month, False, "", b"")
    return "asset.transfer", AssetTransfer(token, other)


def _setup_buyers(net: dict[str, Any], keys: list[SigningKey]) -> list[SigningKey]:
    """For the market workload: a buyer member per client, with credits from the devnet's treasury."""
    client = LedgerClient(net["nodes"][0]["http"])
    admin = Signer(SigningKey.load(net["keys"]["admin"]), client)
    buyers = [SigningKey.generate() for _ in keys]
    for i, key in enumerate(buyers):
        admin.send("member.add", MemberAdd(f"buyer{i}", key.public_key, ()))
        admin.send("credits.issue", CreditsIssue(key.id, 10**12))
    client.close()
    return buyers


def _market_batches(net: dict[str, Any], seller: SigningKey, buyer: SigningKey, other: str, i: int, count: int,
                    batch: int) -> list[list[bytes]]:
    """A client's batches for the market workload: each batch mints, licenses, lists and offers licences on
    fresh tokens (seller), and buys the tokens and licences the batch before listed and offered (buyer). The
    client sends a batch once the one before committed, so every purchase finds its listing."""
    from ledger.tx import make_tx

    month = int(time.time() * 1000) + 30 * 86_400_000
    per_token = 6
    nonces = {seller.id: 0, buyer.id: 0}
    batches: list[list[bytes]] = []
    previous: list[tuple[str, str]] = []  # (token, licence offer id) of the batch before
    made = 0

    def sign(key: SigningKey, kind: str, payload: Any) -> bytes:
        nonces[key.id] += 1
        return encode(make_tx(key, net["chain_id"], nonces[key.id], kind, payload))

    while made < count:
        raws: list[bytes] = []
        current = []
        for n in range(max(1, batch // per_token)):
            token = f"M{i}-{made + n}"
            raws.append(sign(seller, "asset.mint", AssetMint(token, "data", f"https://data.example/{token}",
                                                             bytes(32), "", "")))
            raws.append(sign(seller, "licence.grant", LicenceGrant(token, "", other, ("analytics",), 0, month, False,
                                                                   "", b"")))
            raws.append(sign(seller, "market.list", MarketList(token, 100, month)))
            offer_raw = sign(seller, "market.licence_offer", LicenceOfferMake(
                token, "", ("training",), 86_400_000, False, "", b"", 10, 1, month, 0))
            raws.append(offer_raw)
            current.append((token, compute_licence_offer_id(compute_tx_id(offer_raw))))
        for token, offer in previous:  # the licence first: once the token is sold, its seller grants no roots
            raws.append(sign(buyer, "market.licence_buy", LicenceBuy(offer, 10)))
            raws.append(sign(buyer, "market.buy", MarketBuy(token, 100)))
        raws = raws[:count - made]  # exactly `count` in all
        made += len(raws)
        batches.append(raws)
        previous = current
    return batches


def _presign(
    net: dict[str, Any], keys: list[SigningKey], txs: int, batch: int, workload: str = "register",
    buyers: list[SigningKey] | None = None,
) -> list[list[bytes]]:
    """Each client's request bodies (msgpack arrays of canonical signed txs), in nonce order."""
    from ledger.tx import make_tx

    per_client = [txs // len(keys) + (1 if i < txs % len(keys) else 0) for i in range(len(keys))]
    bodies: list[list[bytes]] = []
    for i, (key, count) in enumerate(zip(keys, per_client, strict=True)):
        if workload == "market" and buyers is not None:
            other = keys[(i + 1) % len(keys)].id
            batches = _market_batches(net, key, buyers[i], other, i, count, batch)
            bodies.append([msgpack.packb(b, use_bin_type=True) for b in batches])
            continue
        raws = []
        for n in range(count):
            kind, payload = _registration(i, n) if workload == "register" else _mixed(keys, i, n)
            raws.append(encode(make_tx(key, net["chain_id"], n + 1, kind, payload)))
        bodies.append([msgpack.packb(raws[j : j + batch], use_bin_type=True) for j in range(0, count, batch)])
    return bodies


def presign_one_request_each(net: dict[str, Any], keys: list[SigningKey], txs: int, batch: int, clients: int,
                             workload: str) -> list[list[bytes]]:
    """The open loop's request bodies per client: sender j's transactions (at most `batch`, nonces from 1)
    make request j, and client i sends requests i, i + C, i + 2C, ..."""
    if len(keys) * batch < txs:
        raise ValueError(f"{len(keys)} senders cannot carry {txs} transactions in requests of {batch}")
    one_each = _presign(net, keys, txs, batch, workload)
    return [[b for bodies in one_each[i::clients] for b in bodies] for i in range(clients)]


class Sampler(threading.Thread):
    """Each node's committed transactions (counted by its /metrics), every `every` seconds until stopped."""

    def __init__(self, urls: list[str], every: float = 0.5) -> None:
        super().__init__(daemon=True)
        self.urls, self.every = urls, every
        self.samples: list[list[tuple[float, int]]] = [[] for _ in urls]  # (time.perf_counter(), count) per node
        self.halt = threading.Event()

    def run(self) -> None:
        with httpx.Client(timeout=5) as http:
            while not self.halt.is_set():
                for i, url in enumerate(self.urls):
                    with contextlib.suppress(httpx.HTTPError, ValueError):
                        self.samples[i].append((time.perf_counter(), committed_count(http.get(f"{url}/metrics").text)))
                self.halt.wait(self.every)


def committed_count(metrics: str) -> int:
    """Transactions a node committed (succeeded or failed), from its Prometheus text."""
    total = 0.0
    for line in metrics.splitlines():
        name, _, value = line.partition(" ")
        if name in ("ledger_tx_committed_total", "ledger_tx_failed_total"):
            total += float(value)
    return int(total)


def block_figures(metrics: str) -> dict[str, Any]:
    """From a node's Prometheus text: blocks committed, transactions per block, the mean time to write and
    apply a block, and the consensus replica's event counters (timers that fired, messages dropped) that are
    not zero: what to look at when a run commits less than it was offered."""
    values: dict[str, float] = {}
    events: dict[str, int] = {}
    for line in metrics.splitlines():
        name, _, value = line.rpartition(" ")
        if line.startswith("#") or not name:
            continue
        if name.startswith("ledger_consensus_total{"):
            event = name.split('"')[1] if '"' in name else name
            if float(value):
                events[event] = int(float(value))
        else:
            values[name] = float(value)
    blocks = values.get("ledger_blocks_committed_total", 0.0)
    txs = values.get("ledger_tx_committed_total", 0.0) + values.get("ledger_tx_failed_total", 0.0)
    count = values.get("ledger_block_commit_seconds_count", 0.0)
    return {
        "blocks": int(blocks),
        "txs_per_block": round(txs / blocks, 1) if blocks else None,
        "block_commit_ms_mean": round(values.get("ledger_block_commit_seconds_sum", 0.0) / count * 1000, 1)
        if count else None,
        "consensus_events": events,
    }


def rate_series(samples: list[tuple[float, int]], origin: float) -> list[tuple[float, float]]:
    """(seconds since `origin`, tx/s since the previous sample) for each sample after the first."""
    return [(t1 - origin, (c1 - c0) / (t1 - t0)) for (t0, c0), (t1, c1) in zip(samples, samples[1:], strict=False)
            if t1 > t0]


def latency_series(done: list[tuple[float, float]], origin: float, bucket: float = 1.0) -> list[tuple[float, float]]:
    """(seconds since `origin`, median latency in ms) of the requests that ended in each `bucket` seconds."""
    buckets: dict[int, list[float]] = {}
    for ended, seconds in done:
        buckets.setdefault(int((ended - origin) // bucket), []).append(seconds * 1000)
    return [((k + 0.5) * bucket, statistics.median(v)) for k, v in sorted(buckets.items())]


def plot_run(path: Path, sampler: Sampler, done: list[list[tuple[float, float]]], origin: float, title: str) -> None:
    rates = Panel("committed transactions per second, per node",
                  {f"node{i}": rate_series(s, origin) for i, s in enumerate(sampler.samples)})
    latency = Panel("commit latency, ms (median of the requests answered by each node, per second)",
                    {f"node{i}": latency_series(d, origin) for i, d in enumerate(done) if d})
    draw(path, [rates, latency], "seconds since the first request", title)


def rates_by_share(ends: list[tuple[float, int]], origin: float, parts: int = 10) -> list[float]:
    """Committed tx/s over each successive `parts`-th of the transactions, in the order their requests were
    answered: how throughput changes as the state grows (the last part runs on the fullest state).
    `ends`: (time a request was answered, transactions it committed)."""
    total = sum(n for _, n in ends)
    if total == 0:
        return []
    rates: list[float] = []
    done, start, count = 0, origin, 0
    for ended, n in sorted(ends):
        done += n
        count += n
        if done * parts >= (len(rates) + 1) * total:
            rates.append(round(count / (ended - start), 1) if ended > start else 0.0)
            start, count = ended, 0
    return rates


def _set_exports(home: Path, every: int) -> None:
    path = home / "config.json"
    config = json.loads(path.read_text())
    config["sync"] = {**config.get("sync", {}), "export_every": every, "export_min_interval_s": 0}
    path.write_text(json.dumps(config, indent=2) + "\n")


def set_node_setting(homes: list[Path], name: str, value: Any) -> None:
    """Write one setting into each node's config.json (before the nodes start)."""
    for home in homes:
        config = json.loads((home / "config.json").read_text())
        config[name] = value
        (home / "config.json").write_text(json.dumps(config, indent=2))


def committed_rate(committed: int, seconds: float) -> float:
    return round(committed / seconds, 1)


def _open_loop_figures(rate: float, sizes: list[list[int]], sends: list[Any], lags: list[float],
                       answered: list[tuple[float, int]], started: float, committed: int,
                       elapsed: float) -> dict[str, Any]:
    """What an open-loop run offered and what its senders managed: the offered rate, how long the schedule
    ran, the committed rate while it ran, and how far behind schedule the requests went out."""
    span = schedule_seconds(sizes, rate)
    return {
        "load": "open loop",
        "offered_tx_per_s": rate,
        "schedule_s": round(span, 3),
        "requests": len(sends),
        # Committed over the whole run (ramp and drain included) against what was offered: below 1, the
        # ledger (or the senders) did not keep up.
        "committed_of_offered": round(committed / elapsed / rate, 3) if elapsed > 0 else None,
        "steady_committed_tx_per_s": steady_rate(answered, started, span),
        "send_lag": lag_figures(lags, span / max(1, len(sends))),
    }


def run_bench(
    nodes: int, txs: int, clients: int, batch: int, batch_wait_ms: int = 30, workload: str = "register",
    link_delay_ms: float = 0.0, plot: Path | None = None, base_port: int = 18700, profile: Path | None = None,
    export_every: int | None = None,
    eager_inflight: int | None = None,
    preload: int = 0,
    rate: float | None = None,
    relay_links: bool = False,
    open_tables: int | None = None,
    table_mb: int | None = None,
) -> dict[str, Any]:
    """`export_every`: each node's `sync.export_every`, with no minimum interval (None: the nodes' defaults).
    `rate`: an open loop offering that many tx/s in all (`ledger.openloop`); None: the closed loop.
    `preload`: identifiers registered before the timed load (ledger/bench_preload.py).
    `relay_links`: every peer link through the relays even with no delay (the baseline of delayed runs, the
    relay's own cost included). `open_tables`: each node's `leveldb_open_files`, `table_mb` its `leveldb_table_mb`
    (None: the defaults)."""
    if rate is not None and workload == "market":
        raise ValueError("the market workload runs only as a closed loop: its purchases need the batch before "
                         "committed")
    log = sys.stderr
    if profile is not None:
        find_py_spy()  # before anything starts: say at once if it is missing
    print("measuring the Ed25519 verification ceiling...", file=log)
    ceiling = measure_verify_ceiling()
    per_core = measure_verify_ceiling(threads=1)
    directory = Path(tempfile.mkdtemp(prefix="ledger-bench-"))
    relays: PeerRelays | None = None
    try:
        print(f"starting a {nodes}-node devnet in {directory}...", file=log)
        # No anchoring: the figures are the ledger's own.
        overrides: dict[str, Any] = {"base_port": base_port, "batch_size": 2000, "batch_wait_ms": batch_wait_ms}
        definition = load_definition().with_overrides(nodes, base_port, 2000, batch_wait_ms)
        homes = [Path(n["home"]) for n in launcher.create(directory, definition)["nodes"]]
        if eager_inflight is not None:
            set_node_setting(homes, "batch_eager_inflight", eager_inflight)
        if open_tables is not None:
            set_node_setting(homes, "leveldb_open_files", open_tables)
        if table_mb is not None:
            set_node_setting(homes, "leveldb_table_mb", table_mb)
        if export_every is not None:
            for home in homes:
                _set_exports(home, export_every)
            print(f"every node exports its state every {export_every} heights", file=log)
        if link_delay_ms > 0 or relay_links:
            relays = PeerRelays(homes, link_delay_ms)
            print(f"every peer link through a relay, delayed {link_delay_ms:g} ms each way", file=log)
        net = launcher.up(directory, nodes, ethereum="none", **overrides)
        preloaded = preload_state(net, preload, log=log) if preload > 0 else {"preloaded": 0}
        if rate is None:
            keys = add_bench_members(net, clients, "bench", "88.900", ("issuer", "registrar"))
            buyers = _setup_buyers(net, keys) if workload == "market" else None
            print(f"pre-signing {txs} {workload} transactions from {clients} members...", file=log)
            bodies = _presign(net, keys, txs, batch, workload, buyers)
        else:
            requests = -(-txs // batch)
            print(f"adding {requests} senders, one per request...", file=log)
            # A member per request: requests in flight together may reach the primary in any order (a backup
            # forwards its clients' transactions), and one sender's later nonces ordered first fail for the gap.
            keys = add_bench_members(net, requests, "bench", "88.900", ("issuer", "registrar"))
            print(f"pre-signing {txs} {workload} transactions from {requests} members...", file=log)
            bodies = presign_one_request_each(net, keys, txs, batch, clients, workload)
        latencies: list[float] = []
        answered: list[tuple[float, int]] = []  # (when, transactions committed) per request
        done: list[list[tuple[float, float]]] = [[] for _ in range(nodes)]  # per node: (ended, seconds)
        failures: list[str] = []
        lock = threading.Lock()

        https = [httpx.Client(base_url=net["nodes"][i % nodes]["http"], timeout=180,
                              limits=httpx.Limits(max_connections=None, max_keepalive_connections=64))
                 for i in range(clients)]
        last_ids: dict[int, tuple[int, str]] = {}  # client -> (its latest request answered, its last ordered tx)

        def post(i: int, k: int, t0: float) -> None:
            try:
                r = https[i].post("/v1/tx", content=bodies[i][k], params={"wait": "true", "timeout": "120"},
                                  headers={"content-type": "application/msgpack"})
                answer = r.json()
            except (httpx.HTTPError, ValueError) as exc:
                answer = {"error": f"unanswered: {type(exc).__name__}"}
            ended = time.perf_counter()
            elapsed = ended - t0
            results = answer.get("results", [])
            ok = [x for x in results if x.get("status") == "committed" and x.get("ok")]
            with lock:
                latencies.extend([elapsed] * len(ok))
                answered.append((ended, len(ok)))
                done[i % nodes].append((ended, elapsed))
                failures.extend(x.get("reason") or x.get("status", "?") for x in results if x not in ok)
                if "results" not in answer:  # refused whole (overloaded, too large) or no answer: every tx of it
                    failures.extend([str(answer.get("error", "?"))] * len(msgpack.unpackb(bodies[i][k])))
                ordered = [x for x in results if x.get("status") == "committed"]  # refused ones never commit
                if ordered and k >= last_ids.get(i, (-1, ""))[0]:
                    last_ids[i] = (k, ordered[-1]["tx_id"])

        def client_loop(i: int) -> None:
            for k in range(len(bodies[i])):
                post(i, k, time.perf_counter())

        print("submitting...", file=log)
        sampler = Sampler([n["http"] for n in net["nodes"]]) if plot is not None else None
        profilers = None
        if profile is not None:
            profilers = Profilers({f"node{i}": n["pid"] for i, n in enumerate(net["nodes"])}, profile)
            print(f"sampling every node with py-spy into {profile}", file=log)
        sizes = [[len(msgpack.unpackb(b)) for b in client_bodies] for client_bodies in bodies]
        sends = open_loop_schedule(sizes, rate) if rate is not None else []
        if sampler is not None:
            sampler.start()
        started = time.perf_counter()
        lags: list[float] = []
        if rate is not None:
            lags = send_on_schedule(sends, lambda request, t0: post(request.client, request.number, t0))
        else:
            threads = [threading.Thread(target=client_loop, args=(i,)) for i in range(clients)]
            for t in threads:
                t.start()
            for t in threads:
                t.join()
        for http in https:
            http.close()
        # Done when every node has committed every client's last transaction.
        for n in net["nodes"]:
            with httpx.Client(base_url=n["http"], timeout=10) as http:
                for _, tx_id in last_ids.values():
                    while http.get(f"/v1/tx/{tx_id}").json().get("status") != "committed":
                        time.sleep(0.01)
        elapsed = time.perf_counter() - started
        if profilers is not None and profile is not None:
            title = (f"ledger bench: {nodes} validators, {workload}, {txs:,} transactions, "
                     f"{committed_rate(len(latencies), elapsed)} committed tx/s while sampled")
            written = write_report(profile, profilers.stop(), title)
            print("profile written to " + ", ".join(str(p) for p in written), file=log)
        if sampler is not None and plot is not None:
            sampler.halt.set()
            sampler.join()
            plot_run(plot, sampler, done, started, f"ledger bench: {nodes} validators, {workload}, "
                     f"{txs:,} transactions, peer links delayed {link_delay_ms:g} ms each way")
            print(f"chart written to {plot}", file=log)
        pids = [n["pid"] for n in net["nodes"] if n.get("pid")]
        rss = max(proc_memory_mb(p) for p in pids)
        anon = max(proc_memory_mb(p, "RssAnon") for p in pids)
        mapped = max(proc_memory_mb(p, "RssFile") for p in pids)
        committed = len(latencies)
        latencies.sort()
        exports = [httpx.get(f"{n['http']}/v1/status", timeout=30).json()["state_exports"]["made"]
                   for n in net["nodes"]]
        node0 = block_figures(httpx.get(f"{net['nodes'][0]['http']}/metrics", timeout=30).text)
        return {
            "nodes": nodes,
            "workload": workload,
            "txs": txs,
            "clients": clients,
            "batch": batch,
            "link_delay_ms": link_delay_ms,
            "links": "relays" if relays is not None else "direct",
            "eager_inflight": NodeConfig.load(homes[0]).batch_eager_inflight,
            "open_tables": NodeConfig.load(homes[0]).leveldb_open_files,
            "table_mb": NodeConfig.load(homes[0]).leveldb_table_mb,
            "committed": committed,
            "failed": len(failures),
            "failure_reasons": dict(collections.Counter(failures)),
            "seconds": round(elapsed, 3),
            "committed_tx_per_s": committed_rate(committed, elapsed),
            "tx_per_s_by_tenth": rates_by_share(answered, started),
            "p50_ms": round(statistics.median(latencies) * 1000, 1) if latencies else None,
            "p99_ms": round(latencies[int(0.99 * (len(latencies) - 1))] * 1000, 1) if latencies else None,
            "verify_ceiling_tx_per_s": round(ceiling, 1),
            "verify_per_core_per_s": round(per_core, 1),
            "max_node_rss_mb": round(rss, 1),
            "max_node_anon_mb": round(anon, 1),
            "max_node_mapped_files_mb": round(mapped, 1),
            "node0_blocks": node0,  # the view-0 primary's blocks and consensus events, setup included
            "state_exports_made": exports,  # per node, during setup and load (ledger/snapshot/exports.py)
            **preloaded,
            **(_open_loop_figures(rate, sizes, sends, lags, answered, started, committed, elapsed)
               if rate is not None else {"load": "closed loop"}),
            **({"plot": str(plot)} if plot is not None else {}),
            **({"profile": str(profile)} if profile is not None else {}),
        }
    finally:
        with contextlib.suppress(DevnetError):
            launcher.down(directory)
        if relays is not None:
            relays.close()
        shutil.rmtree(directory, ignore_errors=True)
