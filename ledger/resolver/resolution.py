"""Resolution shared by the APIs: an identifier in any accepted form -> its record, and GS1 links.

GS1 link types (GS1 Web Vocabulary, https://gs1.org/voc/). A record's values map to links as:

| value type | link type        | why                                                          |
|------------|------------------|--------------------------------------------------------------|
| TWIN       | gs1:serviceInfo  | the digital stand-in a maintenance app or scanner opens      |
| URL        | gs1:pip          | the product (or item) information page                       |
| EMAIL, HASH, NFT, DESC | none  | not links (a DESC value is used as the links' title)         |

The default link (`gs1:defaultLink`, what a request without `linkType` gets) is the record's TWIN
value with the lowest index, else its URL value with the lowest index. `linkType` is matched
case-insensitively, as `https://gs1.org/voc/pip`, `gs1:pip` or `pip`; `all` and `linkset` ask for
the whole linkset.

A serialised GS1 item (`/01/<gtin>/21/<serial>`) with no record of its own resolves to its product's
record (`/01/<gtin>`), as GS1 resolvers fall back from the item to the product level.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from ledger.resolver.identifiers import Identifier, InvalidIdentifier, digital_link_uri, parse_identifier
from ledger.resolver.registry import IdentifierRecord, Prefix, get_identifier, owning_prefix

GS1_VOC = "https://gs1.org/voc/"
LINK_TYPES = {"TWIN": "serviceInfo", "URL": "pip"}
DEFAULT_LINK = "defaultLink"
LINKSET_WORDS = frozenset({"all", "linkset"})


@dataclass(frozen=True)
class Resolved:
    text: str  # as asked
    key: str  # the storage key of the record (the canonical GS1 key for GS1 items)
    ident: Identifier | None  # parsed GS1 identifier, None for Handles
    prefix: str  # the owning prefix (name)
    prefix_record: Prefix | None
    record: IdentifierRecord | None
    record_key: str  # the key the record was found under (the product's key after a fallback)


def resolve_text(view: Any, text: str, fallback: bool = False) -> Resolved:
    """Look up `text` (any form `parse_identifier` or a plain Handle accepts) in `view`.
    Raises InvalidIdentifier. With `fallback`, a GS1 item without a record falls back to its GTIN's."""
    key, prefix, prefix_record = owning_prefix(view, text)
    ident = parse_identifier(key) if key.startswith("gs1/") else None
    record = get_identifier(view, key)
    record_key = key
    if record is None and fallback and ident is not None and ident.gtin is not None and ident.serial is not None:
        product = f"gs1/01/{ident.gtin}"
        record = get_identifier(view, product)
        record_key = product if record is not None else key
    return Resolved(text, key, ident, prefix, prefix_record, record, record_key)


def normalise_link_type(text: str) -> str:
    """`https://gs1.org/voc/PIP`, `gs1:pip`, `pip` -> `pip` (lower case)."""
    t = text.strip()
    low = t.lower()
    if low.startswith(GS1_VOC):
        t = t[len(GS1_VOC):]
    elif low.startswith("gs1:"):
        t = t[4:]
    return t.lower()


@dataclass(frozen=True)
class Link:
    link_type: str  # short name, e.g. pip
    href: str
    title: str
    index: int


def record_links(record: IdentifierRecord) -> tuple[list[Link], Link | None]:
    """(links in index order, the default link) of a record."""
    title = next((v.value for v in record.values if v.type == "DESC"), "")
    links = [
        Link(LINK_TYPES[v.type], v.value, title or f"{v.type} value {v.index}", v.index)
        for v in sorted(record.values, key=lambda v: v.index) if v.type in LINK_TYPES
    ]
    default = next((lk for lk in links if lk.link_type == LINK_TYPES["TWIN"]), None) or next(iter(links), None)
    return links, default


def select_links(record: IdentifierRecord, link_type: str | None) -> list[Link]:
    """Links matching `link_type` (the default link when None or defaultLink)."""
    links, default = record_links(record)
    wanted = None if link_type is None else normalise_link_type(link_type)
    if wanted is None or wanted == DEFAULT_LINK.lower():
        return [default] if default is not None else []
    return [lk for lk in links if lk.link_type.lower() == wanted]


def anchor_uri(ident: Identifier, base: str) -> str:
    """The item's GS1 Digital Link URI on `base` (no query attributes)."""
    return digital_link_uri(replace(ident, attributes=()), base)


def linkset(record: IdentifierRecord, anchor: str, only: list[Link] | None = None) -> dict[str, Any]:
    """An RFC 9264 linkset (application/linkset+json) of a record's links, the default link included."""
    links, default = record_links(record)
    chosen = links if only is None else only
    context: dict[str, Any] = {"anchor": anchor}
    if default is not None and only is None:
        context[GS1_VOC + DEFAULT_LINK] = [{"href": default.href, "title": default.title}]
    for lk in chosen:
        context.setdefault(GS1_VOC + lk.link_type, []).append({"href": lk.href, "title": lk.title})
    return {"linkset": [context]}


def resolution_url(text: str, base: str) -> str:
    """The URL to print on a nameplate: a GS1 Digital Link URI on `base` for GS1 items, else the Handle
    REST URL of the identifier on `base`. Raises InvalidIdentifier."""
    ident = parse_identifier(text)
    if ident.scheme == "gs1":
        return anchor_uri(ident, base)
    if not base.startswith(("http://", "https://")):
        raise InvalidIdentifier("base must be an http(s) URL")
    return f"{base.rstrip('/')}/api/handles/{ident.canonical}"
