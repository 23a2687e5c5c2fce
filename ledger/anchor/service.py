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
the ledger itself never waits for Ethereum. After a successful anchor the validator records the
receipt in the ledger with an `anchor.record` system transaction signed by its node key.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

from ledger.anchor.records import KIND, AnchorRecord, get_anchor_record, latest_recorded_height
from ledger.codec import encode
from ledger.config import EthereumConfig
from ledger.crypto import SigningKey
from ledger.state import get_nonce
from ledger.tx import TxRejected, decode_tx, make_tx

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from ledger.chaindb import ExecutedBlock
    from ledger.node import Node

log = logging.getLogger("ledger.anchor")

T = TypeVar("T")
ETH_KEY_DOMAIN = b"ledger/anchor/eth-key/v1\x00"
CONFLICT_ERRORS = ("AlreadyAnchored", "HeightNotIncreasing")
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


def derive_eth_key(node_key: SigningKey) -> bytes:
    """A deterministic secp256k1 private key for a validator, derived from its node key (devnets)."""
    return hashlib.sha256(ETH_KEY_DOMAIN + node_key.to_pem()).digest()


def eth_account_for(node_key: SigningKey, key_file: Any = None) -> LocalAccount:
    from eth_account import Account

    from ledger.anchor.contract import load_key_file

    if key_file is not None:
        return load_key_file(key_file)
    account: LocalAccount = Account.from_key(derive_eth_key(node_key))
    return account


# --------------------------------------------------------------------------------------------------
# The chain client: the Ethereum side, behind a small interface (a fake one in tests)
# --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class AnchorReceipt:
    height: int
    root: bytes
    tx_hash: bytes
    eth_block: int
    submitter: str


class AnchorConflict(Exception):
    """The contract refused the anchor: that height or a higher one is already anchored."""


class ChainClient(Protocol):
    chain_id: int
    contract: str
    address: str  # this validator's Ethereum address

    def latest_height(self) -> int:
        """The contract's latest anchored height, 0 if none."""
        ...

    def submit(self, height: int, root: bytes) -> AnchorReceipt:
        """Anchor and wait for the receipt; AnchorConflict if the contract refuses the height."""
        ...


class Web3ChainClient:
    """ChainClient over web3 and the committed LedgerAnchor artifact. Blocking: call it on a thread."""

    def __init__(self, cfg: EthereumConfig, account: LocalAccount) -> None:
        from ledger.anchor import contract as ac

        self._ac = ac
        self.cfg = cfg
        self.account = account
        self.address: str = str(account.address)
        self.w3 = ac.connect(cfg.rpc, timeout=10.0)
        self.chain_id = int(self.w3.eth.chain_id)
        if cfg.chain_id is not None and self.chain_id != cfg.chain_id:
            raise ac.AnchorContractError(
                f"the RPC at {cfg.rpc} serves chain id {self.chain_id}, configured {cfg.chain_id}"
            )
        self.artifact = ac.load_artifact()
        self.instance = ac.anchor_contract(self.w3, cfg.contract, self.artifact)
        self.contract = str(self.instance.address)
        code = bytes(self.w3.eth.get_code(self.instance.address))
        if not code:
            raise ac.AnchorContractError(f"no contract at {self.contract} on chain {self.chain_id}")

    def latest_height(self) -> int:
        latest = self._ac.latest_anchor(self.instance)
        return 0 if latest is None else latest[0]

    def submit(self, height: int, root: bytes) -> AnchorReceipt:
        ac = self._ac
        try:
            receipt = ac.submit_anchor(
                self.w3, self.account, self.instance, height, root, timeout=self.cfg.tx_timeout_s
            )
        except Exception as exc:
            data = ac.revert_data(exc)
            decoded = ac.decode_revert(self.artifact.abi, data) if data else None
            if decoded is not None and decoded[0] in CONFLICT_ERRORS:
                raise AnchorConflict(f"{decoded[0]}{decoded[1]}") from None
            if decoded is not None:
                raise ac.AnchorContractError(f"anchor reverted: {decoded[0]}{decoded[1]}") from None
            raise
        return AnchorReceipt(
            height, root, bytes(receipt["transactionHash"]), int(receipt["blockNumber"]), self.address
        )


