"""The node's anchoring service: put the ledger's block hashes on Ethereum, and attest the anchors there.

Theory of operation. What to anchor to, and whose anchors count, is certified state
(`ledger.anchor.settings`): the service reads it from the ledger at every step and never from its
config, whose `contract` and `chain_id` (when given) must agree, or the service refuses to work and
says why. Each step, on a dedicated thread, it reads the certified submitters' `Anchored` events from
the contract; then, on the event loop:

1. **Attest.** The highest genuine anchor (its root is this node's own block hash) above the latest
   effective one, once its block has `confirmations`, is attested with an `anchor.attest` system
   transaction (`ledger.anchor.observe`). f+1 validators' alike attestations make it effective in the
   ledger (`ledger.anchor.records`); a validator without an RPC simply does not attest.
2. **Follow its own anchor** (`ledger.anchor.outgoing`): confirmations, reorgs (sent again), fees (replaced
   with higher ones up to the cap).
3. **Anchor** when due: unanchored work exists (blocks other than attestations above the latest
   effective anchor) and either `interval_blocks` blocks or `interval_s` seconds have gone by, no
   genuine anchor above the latest effective one is on the chain already, and it is this validator's
   turn: validator `(view + latest effective) % n` of the set that certifies the next block
   (`ChainDB.validators_at`, so the rotation follows set changes by governance) first, the one `r` places
   after it once the anchor has been due for `r * grace_s` seconds. A node outside that set neither
   attests nor anchors. It anchors the head block's hash under its own address; the
   head's `history_root` covers every earlier block.

No submitter can get in another's way: the contract keeps each submitter's roots apart, so a lying
validator's anchors (a huge height, a false root) are only ever reported as foreign, and one lying
validator's attestations are one vote of the f+1 needed.

Ethereum calls run on the dedicated thread, never on the event loop. A failure (RPC down, wrong chain)
is recorded in `last_error` and retried with exponential back-off; the ledger never waits for Ethereum.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from ledger.anchor.ethclient import ChainClient, ClientFactory, Web3ChainClient, eth_account_for
from ledger.anchor.observe import Observed, Reading, read_anchors
from ledger.anchor.outgoing import Outgoing
from ledger.anchor.port import AnchorNode
from ledger.anchor.records import KIND, AnchorRecord, get_anchor_record, get_votes, latest_effective_height
from ledger.anchor.settings import AnchoringSettings, get_settings, settings_to_json
from ledger.chain import compute_block_hash
from ledger.config import EthereumConfig
from ledger.tasks import cancel_and_wait
from ledger.tx import TxRejected, decode_tx

if TYPE_CHECKING:
    from ledger.chaindb import ExecutedBlock

log = logging.getLogger("ledger.anchor")

T = TypeVar("T")
POLL_S = 0.5  # how often the task looks again when nothing woke it
MAX_FOREIGN_SHOWN = 20


# --------------------------------------------------------------------------------------------------
# Pure decisions (unit-tested)
# --------------------------------------------------------------------------------------------------


def designated_index(view: int, last_anchored: int, n: int) -> int:
    """Index, in the current set's rotation order, of the validator that should send the next anchor."""
    return (view + last_anchored) % n


def takeover_rank(my_index: int, designated: int, n: int) -> int:
    """0 for the designated validator, r for the r-th backup after it (rotation order, wrapping)."""
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


def config_mismatch(cfg: EthereumConfig, settings: AnchoringSettings) -> str | None:
    """Why this node's config disagrees with the certified settings (None: it does not)."""
    if cfg.contract is not None and cfg.contract.lower() != settings.contract:
        return (f"config.json names contract {cfg.contract}, the ledger certifies {settings.contract}: "
                "not anchoring (fix the config, or change the certified settings through governance)")
    if cfg.chain_id is not None and cfg.chain_id != settings.eth_chain_id:
        return (f"config.json names chain {cfg.chain_id}, the ledger certifies chain {settings.eth_chain_id}: "
                "not anchoring")
    return None


