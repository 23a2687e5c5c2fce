"""Private data: collections of member organisations, commitments on the ledger, plaintext in side stores.

records.py (state records, keys, the commitment), module.py (the state module), sidestore.py (a node's
LevelDB of plaintexts), reads.py (signed read and fetch requests), service.py (a node's side: pending puts,
fetching from member peers, purges), http_fetch.py (an observer's fetches from the validators' HTTP).
"""
