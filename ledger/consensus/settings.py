"""A replica's settings (counts, and durations in ticks) and the checks that they can work."""

from __future__ import annotations

from dataclasses import dataclass

from ledger.errors import ConfigError


@dataclass(frozen=True)
class ReplicaConfig:
    chain_id: str
    validators: tuple[str, ...]  # validator ids in primary-rotation order
    batch_size: int = 1000
    batch_ticks: int = 1  # cut a partial batch after this many ticks
    checkpoint_interval: int = 10  # K: a checkpoint every K blocks
    watermark_window: int = 40  # high watermark = low watermark (stable checkpoint) + this
    max_inflight: int = 4  # pipelining depth above the last delivered block
    view_change_ticks: int = 20  # base progress timeout; doubles per consecutive view change
    max_backoff_exponent: int = 6
    request_timeout_ticks: int = 50  # a backup's queued tx not ordered by then -> view change
    max_tx_strikes: int = 2  # view changes one unordered tx may cause before it is dropped
    retransmit_ticks: int = 5  # while stalled, resend own messages this often
    fetch_retry_ticks: int = 10
    max_pending_txs: int = 200_000
    max_buffered_per_peer: int = 64  # messages for a future view kept per peer


def check_config(cfg: ReplicaConfig) -> None:
    # There are validators, each listed once.
    if not cfg.validators or len(set(cfg.validators)) != len(cfg.validators):
        raise ConfigError("validators must be a non-empty list of distinct ids")
    # Every count and period is positive.
    for name in ("batch_size", "batch_ticks", "checkpoint_interval", "max_inflight", "view_change_ticks",
                 "request_timeout_ticks", "retransmit_ticks", "fetch_retry_ticks", "max_pending_txs",
                 "max_buffered_per_peer", "max_tx_strikes"):
        if getattr(cfg, name) < 1:
            raise ConfigError(f"{name} must be at least 1")
    # The window leaves room for a checkpoint interval and the pipeline above it.
    if cfg.watermark_window < cfg.checkpoint_interval + cfg.max_inflight:
        raise ConfigError("watermark_window must be at least checkpoint_interval + max_inflight")
