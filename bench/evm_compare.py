"""The ledger beside Ethereum on the same machine, one after the other in one run (issue 17's first target).

(a) Anvil: starts a local Anvil (contracts/node_modules; interval mining, a block every 0.1 s), deploys
    BenchNFT (OpenZeppelin's ERC721, contracts/build/BenchNFT.json) with the minters fixed at deployment,
    pre-signs N `mint(to, id)` transactions (EIP-1559, each minter minting to itself, nonces in order per
    minter) from --clients x --accounts-per-client funded accounts, and has each client thread send its
    accounts' raw transactions in JSON-RPC batches of --rpc-batch, one batch after the other, as fast as Anvil
    answers. A watcher polls every minter's mined nonce (one JSON-RPC batch of eth_getTransactionCount
    "latest" every --poll-ms), so a mint's latency runs from the start of the request that sent it until the
    poll that saw it mined; throughput counts from the first send until the last mint was seen mined.
    Afterwards every receipt is read: only mints with status 1 count, and the owners' balanceOf must add up to
    them. Anvil is then stopped.
(b) The ledger: `ledger.benchmark.run_bench(nodes=4, workload="mixed")` with the same number of transactions
    (asset mints, licence grants and transfers in equal parts; a devnet of 4 validator processes).
(c) One JSON line per system, then one with the ratio (ledger committed tx/s over Anvil mints/s), the issue's
    target (3.0, with the ledger's p99 under 1 s) and the load average before and after each part.

Anvil's mining, chosen for its best honest figure on this machine (block gas limit left at its default, 30M,
room for about 555 mints a block): a block every 0.1 s. Automine (a block whenever transactions arrive) and
mixed mining stall here: once the pool holds more than a block's worth, Anvil 1.7.1 leaves the rest pending
until another transaction arrives, so the last mints are never mined. Interval mining every 1 s caps Anvil at
one full block a second (about 540 mints/s); every 0.2 s and 0.05 s measured lower than 0.1 s. Eight client
threads in JSON-RPC batches of 20 measured higher than 4 x 50, 4 x 200 or 16 x 10.

The two never run at the same time: they would share the 2 cores. Progress goes to stderr.

    .venv/bin/python bench/evm_compare.py [--txs N] [--clients C] [--anvil-only | --ledger-only] [--ledger-first]
        [--mining interval|auto|mixed] [--block-time S] [--rpc-batch B] [--ledger-clients M]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import httpx
from eth_account import Account
from eth_account.signers.local import LocalAccount
from eth_utils import keccak, to_checksum_address

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

from devnet.ethereum import ANVIL, DEV_CHAIN_ID, anvil_running  # noqa: E402 - after the path is set
from devnet.record import DevnetError  # noqa: E402

ARTIFACT = REPO / "contracts" / "build" / "BenchNFT.json"
CHAIN_ID = DEV_CHAIN_ID
MINT_SELECTOR = bytes.fromhex("40c10f19")  # mint(address,uint256)
BALANCE_OF_SELECTOR = bytes.fromhex("70a08231")  # balanceOf(address)
FUNDS_WEI = 10**6 * 10**18  # set with anvil_setBalance: no funding transactions to wait for
MAX_FEE_WEI = 1_000 * 10**9  # far above any base fee the run reaches: no mint waits for a cheaper block
TIP_WEI = 10**9
TARGET_RATIO = 3.0  # issue 17: the ledger's committed tx/s at least 3.0 times Anvil's mints/s ...
TARGET_P99_MS = 1000.0  # ... with the ledger's p99 commit latency under 1 s


class BenchError(RuntimeError):
    """A run that cannot give an honest figure (Anvil missing or refusing, mints lost); the message says why."""


# --------------------------------------------------------------------------------------------------
# Anvil and JSON-RPC
# --------------------------------------------------------------------------------------------------


def anvil_version() -> str:
    out = subprocess.run([str(ANVIL), "--version"], capture_output=True, text=True, timeout=30, check=False).stdout
    return out.splitlines()[0].removeprefix("anvil Version: ") if out else "?"


MINING_MODES = ("auto", "interval", "mixed")


def mining_flags(mining: str, block_time: float) -> list[str]:
    """Anvil's flags for a mining mode: `auto` mines a block whenever transactions arrive; `interval` one every
    `block_time` s; `mixed` both (automine, and a block every `block_time` s for what automine left)."""
    if mining not in MINING_MODES:
        raise BenchError(f"mining must be one of {', '.join(MINING_MODES)}, not {mining!r}")
    if mining == "auto":
        return []
    return (["--mixed-mining"] if mining == "mixed" else []) + ["--block-time", f"{block_time:g}"]


@contextlib.contextmanager
def anvil(mining: str = "auto", block_time: float = 1.0, log_dir: Path | None = None) -> Iterator[str]:
    """A local Anvil (see mining_flags), quiet (no line per transaction), otherwise with its defaults; yields its
    RPC URL; stopped on exit. (Not `--prune-history`: with it, a read at "latest" raced the next block and
    failed with BlockOutOfRangeError.)"""
    flags = ["--quiet", *mining_flags(mining, block_time)]
    with tempfile.TemporaryDirectory(prefix="evm-compare-") as tmp:
        try:
            with anvil_running((log_dir or Path(tmp)) / "anvil.log", *flags) as url:
                yield url
        except DevnetError as exc:
            raise BenchError(str(exc)) from exc


def rpc(url: str, method: str, *params: Any, http: httpx.Client | None = None) -> Any:
    """One JSON-RPC call; its `result`, or BenchError with the node's error."""
    body = {"jsonrpc": "2.0", "id": 1, "method": method, "params": list(params)}
    r = http.post(url, json=body) if http is not None else httpx.post(url, json=body, timeout=30)
    answer = r.json()
    if "error" in answer:
        raise BenchError(f"{method}: {answer['error']}")
    return answer["result"]


