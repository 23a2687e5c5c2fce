"""Errors shared across the node's packages.

Dependency-free on purpose: the sans-I/O consensus package may import it too.
"""

from __future__ import annotations


class ConfigError(ValueError):
    """A configuration that cannot work: a node's `config.json` or a replica's settings.

    The message names the setting (and the file, when there is one), so it can be shown as is.
    """
