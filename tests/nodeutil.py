"""Building node homes for tests: keys, a genesis, a config, as `ledger devnet` would."""

from __future__ import annotations

import time
from dataclasses import dataclass
from pathlib import Path

from ledger.config import write_config
from ledger.crypto import SigningKey
from ledger.genesis import Genesis, GenesisMember, GenesisPrefix, GenesisValidator, save_genesis

CHAIN_ID = "test-chain"


@dataclass
class Home:
    path: Path
    validator: SigningKey
    admin: SigningKey
    org1: SigningKey
    org2: SigningKey
    genesis: Genesis


def make_home(tmp_path: Path, prefixes: tuple[tuple[str, str], ...] = (), port: int = 0) -> Home:
    """A single-validator home; `prefixes` are (prefix, member name) pairs created at genesis."""
    validator = SigningKey.from_seed(b"validator")
    admin, org1, org2 = (SigningKey.from_seed(s) for s in (b"admin", b"org1", b"org2"))
    names = {"admin": admin, "org1": org1, "org2": org2}
    genesis = Genesis(
        chain_id=CHAIN_ID,
        timestamp=time.time_ns() // 1_000_000,
        validators=(GenesisValidator("node0", validator.public_key),),
        members=(
            GenesisMember("admin", admin.public_key, ("admin",)),
            GenesisMember("org1", org1.public_key, ("issuer", "registrar")),
            GenesisMember("org2", org2.public_key, ("issuer", "registrar")),
        ),
        prefixes=tuple(GenesisPrefix(p, names[owner].id) for p, owner in prefixes),
    )
    home = tmp_path / "node0"
    validator.save(home / "node.pem")
    save_genesis(genesis, home / "genesis.json")
    write_config(home, {
        "node_key": "node.pem", "genesis": "genesis.json", "data_dir": "data",
        "http": {"host": "127.0.0.1", "port": port}, "batch_size": 100, "tick_ms": 5,
    })
    return Home(home, validator, admin, org1, org2, genesis)