def rpc_batch(http: httpx.Client, url: str, calls: list[tuple[str, list[Any]]]) -> list[dict[str, Any]]:
    """A JSON-RPC batch; the answers in the order of `calls` (a batch's answers may come in any order)."""
    body = [{"jsonrpc": "2.0", "id": i, "method": m, "params": p} for i, (m, p) in enumerate(calls)]
    answers = http.post(url, json=body).json()
    if not isinstance(answers, list):
        raise BenchError(f"batch refused: {answers}")
    by_id = {a.get("id"): a for a in answers}
    return [by_id.get(i, {"error": "no answer"}) for i in range(len(calls))]


def wait_receipt(url: str, tx_hash: str, timeout: float = 60.0) -> dict[str, Any]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        receipt = rpc(url, "eth_getTransactionReceipt", tx_hash)
        if receipt is not None:
            return dict(receipt)
        time.sleep(0.05)
    raise BenchError(f"transaction {tx_hash} not mined within {timeout:g} s")


# --------------------------------------------------------------------------------------------------
# The contract and the mints
# --------------------------------------------------------------------------------------------------


def _word(value: int | bytes) -> bytes:
    return value.to_bytes(32, "big") if isinstance(value, int) else value.rjust(32, b"\0")


def mint_calldata(to: str, token_id: int) -> bytes:
    return MINT_SELECTOR + _word(bytes.fromhex(to.removeprefix("0x"))) + _word(token_id)


