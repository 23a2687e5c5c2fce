"""Identifier registry and resolution."""
