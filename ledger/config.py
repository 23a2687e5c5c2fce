"""A node's configuration: `HOME/config.json`, checked in full when the node starts.

```json
{"node_key": "node.pem", "genesis": "genesis.json", "data_dir": "data",
 "http": {"host": "127.0.0.1", "port": 8700, "limits": {"reads_per_s": 2000, "exempt": ["10.1.0.0/16"]}},
 "p2p": {"host": "127.0.0.1", "port": 9700},
 "peers": [{"id": "<validator id>", "host": "10.0.0.2", "port": 9700}],
 "peer_links": {"heartbeat_ms": 250, "dead_after_ms": 1500},
 "node_key_passphrase": {"env": "LEDGER_KEY_PASSPHRASE", "file": null},
 "batch_size": 1000, "tick_ms": 10,
 "view_change_timeout_ms": 2000, "request_timeout_ms": 1500, "retransmit_ms": 500,
 "ethereum": {"rpc": "http://127.0.0.1:8545", "key_file": "eth.key", "confirmations": 3,
              "interval_blocks": 1000, "interval_s": 600}}
```
Only `http.port` is required (and `rpc` and `key_file` within `ethereum`); every other setting has
the default written next to it in the models below, and nowhere else. Paths (`node_key`, `genesis`,
`data_dir`, `node_key_passphrase.file`, `ethereum.key_file`) are relative to HOME. The `ethereum`
section is optional: without it the node neither anchors nor attests anchors. Peers are named by host
and port, so validators on separate machines are configured the same way as a local devnet.

A misspelt or unknown key anywhere, a value of the wrong JSON type (`"8700"` for a port) or out of
range (`"tick_ms": 0`) stops the node at start with a `ConfigError` naming the file and the setting:
a typo must not silently leave a default in force.
"""

from __future__ import annotations

import ipaddress
import json
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import (
    BaseModel,
    BeforeValidator,
    ConfigDict,
    Field,
    ValidationError,
    ValidationInfo,
    field_validator,
    model_validator,
)

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
DEV_CHAIN_IDS = (31337, 1337)  # Anvil and Hardhat; Ganache and geth --dev


class _Settings(BaseModel):
    # strict: JSON types as written (no "8700" for a port, no true for a count); forbid: no typos.
    model_config = ConfigDict(frozen=True, extra="forbid", strict=True)


class Endpoint(_Settings):
    host: str = Field(default="127.0.0.1", min_length=1)  # loopback: nothing is exposed unless asked
    port: int = Field(ge=0, le=65535)  # 0 = any free port


def _network(value: Any) -> Any:
    if not isinstance(value, str):
        raise ValueError("should be an address or network in CIDR notation (a string)")
    try:
        return ipaddress.ip_network(value, strict=False)
    except ValueError as exc:
        raise ValueError(str(exc)) from None


Network = Annotated[ipaddress.IPv4Network | ipaddress.IPv6Network, BeforeValidator(_network)]


class HttpLimits(_Settings):
    """What one HTTP client may cost the node (`http.limits`; enforced by `ledger.api.guard`).

    A client is an IP address (an IPv6 /64). Every request takes a token from its client's bucket
    (reads: GET/HEAD and `POST /v1/resolve`; writes: other methods); proofs and batches take more
    (see the OpenAPI document). An empty bucket is answered 429 with `Retry-After`, and the
    connection is not read again until then. `exempt` clients (e.g. a monitoring host, a benchmark)
    have no rate limit and no per-client connection limit. Validators talk over the peer port,
    which is not HTTP and never rate limited.
    """

    max_connections: int = Field(default=4096, ge=1)  # open HTTP connections in all; more are closed at once
    max_connections_per_client: int = Field(default=256, ge=1)
    header_timeout_s: float = Field(default=10.0, gt=0)  # a request's line and headers must arrive in this time
    idle_timeout_s: float = Field(default=30.0, gt=0)  # keep-alive; also a client not reading answers this long
    body_timeout_s: float = Field(default=60.0, gt=0)  # a request body must arrive in this time
    max_header_bytes: int = Field(default=16384, ge=1024)  # request line and headers
    max_body_bytes: int = Field(default=16 * 1024 * 1024, ge=1024)  # any transfer encoding
    linger_s: float = Field(default=2.0, ge=0)  # after refusing a body, read and drop it this long, then close
    rate_limits: bool = True
    reads_per_s: float = Field(default=2000.0, gt=0)  # tokens per second per client
    read_burst: float = Field(default=4000.0, ge=1)  # bucket size
    writes_per_s: float = Field(default=50.0, gt=0)  # `POST /v1/tx` requests per second per client
    write_burst: float = Field(default=200.0, ge=1)
    exempt: tuple[Network, ...] = Field(default=(), strict=False)
    answer_cache_mb: float = Field(default=64.0, ge=0)  # cached Handle answers (0: no cache)