def deploy(url: str, deployer: LocalAccount, minters: list[str]) -> str:
    """Deploy BenchNFT with `minters`; its address."""
    artifact = json.loads(ARTIFACT.read_text())
    # constructor(address[] minters): offset, length, then the addresses
    args = _word(32) + _word(len(minters)) + b"".join(_word(bytes.fromhex(m[2:])) for m in minters)
    data = bytes.fromhex(artifact["bytecode"].removeprefix("0x")) + args
    nonce = int(rpc(url, "eth_getTransactionCount", deployer.address, "latest"), 16)
    tx: dict[str, Any] = {"type": 2, "chainId": CHAIN_ID, "nonce": nonce, "data": data, "gas": 5_000_000,
          "maxFeePerGas": MAX_FEE_WEI, "maxPriorityFeePerGas": TIP_WEI, "value": 0}
    raw = deployer.sign_transaction(tx).raw_transaction
    receipt = wait_receipt(url, rpc(url, "eth_sendRawTransaction", "0x" + raw.hex()))
    if int(receipt["status"], 16) != 1:
        raise BenchError("the BenchNFT deployment reverted")
    return to_checksum_address(receipt["contractAddress"])


def balance_of(url: str, contract: str, owner: str) -> int:
    data = BALANCE_OF_SELECTOR + _word(bytes.fromhex(owner[2:]))
    return int(rpc(url, "eth_call", {"to": contract, "data": "0x" + data.hex()}, "latest"), 16)


@dataclass
class Mint:
    account: int  # index of the signing account
    nonce: int
    raw: str  # 0x-hex signed transaction
    tx_hash: str
    sent: float = 0.0  # perf_counter at the start of the request that sent it
    mined: float = 0.0  # perf_counter of the poll that first saw it mined


@dataclass
class Minters:
    accounts: list[LocalAccount]
    first_nonces: list[int]  # each account's nonce before its first mint
    mints: list[list[Mint]] = field(default_factory=list)  # per account, in nonce order


def presign(accounts: list[LocalAccount], first_nonces: list[int], contract: str, txs: int, gas: int) -> Minters:
    """`txs` mints spread over the accounts (token ids 1..txs), each account minting to itself."""
    minters = Minters(accounts, first_nonces, [[] for _ in accounts])
    for token_id in range(1, txs + 1):
        i = (token_id - 1) % len(accounts)
        account = accounts[i]
        nonce = first_nonces[i] + len(minters.mints[i])
        tx: dict[str, Any] = {"type": 2, "chainId": CHAIN_ID, "nonce": nonce, "to": contract,
              "data": mint_calldata(account.address, token_id), "gas": gas, "maxFeePerGas": MAX_FEE_WEI,
              "maxPriorityFeePerGas": TIP_WEI, "value": 0}
        raw = bytes(account.sign_transaction(tx).raw_transaction)
        minters.mints[i].append(Mint(i, nonce, "0x" + raw.hex(), "0x" + keccak(raw).hex()))
    return minters


class MinedWatcher(threading.Thread):
    """Marks each mint mined when its account's mined nonce ("latest") passes it: one JSON-RPC batch per poll,
    whatever the number of blocks; done when every mint was seen mined."""

    def __init__(self, url: str, minters: Minters, poll_s: float, timeout_s: float) -> None:
        super().__init__(daemon=True)
        self.url, self.minters, self.poll_s, self.timeout_s = url, minters, poll_s, timeout_s
        self.seen = [0] * len(minters.accounts)  # mined nonces per account so far
        self.done = threading.Event()
        self.error: str | None = None

    def run(self) -> None:
        try:
            self._watch()
        except (httpx.HTTPError, ValueError, BenchError) as exc:  # said by mint_benchmark, not lost in a thread
            self.error = f"watching the mined nonces failed: {exc}"
            self.done.set()

    def _watch(self) -> None:
        calls = [("eth_getTransactionCount", [a.address, "latest"]) for a in self.minters.accounts]
        deadline = time.monotonic() + self.timeout_s
        with httpx.Client(timeout=30) as http:
            while not self.done.is_set():
                answers = rpc_batch(http, self.url, calls)
                now = time.perf_counter()
                for i, answer in enumerate(answers):
                    mined = int(answer.get("result", "0x0"), 16) - self.minters.first_nonces[i]
                    count = max(0, min(mined, len(self.minters.mints[i])))
                    for mint in self.minters.mints[i][self.seen[i]:count]:
                        mint.mined = now
                    self.seen[i] = max(self.seen[i], count)
                if all(s == len(m) for s, m in zip(self.seen, self.minters.mints, strict=True)):
                    self.done.set()
                elif time.monotonic() > deadline:
                    self.error = f"only {sum(self.seen)} mints mined after {self.timeout_s:g} s"
                    self.done.set()
                else:
                    time.sleep(self.poll_s)


