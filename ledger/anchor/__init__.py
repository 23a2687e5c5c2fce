"""Anchoring the ledger's roots into Ethereum (issue 6).

``contract``: the LedgerAnchor contract tooling (artifact, key files, idempotent deployment, call
helpers). ``records``: the ``anchor.record`` system transaction (state machine; no web3).
``ethclient``: the service's view of the contract. ``recovery``: receipts the ledger lost, found
again in the contract's events. ``service``: the node's anchoring task, which reaches the node through
``port`` (what it needs of the node). (The devnet's Anvil: `devnet/ethereum.py`.)
"""