class HttpEndpoint(Endpoint):
    limits: HttpLimits = HttpLimits()


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
    anchor and says so. `key_file` holds the validator's hex secp256k1 key (mode 0600) and is required,
    unless `dev_key_from_node_key` asks for a key derived from the node key: allowed only with the
    `chain_id` of a local development chain (the RPC's chain id is checked against it), since anyone
    who ever sees the node key file also holds that Ethereum key.
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
    dev_key_from_node_key: bool = False  # development chains only (see above)

    @field_validator("key_file", mode="before")
    @classmethod
    def _empty_key_file_is_none(cls, value: Any) -> Any:
        return None if value == "" else value  # "" has always meant "no key file"

    @model_validator(mode="after")
    def _a_key_of_its_own(self) -> EthereumConfig:
        if self.dev_key_from_node_key:
            if self.key_file is not None:
                raise ValueError("give key_file or dev_key_from_node_key, not both")
            if self.chain_id not in DEV_CHAIN_IDS:
                raise ValueError(f"dev_key_from_node_key needs chain_id {' or '.join(map(str, DEV_CHAIN_IDS))} "
                                 "(a development chain); a real chain needs key_file")
        elif self.key_file is None:
            raise ValueError("key_file is required: the validator's Ethereum key (hex, mode 0600)")
        return self


class PassphraseSource(_Settings):
    """Where an encrypted node key's passphrase comes from (`node_key_passphrase`; not read for a
    key that is not encrypted). Never a command-line argument: others can read those."""

    env: str = Field(default="LEDGER_KEY_PASSPHRASE", min_length=1)  # the environment variable holding it...
    file: HomePath | None = None  # ...unless this file (mode 0600) is named: then only the file is read


class PeerLinks(_Settings):
    """The encrypted links between validators (`peer_links`; ledger/net/transport.py explains them)."""

    heartbeat_ms: int = Field(default=250, ge=10)  # a dialer pings each link this often; the listener answers
    dead_after_ms: int = Field(default=1500, ge=50)  # a link silent this long (while this node ran) is closed
    handshake_timeout_ms: int = Field(default=3000, ge=50)  # TCP connect excluded: TLS and the peer's acceptance
    connect_timeout_ms: int = Field(default=2000, ge=50)
    reconnect_max_ms: int = Field(default=1000, ge=10)  # cap of the back-off between dials of a peer that is down
    max_pending_handshakes: int = Field(default=64, ge=1)  # unauthenticated connections at once, in all...
    max_pending_per_address: int = Field(default=8, ge=1)  # ...and from one address (an IPv6 /64)

    @field_validator("dead_after_ms")
    @classmethod
    def _room_for_two_heartbeats(cls, value: int, info: ValidationInfo) -> int:
        heartbeat = info.data.get("heartbeat_ms")
        if heartbeat is not None and value < 2 * heartbeat:
            raise ValueError(f"should be at least twice heartbeat_ms ({heartbeat})")
        return value


class ObserverSettings(_Settings):
    """Where an observer (`"role": "observer"`) takes certified blocks from and sends writes to: the
    validators' HTTP URLs (`observer.validators`). None of them is trusted: every block's certificate
    is checked against the validator set at its height, and one that serves a bad block or is down is
    passed over for the next (ledger/observer.py)."""

    validators: tuple[str, ...] = Field(min_length=1, strict=False)  # e.g. "http://10.20.0.7:8700"
    poll_ms: int = Field(default=300, ge=10)  # ask for new blocks this often while at the head
    request_timeout_s: float = Field(default=10.0, gt=0)  # one block request to a validator
    forward_timeout_s: float = Field(default=130.0, gt=0)  # a forwarded write (`?wait=true` waits up to 120 s)

    @field_validator("validators")
    @classmethod
    def _http_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"should be http(s) URLs of validators (got {json.dumps(url)})")
        return tuple(url.rstrip("/") for url in value)