def send_all(url: str, minters: Minters, clients: int, batch: int) -> list[str]:
    """Each client thread sends its accounts' mints (interleaved, nonce order kept per account) in JSON-RPC
    batches, one after the other; the send errors."""
    errors: list[str] = []
    lock = threading.Lock()
    per_client: list[list[Mint]] = [[] for _ in range(clients)]
    for i, mints in enumerate(minters.mints):
        queue = per_client[i % clients]
        queue.extend(mints)
    for queue in per_client:
        queue.sort(key=lambda m: (m.nonce, m.account))

    def client(queue: list[Mint]) -> None:
        with httpx.Client(timeout=120) as http:
            for start in range(0, len(queue), batch):
                chunk = queue[start:start + batch]
                sent = time.perf_counter()
                for mint in chunk:
                    mint.sent = sent
                try:
                    answers = rpc_batch(http, url, [("eth_sendRawTransaction", [m.raw]) for m in chunk])
                except (httpx.HTTPError, ValueError, BenchError) as exc:
                    answers = [{"error": str(exc)}] * len(chunk)
                bad = [f"{m.tx_hash}: {a.get('error')}" for m, a in zip(chunk, answers, strict=True)
                       if a.get("result") != m.tx_hash]
                if bad:
                    with lock:
                        errors.extend(bad)
                    return  # the account's later nonces cannot be mined now

    threads = [threading.Thread(target=client, args=(q,)) for q in per_client if q]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    return errors


def receipts(url: str, minters: Minters) -> list[dict[str, Any]]:
    hashes = [m.tx_hash for ms in minters.mints for m in ms]
    found: list[dict[str, Any]] = []
    with httpx.Client(timeout=60) as http:
        for start in range(0, len(hashes), 500):
            calls = [("eth_getTransactionReceipt", [h]) for h in hashes[start:start + 500]]
            found.extend(a.get("result") or {} for a in rpc_batch(http, url, calls))
    return found


def percentile_ms(values: list[float], q: float) -> float | None:
    if not values:
        return None
    ordered = sorted(values)
    return round(ordered[int(q * (len(ordered) - 1))] * 1000, 1)


