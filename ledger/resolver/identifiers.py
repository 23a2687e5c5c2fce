"""Syntax of prefixes and Handle-style identifiers `<prefix>/<suffix>`.

Prefixes are hierarchical, dot-separated segments (88 -> 88.100 -> 88.100.1), or `gs1:<digits>`
for a GS1 company prefix. A suffix is printable text without control characters.
"""

from __future__ import annotations

import re

MAX_PREFIX_LEN = 128
MAX_SUFFIX_LEN = 255

_PREFIX_RE = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9-]*)(?:\.[A-Za-z0-9][A-Za-z0-9-]*)*|gs1:[0-9]{4,12}")


class InvalidIdentifier(ValueError):
    """The text is not a well-formed prefix or identifier; the message says why."""


def check_prefix(prefix: str) -> str:
    # Prefixes are short.
    if not 0 < len(prefix) <= MAX_PREFIX_LEN:
        raise InvalidIdentifier(f"prefix must be 1-{MAX_PREFIX_LEN} characters")
    # Dot-separated alphanumeric segments, or gs1:<digits>.
    if not _PREFIX_RE.fullmatch(prefix):
        raise InvalidIdentifier(f"invalid prefix {prefix!r}: use segments like 88.100.1 or gs1:<digits>")
    return prefix


def parent_prefix(prefix: str) -> str | None:
    """88.100.1 -> 88.100 -> 88 -> None; gs1 prefixes have no parent."""
    if prefix.startswith("gs1:") or "." not in prefix:
        return None
    return prefix.rsplit(".", 1)[0]


def split_handle(handle: str) -> tuple[str, str]:
    """Split and check `prefix/suffix`."""
    prefix, sep, suffix = handle.partition("/")
    # There is a prefix and a suffix.
    if not sep or not suffix:
        raise InvalidIdentifier("an identifier has the form <prefix>/<suffix>")
    check_prefix(prefix)
    # Suffixes are bounded.
    if len(suffix) > MAX_SUFFIX_LEN:
        raise InvalidIdentifier(f"suffix longer than {MAX_SUFFIX_LEN} characters")
    # No control characters or other unprintables anywhere.
    if not suffix.isprintable():
        raise InvalidIdentifier("suffix contains control or unprintable characters")
    # No path tricks.
    if any(part in (".", "..") for part in suffix.split("/")):
        raise InvalidIdentifier("suffix contains '.' or '..' path segments")
    return prefix, suffix
