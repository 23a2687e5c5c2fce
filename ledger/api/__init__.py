"""HTTP API of a node (FastAPI)."""