class SyncSettings(_Settings):
    """How a node with an empty home joins the ledger (`sync`): `"mode": "blocks"` replays every block from
    its peers; `"mode": "state"` (or `node run --state-sync`) first takes a certified snapshot of the state
    from the HTTP URLs in `sources` (an observer's default: its validators), checking every chunk, then
    catches up the blocks after it (ledger/snapshot/statesync.py), `fetchers` chunks of up to `chunk_bytes`
    in flight at once. A home that holds blocks catches up by blocks either way.

    `"history": "full"`: a node that joined by state sync then fetches the blocks below its snapshot in the
    background, newest first, `history_batch` blocks a request, from the same sources, each batch checked as a
    hash chain down from the certified snapshot block (ledger/snapshot/history.py); `"recent"` (the default)
    keeps only the blocks from the snapshot on.

    Serving: a node exports its state tree ahead (ledger/snapshot/exports.py) once its head is `export_every`
    heights past its newest export (0: never) and `export_min_interval_s` after the last one began, keeps the
    newest `exports_kept`, and offers the newest to joining nodes."""

    mode: Literal["blocks", "state"] = "blocks"
    history: Literal["recent", "full"] = "recent"
    history_batch: int = Field(default=64, ge=1, le=64)  # older blocks asked of a source at once
    sources: tuple[str, ...] = Field(default=(), strict=False)  # e.g. "http://10.20.0.7:8700"
    chunk_bytes: int = Field(default=1 << 20, ge=1024, le=1 << 20)  # one state chunk asked of a source
    fetchers: int = Field(default=4, ge=1, le=32)  # state chunks asked at once, spread over the sources
    export_every: int = Field(default=1000, ge=0)  # heights between state exports (0: none)
    export_min_interval_s: float = Field(default=600.0, ge=0)  # and at least this long between their starts
    exports_kept: int = Field(default=2, ge=1, le=100)  # finished exports kept on disk, the newest

    @field_validator("sources")
    @classmethod
    def _http_urls(cls, value: tuple[str, ...]) -> tuple[str, ...]:
        for url in value:
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"should be http(s) URLs of peers (got {json.dumps(url)})")
        return tuple(url.rstrip("/") for url in value)


class PruneSettings(_Settings):
    """Pruning (`prune`): without `keep_heights` the node is an archive node (every height answerable). With
    it, the node keeps the state of the last `keep_heights` heights, of every height above the latest Ethereum
    anchor, of anchored heights and of validator-set changes, and deletes the rest every `every_blocks`
    blocks (ledger/pruning.py). Blocks and certificates are kept."""

    keep_heights: int | None = Field(default=None, ge=1)
    every_blocks: int = Field(default=100, ge=1)


