"""`ledger bench --preload N`: the identifiers go into a real node's state through consensus, and a refusal is
said, not counted as preloaded."""

from __future__ import annotations

from pathlib import Path

import httpx
import pytest

from devnet.record import DevnetError
from ledger.bench_preload import PreloadFailed, _split, preload, preload_identifier
from tests.devnetutil import devnet_down, devnet_up


def test_split_gives_every_transaction_to_one_sender() -> None:
    assert _split(10, 4) == [3, 3, 2, 2]
    assert sum(_split(1_000_001, 4)) == 1_000_001


def test_preload_registers_every_identifier_on_a_real_node(tmp_path: Path) -> None:
    net = devnet_up(tmp_path, 1)
    try:
        figures = preload(net, 250, senders=2, batch=40)
        assert figures["preloaded"] == 250 and figures["preload_tx_per_s"] > 0
        url = net["nodes"][0]["http"]
        for sender, n in ((0, 0), (0, 124), (1, 0), (1, 124)):  # each sender's first and last
            handle = preload_identifier(sender, n).handle
            assert httpx.get(f"{url}/api/handles/{handle}", timeout=10).status_code == 200, handle
        assert httpx.get(f"{url}/api/handles/{preload_identifier(1, 125).handle}", timeout=10).status_code == 404
        # A second preload's members are the first's names: refused before any identifier is sent.
        with pytest.raises(DevnetError, match="preload0"):
            preload(net, 10, senders=1)
    finally:
        devnet_down(net)


def test_a_refused_registration_fails_the_preload(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    net = devnet_up(tmp_path, 1)
    try:
        # Every sender registers the same identifier twice: the second is refused by the state machine.
        monkeypatch.setattr("ledger.bench_preload.preload_identifier", lambda sender, n: preload_identifier(sender, 0))
        with pytest.raises(PreloadFailed, match="refused"):
            preload(net, 5, senders=1, batch=5)
    finally:
        devnet_down(net)


def test_rows_refused_for_their_nonce_alone_are_signed_again(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Under load a row refused before ordering leaves a gap, and the rows after it are refused `nonce_gap`:
    they are not registered, so the preload signs them again and they commit."""
    import ledger.bench_preload as bench_preload

    real = bench_preload.deliver
    calls: list[int] = []

    def gap_once(client: object, txs: list, **kwargs: object) -> list:
        calls.append(len(txs))
        if len(calls) > 1:
            return real(client, txs, **kwargs)  # type: ignore[arg-type]
        half = len(txs) // 2  # the second half never reached the node: refused for the gap
        sent = real(client, txs[:half], **kwargs)  # type: ignore[arg-type]
        return sent + [{"status": "refused", "accepted": False, "reason": "nonce_gap"} for _ in txs[half:]]

    monkeypatch.setattr(bench_preload, "deliver", gap_once)
    net = devnet_up(tmp_path, 1)
    try:
        assert bench_preload.preload(net, 10, senders=1, batch=10)["preloaded"] == 10
        assert calls == [10, 5]
        url = net["nodes"][0]["http"]
        for n in range(10):
            handle = preload_identifier(0, n).handle
            assert httpx.get(f"{url}/api/handles/{handle}", timeout=10).status_code == 200, handle
    finally:
        devnet_down(net)
