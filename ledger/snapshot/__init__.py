"""Backups and restores: one snapshot format (archive.py), checked one way (checks.py) wherever it comes from."""