def mint_benchmark(url: str, txs: int, clients: int, accounts_per_client: int = 2, batch: int = 20,
                   poll_ms: float = 5.0, gas: int | None = None, timeout_s: float = 600.0) -> dict[str, Any]:
    """Deploy BenchNFT on the Anvil at `url`, mint `txs` tokens as fast as it takes them, check and measure.
    `gas`: each mint's gas limit (default: the estimate of a first mint to a fresh owner, plus 20%)."""
    log = sys.stderr
    if txs < 1 or clients < 1 or accounts_per_client < 1 or batch < 1:
        raise BenchError("txs, clients, accounts per client and batch must each be 1 or more")
    # Fresh keys from fixed seeds, funded by Anvil's anvil_setBalance: nothing depends on Anvil's dev mnemonic.
    accounts = [Account.from_key(keccak(text=f"evm-compare minter {i}")) for i in range(clients * accounts_per_client)]
    deployer = Account.from_key(keccak(text="evm-compare deployer"))
    for a in [deployer, *accounts]:
        rpc(url, "anvil_setBalance", a.address, hex(FUNDS_WEI))
    contract = deploy(url, deployer, [a.address for a in accounts])
    if gas is None:
        estimate = int(rpc(url, "eth_estimateGas", {"from": accounts[0].address, "to": contract,
                                                    "data": "0x" + mint_calldata(accounts[0].address, 1).hex()}), 16)
        gas = estimate * 6 // 5
    print(f"BenchNFT at {contract}; pre-signing {txs} mints from {len(accounts)} accounts (gas limit {gas})...",
          file=log)
    first_nonces = [int(rpc(url, "eth_getTransactionCount", a.address, "latest"), 16) for a in accounts]
    minters = presign(accounts, first_nonces, contract, txs, gas)
    watcher = MinedWatcher(url, minters, poll_ms / 1000, timeout_s)
    print(f"sending from {clients} clients in JSON-RPC batches of {batch}...", file=log)
    load_before = os.getloadavg()
    started = time.perf_counter()
    watcher.start()
    send_errors = send_all(url, minters, clients, batch)
    if send_errors:
        watcher.done.set()
        raise BenchError(f"{len(send_errors)} mints refused, e.g. {send_errors[0]}")
    watcher.join()
    if watcher.error:
        raise BenchError(watcher.error)
    all_mints = [m for ms in minters.mints for m in ms]
    if not all(m.mined for m in all_mints):
        raise BenchError("the watcher stopped before every mint was seen mined")
    ended = max(m.mined for m in all_mints)
    elapsed = ended - started
    load_after = os.getloadavg()
    # Only mints that succeeded count; their owners' balances must say the same.
    found = receipts(url, minters)
    ok = [(m, r) for m, r in zip(all_mints, found, strict=True) if r.get("status") == "0x1"]
    balances = sum(balance_of(url, contract, a.address) for a in accounts)
    if balances != len(ok):
        raise BenchError(f"{len(ok)} mints succeeded but the owners' balances add up to {balances}")
    latencies = [m.mined - m.sent for m, _ in ok]
    blocks = {int(r["blockNumber"], 16) for _, r in ok}
    gas_used = [int(r["gasUsed"], 16) for _, r in ok]
    return {
        "system": "anvil",
        "anvil": anvil_version(),
        "contract": "BenchNFT (OpenZeppelin ERC721 5.7.0)",
        "txs": txs,
        "mints": len(ok),
        "failed": txs - len(ok),
        "clients": clients,
        "accounts": len(accounts),
        "rpc_batch": batch,
        "seconds": round(elapsed, 3),
        "mints_per_s": round(len(ok) / elapsed, 1),
        "p50_ms": percentile_ms(latencies, 0.5),
        "p99_ms": percentile_ms(latencies, 0.99),
        "blocks": len(blocks),
        "gas_per_mint": round(statistics.mean(gas_used)) if gas_used else None,
        "contract_address": contract,
        "minters": [a.address for a in accounts],
        "load_before": [round(x, 2) for x in load_before],
        "load_after": [round(x, 2) for x in load_after],
    }


# --------------------------------------------------------------------------------------------------
# The two parts and the comparison
# --------------------------------------------------------------------------------------------------


def run_anvil_part(args: argparse.Namespace) -> dict[str, Any]:
    mining = args.mining if args.mining == "auto" else f"{args.mining}, a block every {args.block_time:g} s"
    print(f"starting Anvil (mining: {mining})...", file=sys.stderr)
    with anvil(args.mining, args.block_time) as url:
        result = mint_benchmark(url, args.txs, args.clients, args.accounts_per_client, args.rpc_batch, args.poll_ms)
    result["mining"] = mining
    del result["minters"], result["contract_address"]
    return result


def run_ledger_part(args: argparse.Namespace) -> dict[str, Any]:
    from ledger.benchmark import run_bench  # loads the devnet launcher: only when this part runs

    load_before = os.getloadavg()
    result = run_bench(nodes=4, txs=args.txs, clients=args.ledger_clients, batch=args.batch, workload="mixed")
    load_after = os.getloadavg()
    return {"system": "ledger", **result, "load_before": [round(x, 2) for x in load_before],
            "load_after": [round(x, 2) for x in load_after]}