@dataclass(frozen=True)
class ChainView:
    """What one step read from Ethereum."""

    tip: int
    events: list[Observed]


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
        self.eth_address = ""
        if client_factory is None:
            account = eth_account_for(node.key, cfg)
            self.eth_address = str(account.address).lower()

            def client_factory(contract: str, chain_id: int) -> ChainClient:
                return Web3ChainClient(cfg.rpc, contract, chain_id, account, timeout=cfg.tx_timeout_s)

        self._client_factory: ClientFactory = client_factory
        self._client: ChainClient | None = None
        self._client_for: AnchoringSettings | None = None
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="anchor")
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self.outgoing = Outgoing(cfg.confirmations, cfg.fee_bump_after_s, cfg.max_fee_gwei, clock)
        # What the commit listener saw. After a restart the head counts as unanchored work until the
        # ledger and the contract say otherwise.
        chain = node.chain
        self._work_height = chain.height
        self._work_since: float | None = clock() if chain.height > 0 else None
        self._due_since: float | None = None
        self._scanned_to: int | None = None  # events of blocks up to here are in _confirmed
        self._confirmed: dict[tuple[bytes, int], Observed] = {}  # by (tx hash, log index)
        self._genuine_above = 0
        self._votes_sent: dict[AnchorRecord, bytes] = {}  # our latest attestation and its tx id
        self.attempt = 0
        self.last_error: str | None = None
        self.note: str | None = None  # why the service is idle, when it is not an error
        self.attestations = 0
        self.conflicts = 0
        self.foreign: list[Observed] = []
        self.settings: AnchoringSettings | None = None

    # --- lifecycle -------------------------------------------------------------------------------

    def start(self) -> None:
        self.node.add_commit_listener(self._on_commit)
        self._task = asyncio.create_task(self._run(), name="anchoring")

    async def stop(self) -> None:
        await cancel_and_wait(self._task)
        self._executor.shutdown(wait=False, cancel_futures=True)

    def _on_commit(self, executed: ExecutedBlock) -> None:
        """Commit listener: note the block, wake the task. Quick; never raises."""
        height = executed.block.header.height
        if _has_work(executed.block.txs, len(self.current_validators())):
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

    def last_anchored(self) -> int:
        return latest_effective_height(self.node.chain.latest)

    def current_validators(self) -> list[str]:
        """The validators that certify the next block, in rotation order: those whose attestations count and
        among whom the anchoring turn rotates."""
        chain = self.node.chain
        return [v.id for v in chain.validators_at(chain.height + 1)]

    def _rank(self, last: int, validators: list[str]) -> int:
        """This validator's place in the takeover order for the anchor after height `last`."""
        n = len(validators)
        return takeover_rank(validators.index(self.node.key.id), designated_index(self.node.replica.view, last, n), n)

    def _block_hash(self, height: int) -> bytes | None:
        if height > self.node.chain.height:
            return None
        block = self.node.chain.get_block(height)
        return None if block is None else compute_block_hash(block.header)

    async def step(self) -> None:
        """One look: read the contract, attest what is confirmed and genuine, follow our own anchor, anchor
        if due and it is this validator's turn."""
        settings = get_settings(self.node.chain.latest)
        self.settings = settings
        if settings is None:
            self.note = "the ledger has no anchoring settings yet (genesis `anchoring`, or `ledger anchoring set`)"
            return
        mismatch = config_mismatch(self.cfg, settings)
        if mismatch is not None:
            if self.last_error != mismatch:
                log.error("anchoring: %s", mismatch)
            self.last_error = mismatch
            return
        if self.node.key.id not in self.current_validators():
            self.note = "this node is not in the validator set of the next block: it neither attests nor anchors"
            return
        self.note = None
        client = await self._get_client(settings)
        seen = await self._call(self._read_chain, client, settings)
        reading = self._read(seen, settings)
        if reading.attest is not None:
            self._attest(reading.attest)
        outcome = await self._call(self.outgoing.follow, client, seen.tip)
        if outcome in ("confirmed", "reverted"):
            self._wake.set()  # look again now: its event may be ours to attest
        self.last_error = None  # Ethereum answered, and nothing the ledger holds is amiss
        await self._anchor_if_due(client, settings)

    async def _get_client(self, settings: AnchoringSettings) -> ChainClient:
        if self._client is None or self._client_for != settings:
            self._client = await self._call(self._client_factory, settings.contract, settings.eth_chain_id)
            self._client_for = settings
            self._scanned_to = None  # a new contract: read its events afresh
            self._confirmed.clear()
            if not self.eth_address:
                self.eth_address = self._client.address
        return self._client

    def _read_chain(self, client: ChainClient, settings: AnchoringSettings) -> ChainView:
        """(Ethereum thread) The tip, and the certified submitters' events: those with enough confirmations
        are kept (read once), those above are read again each time (a reorg may still move them)."""
        tip = client.block_number()
        confirmed_through = tip - self.cfg.confirmations + 1
        if self._scanned_to is None:
            self._scanned_to = self._scan_start() - 1
        fresh = client.anchors(self._scanned_to + 1, tip, settings.submitters) if tip > self._scanned_to else []
        recent = []
        for e in fresh:
            if e.eth_block <= confirmed_through:
                self._confirmed[(e.tx_hash, e.log_index)] = e
            else:
                recent.append(e)
        self._scanned_to = max(self._scanned_to, confirmed_through)
        return ChainView(tip, [*self._confirmed.values(), *recent])

    def _scan_start(self) -> int:
        """Where to start reading events: the Ethereum block of the latest effective anchor (anchors above
        it were sent after it), else the contract's deployment block."""
        view = self.node.chain.latest
        record = get_anchor_record(view, latest_effective_height(view))
        if record is None or self.settings is None or record.contract != self.settings.contract:
            return self.cfg.deploy_block
        return max(self.cfg.deploy_block, record.eth_block)

    def _read(self, seen: ChainView, settings: AnchoringSettings) -> Reading:
        view = self.node.chain.latest
        latest = latest_effective_height(view)
        me = self.node.key.id

        def my_vote(height: int) -> AnchorRecord | None:
            return next((v.claim for v in get_votes(view, height) if v.validator == me), None)

        reading = read_anchors(seen.events, confirmed_through=seen.tip - self.cfg.confirmations + 1,
                               latest_effective=latest, head=self.node.chain.height, own_hash=self._block_hash,
                               my_vote=my_vote, eth_chain_id=settings.eth_chain_id, contract=settings.contract)
        self._confirmed = {k: e for k, e in self._confirmed.items() if e.height > latest}
        if reading.genuine_above > self._genuine_above:
            # A new anchor covers the work up to it: what waits now is the work above it, from now on.
            self._work_since = self.clock() if self._work_height > reading.genuine_above else None
        self._genuine_above = reading.genuine_above
        for e in reading.foreign:
            if e not in self.foreign:
                self.foreign = [*self.foreign[-MAX_FOREIGN_SHOWN + 1:], e]
                log.error("anchoring: %s anchored a root at height %d that is not this ledger's block (tx 0x%s); "
                          "never attested", e.submitter, e.height, e.tx_hash.hex())
        return reading

    def _attest(self, claim: AnchorRecord) -> None:
        """Send our vote for `claim`. The same vote again while it is pending is answered as a duplicate; one the
        ledger refused (a height with no kept block hash, say) is not sent again."""
        sent = self._votes_sent.get(claim)
        if sent is not None:
            location = self.node.chain.get_tx_location(sent)
            if location is not None and not location.ok:
                return
        admission = self.node.submit_system(KIND, claim)
        if admission.accepted:
            self.attestations += 1
            self._votes_sent = {claim: admission.tx_id}  # only the newest vote matters
            log.info("attesting the anchor of height %d (tx 0x%s in eth block %d, from %s)", claim.height,
                     claim.tx_hash.hex(), claim.eth_block, claim.submitter)
        elif admission.reason != "duplicate":
            raise RuntimeError(f"attestation of height {claim.height} refused: {admission.message}")

    async def _anchor_if_due(self, client: ChainClient, settings: AnchoringSettings) -> None:
        chain = self.node.chain
        now = self.clock()
        last = self.last_anchored()
        # A genuine anchor on the chain above the effective one will take effect once attested: count it as
        # anchored, so that no second anchor follows it before new work is due (and so that anyone anchoring
        # old heights, each genuine, cannot hold back an anchor of the head).
        base = max(last, self._genuine_above)
        waited = 0.0 if self._work_since is None else now - self._work_since
        if not anchor_due(chain.height, self._work_height, base, self.cfg.interval_blocks, waited,
                          self.cfg.interval_s):
            self._due_since = None
            if self._work_height <= last:
                self._work_since = None
            return
        if self._due_since is None:
            self._due_since = now
        if self.outgoing.current is not None:
            return  # our anchor is on its way
        if client.address not in settings.submitters:
            self.note = f"this validator's Ethereum address {client.address} is not a certified submitter"
            return
        validators = self.current_validators()
        if self.node.key.id not in validators:
            return  # the set changed while we read Ethereum
        if now - self._due_since < self._rank(last, validators) * self.cfg.grace_s:
            return  # the designated validator (or an earlier backup) still has time
        mined, pending = await self._call(client.nonces)
        if pending > mined:
            self.note = f"an earlier transaction from {client.address} (nonce {mined}) is still pending"
            return
        # Anchor the head as it is now (no await between reading the height and its hash).
        height, root = chain.height, chain.head_hash
        sent = await self._call(self.outgoing.send, client, height, root)
        if sent is None:
            self.conflicts += 1  # we anchored this height before (a restart): its event will be attested
            return
        self._due_since = None
        log.info("anchoring height %d (tx 0x%s)", height, sent.hashes[-1].hex())

    # --- status ----------------------------------------------------------------------------------

    def status(self) -> dict[str, Any]:
        chain = self.node.chain
        view = chain.latest
        last = latest_effective_height(view)
        record = get_anchor_record(view, last) if last else None
        settings = self.settings or get_settings(view)
        validators = self.current_validators()
        designated = designated_index(self.node.replica.view, last, len(validators))
        out = self.outgoing
        return {
            "enabled": True,
            "certified": settings_to_json(settings),
            "last_anchored_height": last,
            "tx_hash": None if record is None else "0x" + record.tx_hash.hex(),
            "eth_block": None if record is None else record.eth_block,
            "pending": max(0, chain.height - last),
            "last_error": self.last_error,
            "note": self.note,
            "contract": None if settings is None else settings.contract,
            "chain_id": None if settings is None else settings.eth_chain_id,
            "rpc": self.cfg.rpc,
            "submitter": self.eth_address or None,
            "submitter_certified": None if settings is None or not self.eth_address
            else self.eth_address in settings.submitters,
            "designated": validators[designated],
            "interval_blocks": self.cfg.interval_blocks,
            "interval_s": self.cfg.interval_s,
            "grace_s": self.cfg.grace_s,
            "confirmations": self.cfg.confirmations,
            "in_flight": None if out.current is None else out.current.to_json(),
            "anchors_sent": out.sent,
            "resent": out.resent,
            "fee_bumps": out.bumps,
            "at_fee_cap": out.at_cap,
            "attestations_sent": self.attestations,
            "conflicts": self.conflicts,
            "foreign_heights": [e.height for e in self.foreign[-MAX_FOREIGN_SHOWN:]],
        }


def _has_work(txs: tuple[bytes, ...] | list[bytes], n_validators: int) -> bool:
    """Whether a block holds anything but anchor attestations (big blocks certainly do)."""
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
