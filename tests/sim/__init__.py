"""Deterministic simulation of a network of consensus replicas (see network.py)."""