def comparison(anvil_result: dict[str, Any], ledger_result: dict[str, Any]) -> dict[str, Any]:
    ratio = ledger_result["committed_tx_per_s"] / anvil_result["mints_per_s"] if anvil_result["mints_per_s"] else None
    p99 = ledger_result["p99_ms"]
    return {
        "ratio": round(ratio, 2) if ratio is not None else None,
        "ledger_committed_tx_per_s": ledger_result["committed_tx_per_s"],
        "anvil_mints_per_s": anvil_result["mints_per_s"],
        "ledger_p99_ms": p99,
        "target": f"ratio >= {TARGET_RATIO:g} and ledger p99 < {TARGET_P99_MS:g} ms",
        "target_met": ratio is not None and ratio >= TARGET_RATIO and p99 is not None and p99 < TARGET_P99_MS,
        "verify_ceiling_tx_per_s": ledger_result["verify_ceiling_tx_per_s"],
    }


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--txs", type=int, default=12_000, help="transactions for each system (default 12000)")
    ap.add_argument("--clients", type=int, default=8, help="client threads sending to Anvil (default 8)")
    ap.add_argument("--ledger-clients", type=int, default=4,
                    help="ledger members submitting, each to its own node (default 4, as `ledger bench`)")
    which = ap.add_mutually_exclusive_group()
    which.add_argument("--anvil-only", action="store_true", help="run the Anvil part only")
    which.add_argument("--ledger-only", action="store_true", help="run the ledger part only")
    ap.add_argument("--ledger-first", action="store_true",
                    help="run the ledger before Anvil (alternate it between runs: the machine's load drifts)")
    ap.add_argument("--accounts-per-client", type=int, default=2,
                    help="signing accounts per Anvil client, their nonces in order each (default 2)")
    ap.add_argument("--rpc-batch", type=int, default=20, help="raw transactions per JSON-RPC batch (default 20)")
    ap.add_argument("--mining", choices=MINING_MODES, default="interval",
                    help="Anvil's mining: a block every --block-time s (interval, the default), a block whenever "
                         "transactions arrive (auto), or both (mixed); auto and mixed stall on a backlog")
    ap.add_argument("--block-time", type=float, default=0.1, metavar="S",
                    help="seconds between Anvil's blocks for interval and mixed mining (default 0.1)")
    ap.add_argument("--poll-ms", type=float, default=5.0,
                    help="how often the watcher asks Anvil for the mined nonces (default 5 ms)")
    ap.add_argument("--batch", type=int, default=175, help="ledger transactions per HTTP request (default 175)")
    args = ap.parse_args(argv)
    for name in ("txs", "clients", "ledger_clients", "accounts_per_client", "rpc_batch", "batch"):
        if getattr(args, name) < 1:
            ap.error(f"--{name.replace('_', '-')} must be 1 or more")
    if args.block_time <= 0:
        ap.error("--block-time must be more than 0")
    if args.poll_ms <= 0:
        ap.error("--poll-ms must be more than 0")
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    parts = ["anvil"] if args.anvil_only else ["ledger"] if args.ledger_only else ["anvil", "ledger"]
    if args.ledger_first:
        parts.reverse()
    results: dict[str, dict[str, Any]] = {}
    try:
        for part in parts:  # one after the other, never both at once
            results[part] = run_anvil_part(args) if part == "anvil" else run_ledger_part(args)
            print(json.dumps(results[part]), flush=True)
    except BenchError as exc:
        print(f"evm_compare: {exc}", file=sys.stderr)
        return 1
    if len(results) == 2:
        print(json.dumps(comparison(results["anvil"], results["ledger"])), flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
