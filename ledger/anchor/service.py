"""The node's anchoring service: put the ledger's latest block hash on Ethereum, now and then.

Theory of operation. The node calls `_on_commit` for every committed block (a commit listener: it
only records the height and whether the block holds work other than anchor receipts, and wakes the
service task). The task anchors the head block's hash in the LedgerAnchor contract when unanchored
work exists and either `interval_blocks` blocks are unanchored or the oldest unanchored work has
waited `interval_s` seconds. The head header's `history_root` commits to every earlier block, so one
anchor covers the whole chain below it. Blocks holding only `anchor.record` receipts do not count as
work, so an idle ledger is not anchored again and again.

Designation: validator `(view + last_anchored) % n` anchors; the validator `r` places after it in
genesis order takes over once the anchor has been due for `r * grace_s` seconds without appearing.
Every validator reads the contract's latest height right before sending, so a restart or a
takeover never anchors a height twice or a lower one; the contract refuses those anyway
(AlreadyAnchored / HeightNotIncreasing), which the service treats as "someone else anchored".

Ethereum calls run on a dedicated thread, never on the event loop. A failure (RPC down, wrong
chain, reverted transaction) is recorded in `last_error` and retried with exponential back-off;
the ledger itself never waits for Ethereum. A validator never sends an anchor while an earlier
transaction of its own is still pending (after a restart, or a receipt wait that timed out): the
two would race, and the second could only revert.

Receipts. After a successful anchor the validator records the receipt in the ledger with an
`anchor.record` system transaction signed by its node key. Whenever the contract holds anchors
above the ledger's latest record (the sender crashed before recording, or two validators anchored
at once), validators recover the receipts from the contract's events and record them before
anchoring again (see `ledger.anchor.recovery`): the sender at once, the others in takeover order
after `rank * grace_s`. A restarted validator reads the contract as its first step, so it finds
its own unrecorded anchor even when nothing else is due.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import TYPE_CHECKING, Any, TypeVar

from ledger.anchor.ethclient import AnchorConflict, ChainClient, ClientFactory, Web3ChainClient, eth_account_for
from ledger.anchor.port import AnchorNode
from ledger.anchor.records import KIND, AnchorRecord, get_anchor_record, latest_recorded_height
from ledger.anchor.recovery import AnchorReceipt, plan_recovery, scan_start
from ledger.chain import compute_block_hash
from ledger.config import EthereumConfig
from ledger.mempool import Refusal
from ledger.tx import TxRejected, decode_tx

if TYPE_CHECKING:
    from ledger.chaindb import ExecutedBlock

log = logging.getLogger("ledger.anchor")

T = TypeVar("T")
POLL_S = 0.5  # how often the task looks again when nothing woke it
RECORD_WAIT_S = 10.0


# --------------------------------------------------------------------------------------------------
# Pure decisions (unit-tested)
# --------------------------------------------------------------------------------------------------


def designated_index(view: int, last_anchored: int, n: int) -> int:
    """Genesis index of the validator that should send the next anchor."""
    return (view + last_anchored) % n


def takeover_rank(my_index: int, designated: int, n: int) -> int:
    """0 for the designated validator, r for the r-th backup after it (genesis order, wrapping)."""
    return (my_index - designated) % n


def backoff_delay(attempt: int, base: float = 0.5, cap: float = 60.0) -> float:
    """Seconds to wait after the `attempt`-th consecutive failure (1, 2, ...): doubling, capped."""
    if attempt <= 0:
        return 0.0
    return float(min(cap, base * 2 ** min(attempt - 1, 32)))


def anchor_due(
    head: int, work_height: int, last_anchored: int, interval_blocks: int, waited_s: float, interval_s: float
) -> bool:
    """Unanchored work exists and either enough blocks or enough time has gone by."""
    if work_height <= last_anchored or head <= last_anchored:
        return False
    return head - last_anchored >= interval_blocks or waited_s >= interval_s


# --------------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------------


class AnchorService:
    def __init__(
        self,
        node: AnchorNode,
        cfg: EthereumConfig,
        client_factory: ClientFactory | None = None,
        clock: Callable[[], float] = time.monotonic,
        backoff_base: float = 0.5,
    ) -> None:
        self.node = node
        self.cfg = cfg
        self.clock = clock
        self.backoff_base = backoff_base
        self.validators = node.genesis.validator_ids()
        self.my_index = self.validators.index(node.key.id)
        self.eth_address = ""
        if client_factory is None:
            account = eth_account_for(node.key, cfg)
            self.eth_address = str(account.address)

            def client_factory() -> ChainClient:
                return Web3ChainClient(cfg, account)

        self._client_factory: ClientFactory = client_factory
        self._client: ChainClient | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anchor")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        # What the commit listener saw. After a restart the head counts as unanchored work until
        # the contract says otherwise (reading it is cheap; anchoring twice is impossible).
        chain = node.chain
        self._work_height = chain.height
        self._work_since: float | None = clock() if chain.height > 0 else None
        self._due_since: float | None = None
        self.chain_latest = 0  # the contract's latest height, as last read or written by us
        self._chain_read = False  # the first step reads the contract, due or not (restart recovery)
        self._unrecorded_since: float | None = None  # when we first saw an anchor above the latest record
        self._settled = 0  # anchors up to here that will never be recorded (foreign roots)
        self.last_receipt: AnchorReceipt | None = None
        self._to_record: list[AnchorReceipt] = []  # lowest height first
        self.attempt = 0
        self.last_error: str | None = None
        self._error_recorded = 0  # the ledger's latest record when last_error was set
        self.anchors_sent = 0
        self.conflicts = 0
        self.recovered = 0  # receipts of other senders (or of our previous life) recorded from the events
        self.foreign: list[int] = []  # heights whose root on the contract is not this ledger's block
        self.chain_id: int | None = cfg.chain_id
        self.contract = cfg.contract

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.node.add_commit_listener(self._on_commit)
        self._task = asyncio.create_task(self._run(), name="anchoring")

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _on_commit(self, executed: ExecutedBlock) -> None:
        """Commit listener: note the block, wake the task. Quick; never raises."""
        height = executed.block.header.height
        if _has_work(executed.block.txs, len(self.validators)):
            if self._work_since is None or self._work_height <= self.last_anchored():
                self._work_since = self.clock()
            self._work_height = height
        self._wake.set()

    # --- the loop ---------------------------------------------------------------------------------

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), timeout=POLL_S)
            self._wake.clear()
            try:
                await self.step()
                self.attempt = 0
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # noqa: BLE001 - RPC, chain or contract trouble: back off, retry
                self.attempt += 1
                self._set_error(_describe(exc))
                self._client = None  # reconnect next time (Anvil restarted, RPC switched...)
                delay = backoff_delay(self.attempt, self.backoff_base, self.cfg.max_backoff_s)
                log.warning("anchoring failed (attempt %d, retry in %.1fs): %s", self.attempt, delay,
                            self.last_error)
                await asyncio.sleep(delay)

    def _set_error(self, message: str) -> None:
        self.last_error = message
        self._error_recorded = latest_recorded_height(self.node.chain.latest)

    async def _call(self, fn: Callable[..., T], *args: Any) -> T:
        return await asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)

    async def _get_client(self) -> ChainClient:
        client = self._client
        if client is None:
            client = await self._call(self._client_factory)
            self._client = client
            self.chain_id = client.chain_id
            self.contract = client.contract
        return client

    async def _read_chain(self) -> int:
        client = await self._get_client()
        on_chain = await self._call(client.latest_height)
        self.chain_latest = max(self.chain_latest, on_chain)
        self._chain_read = True
        return on_chain

    def last_anchored(self) -> int:
        return max(self.chain_latest, latest_recorded_height(self.node.chain.latest))

    def _rank(self, last: int) -> int:
        """This validator's place in the takeover order for the anchor after height `last`."""
        n = len(self.validators)
        return takeover_rank(self.my_index, designated_index(self.node.replica.view, last, n), n)

    def _block_hash(self, height: int) -> bytes | None:
        block = self.node.chain.get_block(height)
        return None if block is None else compute_block_hash(block.header)

    async def step(self) -> None:
        """One look: record receipts, recover lost ones, then anchor if due and it is this validator's turn."""
        if self._to_record:
            await self._record_pending()
        now = self.clock()
        recorded = latest_recorded_height(self.node.chain.latest)
        if self.last_error is not None and recorded > self._error_recorded:
            self.last_error = None  # anchoring went on since (through another validator)
        if not self._chain_read:
            await self._read_chain()
        if self.chain_latest > max(recorded, self._settled):
            await self._recover(now, recorded)
            return
        self._unrecorded_since = None
        await self._anchor_if_due(now, recorded)

    async def _anchor_if_due(self, now: float, recorded: int) -> None:
        chain = self.node.chain
        last = max(self.chain_latest, recorded)
        waited = 0.0 if self._work_since is None else now - self._work_since
        if not anchor_due(chain.height, self._work_height, last, self.cfg.interval_blocks, waited,
                          self.cfg.interval_s):
            self._due_since = None
            if self._work_height <= last:
                self._work_since = None
            return
        if self._due_since is None:
            self._due_since = now
        if now - self._due_since < self._rank(last) * self.cfg.grace_s:
            return  # the designated validator (or an earlier backup) still has time
        client = await self._get_client()
        on_chain = await self._read_chain()
        if self.chain_latest > max(recorded, self._settled):
            await self._recover(now, recorded)  # anchored meanwhile, not recorded yet: that comes first
            return
        # Anchor the head as it is now (no await between reading the height and its hash).
        height, root = chain.height, chain.head_hash
        if height <= on_chain:
            return
        try:
            receipt = await self._call(client.submit, height, root)
        except AnchorConflict as exc:
            self.conflicts += 1
            log.info("anchor of height %d refused by the contract (%s); re-reading it", height, exc)
            await self._read_chain()
            return
        self.anchors_sent += 1
        self.chain_latest = max(self.chain_latest, height)
        self.last_receipt = receipt
        self.last_error = None
        self._due_since = None
        log.info("anchored height %d in eth block %d (tx 0x%s)", height, receipt.eth_block, receipt.tx_hash.hex())
        await self._recover(self.clock(), recorded)

    async def _recover(self, now: float, recorded: int) -> None:
        """Record every anchor above the ledger's latest record, with receipts from the contract's events."""
        if self._unrecorded_since is None:
            self._unrecorded_since = now
        ours = self.last_receipt is not None and self.last_receipt.height >= self.chain_latest
        # Its sender records an anchor within seconds; the others step in in takeover order.
        if not ours and now - self._unrecorded_since < self._rank(recorded) * self.cfg.grace_s:
            return
        client = await self._get_client()
        # Re-read: the contract is the authority (a redeployed dev chain may hold less than we saw).
        self.chain_latest = await self._call(client.latest_height)
        if self.chain_latest <= max(recorded, self._settled):
            return
        chain = self.node.chain
        latest = get_anchor_record(chain.latest, recorded) if recorded else None
        found = await self._call(client.anchored_since, scan_start(latest, client.chain_id, client.contract,
                                                                    self.cfg.deploy_block))
        view = chain.latest  # as it is after the scan
        plan = plan_recovery(found, lambda h: get_anchor_record(view, h) is not None, chain.height,
                             self._block_hash)
        for r in plan.foreign:
            self._settled = max(self._settled, r.height)
            self.foreign.append(r.height)
            self._set_error(f"the contract holds a root for height {r.height} that is not this ledger's block "
                            f"(tx 0x{r.tx_hash.hex()}, from {r.submitter}); not recorded")
            log.error("anchoring: %s", self.last_error)
        mine = None if self.last_receipt is None else self.last_receipt.tx_hash
        for r in self._queue(plan.record):
            if r.tx_hash != mine:
                self.recovered += 1
                log.info("recovering the unrecorded anchor of height %d (tx 0x%s, from %s)", r.height,
                         r.tx_hash.hex(), r.submitter)
        if plan.record and not plan.foreign:
            self.last_error = None
        await self._record_pending()

    def _queue(self, receipts: list[AnchorReceipt]) -> list[AnchorReceipt]:
        """Add receipts not queued yet, keeping the queue in height order; returns those added."""
        queued = {r.height for r in self._to_record}
        added = [r for r in receipts if r.height not in queued]
        self._to_record = sorted(self._to_record + added, key=lambda r: r.height)
        return added

    async def _record_pending(self) -> None:
        """Submit `anchor.record` for queued receipts not yet in the ledger, lowest height first;
        wait briefly for each."""
        chain = self.node.chain
        while self._to_record:
            receipt = self._to_record[0]
            if get_anchor_record(chain.latest, receipt.height) is not None:
                self._to_record.pop(0)
                continue
            record = AnchorRecord(
                height=receipt.height,
                block_hash=receipt.root,
                eth_chain_id=int(self.chain_id or 0),
                contract=self.contract,
                tx_hash=receipt.tx_hash,
                eth_block=receipt.eth_block,
                submitter=receipt.submitter,
            )
            admission = self.node.submit_system(KIND, record)
            if not admission.accepted and admission.reason != "duplicate":  # duplicate: already on its way
                raise RuntimeError(f"anchor record for height {receipt.height} refused: {admission.message}")
            (outcome,) = await self.node.wait_committed([admission.tx_id], timeout=RECORD_WAIT_S)
            if outcome is None or isinstance(outcome, Refusal):
                return  # not committed yet (or given up on): looked at again on the next step
            self._to_record.pop(0)
            if not outcome.ok:
                log.info("anchor record for height %d not applied: %s", receipt.height, outcome.message)

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        chain = self.node.chain
        last = self.last_anchored()
        tx_hash: str | None = None
        eth_block: int | None = None
        if self.last_receipt is not None and self.last_receipt.height >= last:
            tx_hash, eth_block = "0x" + self.last_receipt.tx_hash.hex(), self.last_receipt.eth_block
        else:
            rec = get_anchor_record(chain.latest, last) if last else None
            if rec is not None:
                tx_hash, eth_block = "0x" + rec.tx_hash.hex(), rec.eth_block
        designated = designated_index(self.node.replica.view, last, len(self.validators))
        return {
            "enabled": True,
            "last_anchored_height": last,
            "tx_hash": tx_hash,
            "eth_block": eth_block,
            "pending": max(0, chain.height - last),
            "last_error": self.last_error,
            "contract": self.contract,
            "chain_id": self.chain_id,
            "rpc": self.cfg.rpc,
            "submitter": self.eth_address or None,
            "designated": self.validators[designated],
            "interval_blocks": self.cfg.interval_blocks,
            "interval_s": self.cfg.interval_s,
            "grace_s": self.cfg.grace_s,
            "anchors_sent": self.anchors_sent,
            "conflicts": self.conflicts,
            "recovered": self.recovered,
            "unrecorded": len(self._to_record),
            "foreign_heights": self.foreign,
        }


def _has_work(txs: tuple[bytes, ...] | list[bytes], n_validators: int) -> bool:
    """Whether a block holds anything but anchor receipts (big blocks certainly do)."""
    if not txs:
        return False
    if len(txs) > n_validators:
        return True
    for raw in txs:
        try:
            if decode_tx(raw).kind != KIND:
                return True
        except TxRejected:
            return True
    return False


def _describe(exc: BaseException) -> str:
    text = str(exc) or type(exc).__name__
    first = text.splitlines()[0] if text else ""
    return f"{type(exc).__name__}: {first[:300]}"
