"""Anchoring the ledger's block hashes into Ethereum (issues 6 and 12).

``settings``: what the ledger certifies (chain, contract, submitter addresses) and the admin action that
changes it. ``records``: ``anchor.attest`` votes, effective anchors (f+1 alike) and the block hashes they
are checked against (state machine; no web3). ``contract``: the LedgerAnchor contract tooling (artifact,
key files, idempotent deployment, call helpers). ``ethclient``: the service's view of the contract.
``observe``: which anchor on the chain to attest. ``outgoing``: this validator's own anchor transaction
(confirmations, reorgs, fees). ``service``: the node's anchoring task, which reaches the node through
``port`` (what it needs of the node). (The devnet's Anvil: `devnet/ethereum.py`.)
"""