class NodeConfig(_Settings):
    home: Path  # the directory holding config.json (set by `load`; not a setting in the file)
    node_key: HomePath = Field(default="node.pem", validate_default=True)  # (validated: a default lies in HOME too)
    node_key_passphrase: PassphraseSource = PassphraseSource()  # used only if the node key file is encrypted
    genesis: HomePath = Field(default="genesis.json", validate_default=True)
    data_dir: HomePath = Field(default="data", validate_default=True)
    http: HttpEndpoint
    p2p: Endpoint = Endpoint(port=0)
    peers: tuple[Peer, ...] = Field(default=(), strict=False)  # (not strict: JSON gives a list)
    peer_links: PeerLinks = PeerLinks()
    batch_size: int = Field(default=1000, ge=1)
    tick_ms: int = Field(default=10, ge=1)
    # Consensus timers in milliseconds (the replica counts them in ticks of tick_ms).
    view_change_timeout_ms: int = Field(default=2000, ge=1)  # in-flight work stalled this long -> view change
    request_timeout_ms: int = Field(default=1500, ge=1)  # a forwarded client tx not ordered by then -> view change
    retransmit_ms: int = Field(default=500, ge=1)  # while stalled, resend own consensus messages this often
    verify_threads: int = Field(default=2, ge=1)  # signature-checking threads; 1 = verify on the event loop
    batch_wait_ms: int = Field(default=30, ge=0)  # the primary cuts a partial batch after this wait...
    # ...or at once while fewer than this many of its blocks are in flight (at most the pipeline depth, 4;
    # 0, the default: always wait). Off by default: over delayed links on a loaded machine it drew
    # pass-over suspicions (docs/performance.md, "Over wide-area links"), and it saved latency only when idle.
    batch_eager_inflight: int = Field(default=0, ge=0, le=4)
    ethereum: EthereumConfig | None = None  # anchoring; None = off
    # A validator votes; an observer follows certified blocks over HTTP and serves reads (ledger/observer.py).
    role: Literal["validator", "observer"] = "validator"
    observer: ObserverSettings | None = None  # required with role "observer", refused otherwise
    log_format: Literal["text", "json"] = "text"  # json: one JSON object per log line (`node run --log-json`)
    sync: SyncSettings = SyncSettings()  # how an empty home joins: replay blocks, or state sync first
    prune: PruneSettings = PruneSettings()  # archive (the default), or keep recent and anchored state only
    # LevelDB tables held open (ledger/store.py MAX_OPEN_FILES): more makes random reads of a large store
    # (serving a state sync) cheaper and the node's resident memory larger (up to about 2 MB a table).
    leveldb_open_files: int = Field(default=200, ge=20, le=100_000)
    # LevelDB's table size in MB (its own default is 2). Larger tables are fewer: more of a large store stays
    # open (cheaper reads) and mapped into memory (docs/performance.md, "Larger tables").
    leveldb_table_mb: int = Field(default=2, ge=1, le=256)

    def sync_sources(self) -> tuple[str, ...]:
        """Where state sync takes its snapshot: `sync.sources`, else an observer's validators."""
        if self.sync.sources:
            return self.sync.sources
        return self.observer.validators if self.observer is not None else ()

    @model_validator(mode="after")
    def _observer_settings_match_role(self) -> NodeConfig:
        if self.role == "observer":
            if self.observer is None:
                raise ValueError("role 'observer' needs an 'observer' section naming the validators' HTTP URLs")
            if self.ethereum is not None:
                raise ValueError("an observer does not anchor: remove the 'ethereum' section")
        elif self.observer is not None:
            raise ValueError("an 'observer' section needs \"role\": \"observer\"")
        return self

    @model_validator(mode="after")
    def _full_history_is_not_pruned(self) -> NodeConfig:
        if self.sync.history == "full" and self.prune.keep_heights is not None:
            raise ValueError("\"sync\": {\"history\": \"full\"} makes an archive node, which keeps every height: "
                             "remove prune.keep_heights, or keep the default \"history\": \"recent\"")
        return self

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
    if not name:  # a rule across settings (e.g. role and its section): its message names them
        return error["msg"].removeprefix("Value error, ")
    return f"setting '{name}': {error['msg'].removeprefix('Value error, ')}{got}"


def write_config(home: Path, settings: dict[str, Any]) -> None:
    home.mkdir(parents=True, exist_ok=True)
    (home / "config.json").write_text(json.dumps(settings, indent=2) + "\n")


def ticks(ms: int, tick_ms: int) -> int:
    """A duration in whole ticks, at least one."""
    return max(1, -(-ms // tick_ms))
