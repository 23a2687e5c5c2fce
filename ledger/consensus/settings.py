"""A replica's settings (counts, and durations in ticks) and the checks that they can work."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.chain import MAX_BLOCK_TX_BYTES
from ledger.consensus import bounds
from ledger.consensus.messages import MAX_MESSAGE_BYTES
from ledger.consensus.quorum import quorum_size
from ledger.errors import ConfigError


@dataclass(frozen=True)
class ReplicaConfig:
    chain_id: str
    validators: tuple[str, ...]  # validator ids in primary-rotation order
    batch_size: int = 1000  # at most this many transactions per block...
    max_batch_bytes: int = MAX_BLOCK_TX_BYTES  # ...and at most this many bytes of them
    batch_ticks: int = 1  # cut a partial batch after this many ticks...
    # ...or at once while fewer than this many of the primary's blocks are in flight above the delivered head
    # (0: never). A nearly idle pipeline gains nothing from waiting; once it fills, the queue grows into
    # larger blocks meanwhile. On long links that wait is most of what a partial batch would gather.
    eager_inflight: int = 0
    checkpoint_interval: int = 10  # K: a checkpoint every K blocks
    watermark_window: int = 40  # high watermark = low watermark (stable checkpoint) + this
    max_inflight: int = 4  # pipelining depth above the last delivered block
    view_change_ticks: int = 20  # base progress timeout; doubles per consecutive view change
    max_backoff_exponent: int = 6
    request_timeout_ticks: int = 50  # a backup's queued txs and no block delivered for this long -> view change
    max_passovers: int = 3  # blocks with room that leave out a backup's oldest tx before a view change
    max_tx_strikes: int = 2  # view changes one unordered tx may cause before it is dropped
    retransmit_ticks: int = 5  # while stalled, resend own messages this often
    fetch_retry_ticks: int = 10
    max_pending_txs: int = 200_000
    max_buffered_per_peer: int = 64  # messages for a future view kept per peer
    # Heights between the block committing a validator-set change and the first it governs (the
    # chain's rule, ledger.validators.ACTIVATION_DELAY); the pipeline stays shorter.
    activation_delay: int = 16


def check_config(cfg: ReplicaConfig) -> None:
    # There are validators, each listed once.
    if not cfg.validators or len(set(cfg.validators)) != len(cfg.validators):
        raise ConfigError("validators must be a non-empty list of distinct ids")
    # Every count and period is positive.
    for name in ("batch_size", "max_batch_bytes", "batch_ticks", "checkpoint_interval", "max_inflight",
                 "view_change_ticks", "request_timeout_ticks", "retransmit_ticks", "fetch_retry_ticks",
                 "max_pending_txs", "max_buffered_per_peer", "max_tx_strikes", "max_passovers"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    # The pipeline is shorter than the activation delay: the set of every height in flight is known.
    if not 0 <= cfg.eager_inflight <= cfg.max_inflight:
        raise ConfigError("eager_inflight must be between 0 and max_inflight")
    if cfg.max_inflight >= cfg.activation_delay:
        raise ConfigError("max_inflight must be below activation_delay")
    # The window leaves room for a checkpoint interval and the pipeline above it.
    if cfg.watermark_window < cfg.checkpoint_interval + cfg.max_inflight:
        raise ConfigError("watermark_window must be at least checkpoint_interval + max_inflight")
    # Blocks stay within the chain's budget, so every validator accepts what the primary builds.
    if cfg.max_batch_bytes > MAX_BLOCK_TX_BYTES:
        raise ConfigError(f"max_batch_bytes must be at most {MAX_BLOCK_TX_BYTES}")
    # The largest message these settings allow fits a message: none is ever dropped for its size.
    n, largest = len(cfg.validators), max_message_bytes(cfg)
    if largest > MAX_MESSAGE_BYTES:
        raise ConfigError(
            f"with {n} validators, max_inflight {cfg.max_inflight} and batches of {cfg.batch_size} transactions "
            f"and {cfg.max_batch_bytes} bytes, a consensus message could take {largest} bytes, over the "
            f"{MAX_MESSAGE_BYTES}-byte message limit: lower max_inflight or the batch limits"
        )


def max_message_bytes(cfg: ReplicaConfig) -> int:
    """The largest consensus message these settings allow (see bounds.py)."""
    n = len(cfg.validators)
    return max(
        bounds.preprepare_bytes(cfg.batch_size, cfg.max_batch_bytes),
        bounds.view_change_bytes(n, cfg.max_inflight, cfg.batch_size, cfg.max_batch_bytes),
        bounds.new_view_bytes(n, quorum_size(n), cfg.max_inflight),
    )
