"""A node's configuration: `HOME/config.json`, checked in full when the node starts.

```json
{"node_key": "node.pem", "genesis": "genesis.json", "data_dir": "data",
 "http": {"host": "127.0.0.1", "port": 8700},
 "p2p": {"host": "127.0.0.1", "port": 9700},
 "peers": [{"id": "<validator id>", "host": "10.0.0.2", "port": 9700}],
 "batch_size": 1000, "tick_ms": 10,
 "view_change_timeout_ms": 2000, "request_timeout_ms": 1500, "retransmit_ms": 500,
 "ethereum": {"rpc": "http://127.0.0.1:8545", "key_file": "eth.key", "confirmations": 3,
              "interval_blocks": 1000, "interval_s": 600}}
```
Only `http.port` is required (and `rpc` within `ethereum`); every other setting has
the default written next to it in the models below, and nowhere else. Paths (`node_key`, `genesis`,
`data_dir`, `ethereum.key_file`) are relative to HOME. The `ethereum` section is optional: without
it the node does not anchor. Peers are named by host and port, so validators on separate machines
are configured the same way as a local devnet.

A misspelt or unknown key anywhere, a value of the wrong JSON type (`"8700"` for a port) or out of
range (`"tick_ms": 0`) stops the node at start with a `ConfigError` naming the file and the setting:
a typo must not silently leave a default in force.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, ValidationError, ValidationInfo, field_validator

from ledger.errors import ConfigError


def _under_home(value: Any, info: ValidationInfo) -> Any:
    """A path given as text is relative to HOME, which `NodeConfig.load` passes as context."""
    if isinstance(value, Path):
        return value
    if not isinstance(value, str):
        raise ValueError("should be a path (a string)")
    home = (info.context or {}).get("home")
    return Path(home, value) if home is not None else Path(value)


HomePath = Annotated[Path, BeforeValidator(_under_home)]


class _Settings(BaseModel):
    # strict: JSON types as written (no "8700" for a port, no true for a count); forbid: no typos.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Endpoint(_Settings):
    host: str = Field(default="127.0.0.1", min_length=1)  # loopback: nothing is exposed unless asked
    port: int = Field(ge=0, le=65535)  # 0 = any free port


class Peer(_Settings):
    id: str = Field(min_length=1)  # the peer's validator id (printed by `ledger keygen`)
    host: str = Field(min_length=1)
    port: int = Field(ge=1, le=65535)


class EthereumConfig(_Settings):
    """Anchoring to Ethereum: this host's RPC and key (the optional `ethereum` section; absent means this
    validator neither anchors nor attests anchors).

    The chain, the contract and the validators' submitter addresses are not this file's to choose: the
    ledger certifies them (genesis `anchoring`, governance). `contract` and `chain_id`, when given, are
    what the operator expects; a node whose expectation differs from the certified settings refuses to
    anchor and says so. `key_file` holds the validator's hex secp256k1 key (mode 0600); without it the key
    is derived from the node key (devnets only).
    """

    rpc: str = Field(min_length=1)
    contract: str | None = Field(default=None, min_length=1)  # must equal the certified contract (any case)
    chain_id: int | None = Field(default=None, ge=1)  # must equal the certified chain id
    key_file: HomePath | None = None
    interval_blocks: int = Field(default=1000, ge=1)  # anchor once this many blocks are unanchored...
    interval_s: float = Field(default=600.0, ge=0)  # ...or once the oldest unanchored block has waited this long
    grace_s: float = Field(default=20.0, ge=0)  # a backup validator takes over after rank * grace_s
    max_backoff_s: float = Field(default=60.0, ge=0)  # cap of the exponential back-off after RPC failures
    tx_timeout_s: float = Field(default=120.0, gt=0)  # one RPC request may take this long
    # An anchor's event counts (is attested) once its block has this many confirmations (1: mined), so a
    # shallower reorg never leaves an effective anchor pointing at nothing; a lost anchor is sent again.
    confirmations: int = Field(default=3, ge=1)
    fee_bump_after_s: float = Field(default=60.0, gt=0)  # an anchor not mined by then is resent with higher fees...
    max_fee_gwei: float = Field(default=500.0, gt=0)  # ...up to this max fee per gas
    # The contract's deployment block: scans of its events start no earlier (public RPCs refuse
    # `eth_getLogs` over long ranges, and nothing of this contract lies before it).
    deploy_block: int = Field(default=0, ge=0)

    @field_validator("key_file", mode="before")
    @classmethod
    def _empty_key_file_is_none(cls, value: Any) -> Any:
        return None if value == "" else value  # "" has always meant "no key file"


class NodeConfig(_Settings):
    home: Path  # the directory holding config.json (set by `load`; not a setting in the file)
    node_key: HomePath = Field(default="node.pem", validate_default=True)  # (validated: a default lies in HOME too)
    genesis: HomePath = Field(default="genesis.json", validate_default=True)
    data_dir: HomePath = Field(default="data", validate_default=True)
    http: Endpoint
    p2p: Endpoint = Endpoint(port=0)
    peers: tuple[Peer, ...] = Field(default=(), strict=False)  # (not strict: JSON gives a list)
    batch_size: int = Field(default=1000, ge=1)
    tick_ms: int = Field(default=10, ge=1)
    # Consensus timers in milliseconds (the replica counts them in ticks of tick_ms).
    view_change_timeout_ms: int = Field(default=2000, ge=1)  # in-flight work stalled this long -> view change
    request_timeout_ms: int = Field(default=1500, ge=1)  # a forwarded client tx not ordered by then -> view change
    retransmit_ms: int = Field(default=500, ge=1)  # while stalled, resend own consensus messages this often
    verify_threads: int = Field(default=2, ge=1)  # signature-checking threads; 1 = verify on the event loop
    batch_wait_ms: int = Field(default=30, ge=0)  # the primary cuts a partial batch after this wait
    ethereum: EthereumConfig | None = None  # anchoring; None = off

    @field_validator("ethereum", mode="before")
    @classmethod
    def _empty_section_is_off(cls, value: Any) -> Any:
        return None if value == {} else value  # `"ethereum": {}` has always meant "off"

    @classmethod
    def load(cls, home: str | Path) -> NodeConfig:
        """The configuration in `home`/config.json; raises ConfigError naming the file and setting."""
        home = Path(home).resolve()
        path = home / "config.json"
        try:
            raw = json.loads(path.read_text())
        except OSError as exc:
            raise ConfigError(f"cannot read {path}: {exc.strerror}") from exc
        except json.JSONDecodeError as exc:
            raise ConfigError(f"{path} is not valid JSON: {exc}") from exc
        if not isinstance(raw, dict):
            raise ConfigError(f"{path}: expected a JSON object of settings")
        if "home" in raw:  # HOME is where this file lies, not one of its settings
            raise ConfigError(f"{path}: unknown setting 'home'")
        try:
            return cls.model_validate({**raw, "home": home}, context={"home": home})
        except ValidationError as exc:
            raise ConfigError(f"{path}: " + "; ".join(_describe(e) for e in exc.errors())) from None


def _describe(error: Any) -> str:
    """One validation error in the words of config.json: `peers[1].port`, not `('peers', 1, 'port')`."""
    name = "".join(f"[{part}]" if isinstance(part, int) else f".{part}" for part in error["loc"]).lstrip(".")
    if error["type"] == "extra_forbidden":
        return f"unknown setting '{name}'"
    if error["type"] == "missing":
        return f"missing setting '{name}'"
    value = error["input"]
    got = "" if isinstance(value, dict | list) else f" (got {json.dumps(value, default=str)})"
    return f"setting '{name}': {error['msg'].removeprefix('Value error, ')}{got}"


def write_config(home: Path, settings: dict[str, Any]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(json.dumps(settings, indent=2) + "\n")


def ticks(ms: int, tick_ms: int) -> int:
    """A duration in whole ticks, at least one."""
    return max(1, -(-ms // tick_ms))