ClientFactory = Callable[[], ChainClient]


# --------------------------------------------------------------------------------------------------
# The service
# --------------------------------------------------------------------------------------------------


class AnchorService:
    def __init__(
        self,
        node: Node,
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
            account = eth_account_for(node.key, cfg.key_file)
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
        self.last_receipt: AnchorReceipt | None = None
        self._to_record: list[AnchorReceipt] = []
        self.attempt = 0
        self.last_error: str | None = None
        self.anchors_sent = 0
        self.conflicts = 0
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
                self.last_error = _describe(exc)
                self._client = None  # reconnect next time (Anvil restarted, RPC switched...)
                delay = backoff_delay(self.attempt, self.backoff_base, self.cfg.max_backoff_s)
                log.warning("anchoring failed (attempt %d, retry in %.1fs): %s", self.attempt, delay,
                            self.last_error)
                await asyncio.sleep(delay)

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

    def last_anchored(self) -> int:
        return max(self.chain_latest, latest_recorded_height(self.node.chain.latest))

    async def step(self) -> None:
        """One look: record pending receipts, then anchor if due and it is this validator's turn."""
        if self._to_record:
            await self._record_pending()
        now = self.clock()
        chain = self.node.chain
        last = self.last_anchored()
        head = chain.height
        waited = 0.0 if self._work_since is None else now - self._work_since
        if not anchor_due(head, self._work_height, last, self.cfg.interval_blocks, waited, self.cfg.interval_s):
            self._due_since = None
            if self._work_height <= last:
                self._work_since = None
            return
        if self._due_since is None:
            self._due_since = now
        designated = designated_index(self.node.replica.view, last, len(self.validators))
        rank = takeover_rank(self.my_index, designated, len(self.validators))
        if now - self._due_since < rank * self.cfg.grace_s:
            return  # the designated validator (or an earlier backup) still has time
        client = await self._get_client()
        on_chain = await self._call(client.latest_height)
        self.chain_latest = max(self.chain_latest, on_chain)
        if on_chain >= self._work_height:
            return  # someone anchored meanwhile; not due any more
        # Anchor the head as it is now (no await between reading the height and its hash).
        height, root = chain.height, chain.head_hash
        if height <= on_chain:
            return
        try:
            receipt = await self._call(client.submit, height, root)
        except AnchorConflict as exc:
            self.conflicts += 1
            log.info("anchor of height %d refused by the contract (%s); re-reading it", height, exc)
            self.chain_latest = max(self.chain_latest, await self._call(client.latest_height))
            return
        self.anchors_sent += 1
        self.chain_latest = max(self.chain_latest, height)
        self.last_receipt = receipt
        self.last_error = None
        self._due_since = None
        log.info("anchored height %d in eth block %d (tx 0x%s)", height, receipt.eth_block, receipt.tx_hash.hex())
        self._to_record.append(receipt)
        await self._record_pending()

    async def _record_pending(self) -> None:
        """Submit `anchor.record` for our anchors not yet in the ledger; wait briefly for each."""
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
            nonce = get_nonce(chain.latest, self.node.key.id) + 1
            raw = encode(make_tx(self.node.key, chain.chain_id, nonce, KIND, record))
            (admission,) = await self.node.submit([raw])
            if not admission.accepted:
                if admission.reason in ("duplicate",):
                    pass  # already on its way: wait for it below
                else:
                    raise RuntimeError(f"anchor record for height {receipt.height} refused: {admission.message}")
            (outcome,) = await self.node.wait_committed([admission.tx_id], timeout=RECORD_WAIT_S)
            if outcome is None:
                return  # not committed yet; looked at again on the next step
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
            "interval_blocks": self.cfg.interval_blocks,
            "interval_s": self.cfg.interval_s,
            "anchors_sent": self.anchors_sent,
            "conflicts": self.conflicts,
            "unrecorded": len(self._to_record),
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
