"""The local devnet: its definition and the code that builds it.

- `devnet.toml`: what the devnet is (members and roles, validators and ports, batch settings, the
  Ethereum chain and anchoring intervals, where the demo data lives); `definition.py` reads it.
- `launcher.py`: keys, genesis, node homes and node processes; `ethereum.py`: Anvil, the anchor
  contract's deployment, funding; `processes.py`: child processes and ports; `record.py`: `DIR/devnet.json`.
- `demo/`: the demo data and its loader.
"""
