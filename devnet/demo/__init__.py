"""The devnet's demo data (`ledger devnet up --demo`): `equipment.csv` (prefixes, owners and identifier
records), `assets.toml` (tokens and licences), and `loader.py`, which submits them."""
