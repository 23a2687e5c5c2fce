"""Identifier records in the Handle.Net REST JSON shape.

HS_ADMIN (index 100) is derived from prefix ownership: the prefix's admin handle `0.NA/<prefix>`,
index 200, with the permissions a prefix owner holds over its identifiers.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from ledger.resolver.registry import DEFAULT_TTL, IdentifierRecord

HS_ADMIN_INDEX = 100
# add/remove/modify value, delete/add handle; no derived-prefix or admin-list rights (Handle bits 11..0)
OWNER_PERMISSIONS = "011111110011"


def iso_time(ms: int) -> str:
    return datetime.fromtimestamp(ms / 1000, UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def handle_values(record: IdentifierRecord, prefix: str) -> list[dict[str, Any]]:
    """All values of a record, HS_ADMIN included, in index order."""
    values: list[dict[str, Any]] = [
        {
            "index": v.index,
            "type": v.type,
            "data": {"format": "string", "value": v.value},
            "ttl": v.ttl,
            "timestamp": iso_time(v.timestamp),
        }
        for v in record.values
    ]
    values.append({
        "index": HS_ADMIN_INDEX,
        "type": "HS_ADMIN",
        "data": {
            "format": "admin",
            "value": {"handle": f"0.NA/{prefix}", "index": 200, "permissions": OWNER_PERMISSIONS},
        },
        "ttl": DEFAULT_TTL,
        "timestamp": iso_time(record.created_at),
    })
    values.sort(key=lambda v: v["index"])
    return values


def type_matches(value_type: str, wanted: str) -> bool:
    """A wanted type ending in '.' matches its period-delimited sub-types (and itself)."""
    if wanted.endswith("."):
        return value_type == wanted[:-1] or value_type.startswith(wanted)
    return value_type == wanted


def filter_values(values: list[dict[str, Any]], indexes: list[int], types: list[str]) -> list[dict[str, Any]]:
    """Values matching ANY given index or ANY given type, in record order; all when no filter."""
    if not indexes and not types:
        return values
    return [
        v for v in values
        if v["index"] in indexes or any(type_matches(v["type"], t) for t in types)
    ]
