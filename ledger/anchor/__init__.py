"""Anchoring the ledger's roots into Ethereum (issue 6).

``ledger.anchor.contract`` holds the LedgerAnchor contract tooling: artifact loading, key files,
idempotent deployment and small call helpers. The node's anchoring service builds on it.
"""
