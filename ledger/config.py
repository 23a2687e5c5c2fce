"""A node's configuration: `HOME/config.json`, with paths relative to HOME.

```json
{"node_key": "node.pem", "genesis": "genesis.json", "data_dir": "data",
 "http": {"host": "127.0.0.1", "port": 8700},
 "p2p": {"host": "127.0.0.1", "port": 9700},
 "peers": [{"id": "<validator id>", "host": "10.0.0.2", "port": 9700}],
 "batch_size": 1000, "tick_ms": 10,
 "view_change_timeout_ms": 2000, "request_timeout_ms": 1500, "retransmit_ms": 500,
 "ethereum": {"rpc": "http://127.0.0.1:8545", "chain_id": 31337, "contract": "0x...",
              "key_file": "eth.key", "interval_blocks": 1000, "interval_s": 600}}
```
The `ethereum` section is optional: without it the node does not anchor.
Peers are named by host and port, so validators on separate machines are configured the same
way as a local devnet.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any


class ConfigError(ValueError):
    pass


@dataclass(frozen=True)
class Endpoint:
    host: str
    port: int


@dataclass(frozen=True)
class Peer:
    id: str
    host: str
    port: int


@dataclass(frozen=True)
class EthereumConfig:
    """Anchoring to Ethereum (the optional `ethereum` section; absent means anchoring is off).

    `key_file` holds the validator's hex secp256k1 key (mode 0600); without it the key is derived
    from the node key (devnets only). `chain_id` None accepts whatever chain the RPC serves.
    """

    rpc: str
    contract: str
    chain_id: int | None = None
    key_file: Path | None = None
    interval_blocks: int = 1000  # anchor once this many blocks are unanchored...
    interval_s: float = 600.0  # ...or once the oldest unanchored block has waited this long
    grace_s: float = 20.0  # a backup validator takes over after rank * grace_s
    max_backoff_s: float = 60.0  # cap of the exponential back-off after RPC failures
    tx_timeout_s: float = 120.0  # wait for the anchor transaction's receipt this long
    # The contract's deployment block: scans of its events start no earlier (public RPCs refuse
    # `eth_getLogs` over long ranges, and nothing of this contract lies before it).
    deploy_block: int = 0

    @classmethod
    def from_dict(cls, raw: dict[str, Any], home: Path) -> EthereumConfig:
        key_file = raw.get("key_file")
        chain_id = raw.get("chain_id")
        return cls(
            rpc=str(raw["rpc"]),
            contract=str(raw["contract"]),
            chain_id=None if chain_id is None else int(chain_id),
            key_file=None if not key_file else home / str(key_file),
            interval_blocks=max(1, int(raw.get("interval_blocks", 1000))),
            interval_s=float(raw.get("interval_s", 600.0)),
            grace_s=float(raw.get("grace_s", 20.0)),
            max_backoff_s=float(raw.get("max_backoff_s", 60.0)),
            tx_timeout_s=float(raw.get("tx_timeout_s", 120.0)),
            deploy_block=max(0, int(raw.get("deploy_block", 0))),
        )


@dataclass(frozen=True)
class NodeConfig:
    home: Path
    node_key: Path
    genesis: Path
    data_dir: Path
    http: Endpoint
    p2p: Endpoint
    peers: tuple[Peer, ...] = ()
    batch_size: int = 1000
    tick_ms: int = 10
    # Consensus timers in milliseconds (the replica counts them in ticks of tick_ms).
    view_change_timeout_ms: int = 2000  # no progress on in-flight work for this long -> view change
    request_timeout_ms: int = 1500  # a forwarded client tx not ordered by then -> view change
    retransmit_ms: int = 500  # while stalled, resend own consensus messages this often
    verify_threads: int = 2  # signature-checking threads; 1 = verify on the event loop
    batch_wait_ms: int = 30  # the primary cuts a partial batch after waiting this long (bigger blocks)
    ethereum: EthereumConfig | None = None  # anchoring; None = off
    extra: dict[str, Any] = field(default_factory=dict)

    @classmethod
    def load(cls, home: str | Path) -> NodeConfig:
        home = Path(home).resolve()
        path = home / "config.json"
        try:
            raw = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
        try:
            return cls(
                home=home,
                node_key=home / raw.get("node_key", "node.pem"),
                genesis=home / raw.get("genesis", "genesis.json"),
                data_dir=home / raw.get("data_dir", "data"),
                http=Endpoint(raw["http"]["host"], int(raw["http"]["port"])),
                p2p=Endpoint(raw.get("p2p", {}).get("host", "127.0.0.1"), int(raw.get("p2p", {}).get("port", 0))),
                peers=tuple(Peer(p["id"], p["host"], int(p["port"])) for p in raw.get("peers", [])),
                batch_size=int(raw.get("batch_size", 1000)),
                tick_ms=int(raw.get("tick_ms", 10)),
                view_change_timeout_ms=int(raw.get("view_change_timeout_ms", 2000)),
                request_timeout_ms=int(raw.get("request_timeout_ms", 1500)),
                retransmit_ms=int(raw.get("retransmit_ms", 500)),
                verify_threads=int(raw.get("verify_threads", 2)),
                batch_wait_ms=int(raw.get("batch_wait_ms", 30)),
                ethereum=EthereumConfig.from_dict(raw["ethereum"], home) if raw.get("ethereum") else None,
                extra={k: v for k, v in raw.items() if k not in _KNOWN},
            )
        except (KeyError, TypeError, ValueError) as exc:
            raise ConfigError(f"{path}: missing or invalid setting {exc}") from exc


_KNOWN = {
    "node_key", "genesis", "data_dir", "http", "p2p", "peers", "batch_size", "tick_ms",
    "view_change_timeout_ms", "request_timeout_ms", "retransmit_ms", "verify_threads", "batch_wait_ms",
    "ethereum",
}


def write_config(home: Path, settings: dict[str, Any]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(json.dumps(settings, indent=2) + "\n")


def ticks(ms: int, tick_ms: int) -> int:
    """A duration in whole ticks, at least one."""
    return max(1, -(-ms // tick_ms))
