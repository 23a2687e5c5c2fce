"""Identifiers: Handle-style `<prefix>/<suffix>` and GS1 items, parsed to one canonical key.

Prefixes are hierarchical, dot-separated segments (88 -> 88.100 -> 88.100.1), or `gs1:<digits>`
for a GS1 company prefix. A suffix is printable text without control characters.

`parse_identifier` accepts
- a Handle identifier `88.100.1/EQ-1`;
- a GS1 Digital Link URI `https://host/01/{gtin}/21/{serial}` or bare path `/01/...`;
- an EPC SGTIN URN `urn:epc:id:sgtin:0614141.812345.6789`;
- GS1 element strings `(01)80614141123458(21)6789` or `^0180614141123458^216789`;
- the canonical GS1 key `gs1/01/<gtin14>/21/<serial>`;
- a GS1 item under its company prefix `gs1:9506000/01/09506000134376/21/12345`, or with the EPC
  encoded without colons, `gs1:0614141/sgtin.0614141.812345.6789` (REFERENCE);
and returns an `Identifier` whose `canonical` is the same for every form of one item.

Decisions:
- GS1 canonical key: `gs1/<key AI>/<key>[/<AI>/<value>...]`, e.g. `gs1/01/09506000134376/21/12345`. A GTIN
  does not tell the length of its company prefix (6-12 digits), so the key does not carry it; the
  registry finds the owner by trying `gs1_prefix_candidates(gtin14)` (`gs1:<digits>`, longest first).
  As a Handle, the key is prefix `gs1`, suffix `01/...`, so `split_handle` accepts it.
- The key holds the primary key and the qualifiers that name an instance: (21) serial, (235), (254),
  (7040), (8011), (8019). (22) CPV and (10) lot, and every data attribute, are kept in
  `Identifier.qualifiers` (path qualifiers in path order, then attributes sorted by AI), not in the key:
  `/01/X/10/L/21/S` and `urn:epc:id:sgtin:...` of the same serialised item share one key. Other query
  parameters (linkType, ...) are kept in `attributes`.
- Values in the key are percent-encoded as Digital Link path components (everything but A-Z a-z 0-9
  -._~), so the key holds no ':' (unusable in Handle clients, REFERENCE), no '/' inside a value, no
  space or '%'-ambiguity; the key re-parses to the same Identifier.
- Handle suffixes containing ':' are rejected by `parse_identifier` (they are not usable by common
  Handle clients); EPC codes are accepted as URNs and stored under their GS1 key instead. Handle
  identifiers are case-sensitive and not otherwise normalised. `split_handle` keeps its old behaviour.
- A path without a leading '/' (`01/0950...`) is a Handle (prefix `01`), not a Digital Link path.
- GS1 policy where GS1 tools disagree: see the `gs1` module docstring.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Literal
from urllib.parse import unquote

from ledger.resolver import epc, gs1
from ledger.resolver.gs1 import InvalidIdentifier

__all__ = [
    "MAX_IDENTIFIER_LEN",
    "MAX_PREFIX_LEN",
    "MAX_SUFFIX_LEN",
    "Identifier",
    "InvalidIdentifier",
    "check_gtin",
    "check_prefix",
    "digital_link_uri",
    "gs1_prefix_candidates",
    "owner_prefix_candidates",
    "parent_prefix",
    "parse_identifier",
    "split_handle",
]

MAX_PREFIX_LEN = 128
MAX_SUFFIX_LEN = 255
MAX_IDENTIFIER_LEN = gs1.MAX_URI_LEN
GS1_PREFIX_LENGTHS = range(12, 3, -1)  # company prefix lengths tried, longest first (check_prefix: 4-12)

_PREFIX_RE = re.compile(r"(?:[A-Za-z0-9][A-Za-z0-9-]*)(?:\.[A-Za-z0-9][A-Za-z0-9-]*)*|gs1:[0-9]{4,12}")
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.-]*://")
_CLASS_QUALIFIERS = frozenset({"22", "10"})  # qualifiers that name a class or batch, not an instance

check_gtin = gs1.check_gtin


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


@dataclass(frozen=True)
class Identifier:
    """A parsed identifier. `canonical` (= `prefix/suffix`) is the one key of the item."""

    scheme: Literal["handle", "gs1"]
    prefix: str
    suffix: str
    canonical: str
    gtin: str | None = None  # GTIN-14 when the GS1 key is (01)
    serial: str | None = None  # AI (21)
    qualifiers: tuple[tuple[str, str], ...] = ()  # GS1 (AI, value) pairs outside the key
    attributes: tuple[tuple[str, str], ...] = ()  # other Digital Link query parameters, in order

    @property
    def key_elements(self) -> tuple[tuple[str, str], ...]:
        """The GS1 (AI, value) pairs that make up the key (empty for Handles)."""
        if self.scheme != "gs1":
            return ()
        parts = self.suffix.split("/")
        return tuple((parts[i], gs1.unescape(parts[i + 1])) for i in range(0, len(parts), 2))

    @property
    def elements(self) -> tuple[tuple[str, str], ...]:
        return self.key_elements + self.qualifiers


def _gs1_identifier(link: gs1.DigitalLink) -> Identifier:
    key = [link.elements[0]]
    quals: list[tuple[str, str]] = []
    for ai, value in link.elements[1 : link.path_count]:
        (quals if ai in _CLASS_QUALIFIERS else key).append((ai, value))
    quals += sorted(link.elements[link.path_count :], key=lambda e: e[0])
    suffix = "/".join(f"{ai}/{gs1.escape(value)}" for ai, value in key)
    if len(suffix) > MAX_SUFFIX_LEN:
        raise InvalidIdentifier(f"GS1 key longer than {MAX_SUFFIX_LEN} characters")
    values = dict(key)
    return Identifier(
        scheme="gs1",
        prefix="gs1",
        suffix=suffix,
        canonical=f"gs1/{suffix}",
        gtin=values.get("01"),
        serial=values.get("21"),
        qualifiers=tuple(quals),
        attributes=link.attributes,
    )


def _from_elements(elements: gs1.Elements) -> Identifier:
    path, query = gs1.arrange(elements)
    return _gs1_identifier(gs1.DigitalLink("", tuple(path + query), len(path)))


def _from_sgtin(sgtin: epc.Sgtin) -> Identifier:
    return _from_elements([("01", sgtin.gtin), ("21", sgtin.serial)])


def _gs1_under_prefix(text: str) -> Identifier:
    prefix, _, rest = text.partition("/")
    check_prefix(prefix)
    if rest.startswith("sgtin."):
        ident = _from_sgtin(epc.parse_sgtin_urn("urn:epc:id:sgtin:" + rest[6:]))
    elif rest:
        ident = _gs1_identifier(gs1.parse_digital_link("/" + rest))
    else:
        raise InvalidIdentifier("a GS1 identifier has the form gs1:<company prefix>/01/<gtin>[/21/<serial>]")
    if prefix not in owner_prefix_candidates(ident):
        raise InvalidIdentifier(f"{prefix} is not a company prefix of {ident.canonical}")
    return ident


def _handle(text: str) -> Identifier:
    prefix, suffix = split_handle(text)
    if ":" in suffix:
        raise InvalidIdentifier(
            "suffix contains ':', which Handle clients read as index:handle; encode it "
            "(an EPC as a URN or sgtin.<company>.<item>.<serial>)"
        )
    if "\\" in suffix:
        raise InvalidIdentifier("suffix contains a backslash")
    decoded = unquote(suffix, errors="strict") if "%" in suffix else suffix
    if not decoded.isprintable() or "\\" in decoded:
        raise InvalidIdentifier("suffix contains percent-encoded control characters or backslashes")
    parts = decoded.split("/")
    if any(p in ("", ".", "..") for p in parts) or any(p in ("", ".", "..") for p in suffix.split("/")):
        raise InvalidIdentifier("suffix contains an empty, '.' or '..' path segment (possibly percent-encoded)")
    return Identifier(scheme="handle", prefix=prefix, suffix=suffix, canonical=f"{prefix}/{suffix}")


def parse_identifier(text: str | bytes) -> Identifier:
    """Parse any supported form of an identifier (see the module docstring); raises only
    InvalidIdentifier, with a message saying what is wrong."""
    if isinstance(text, bytes | bytearray):
        try:
            text = bytes(text).decode("utf-8")
        except UnicodeDecodeError as exc:
            raise InvalidIdentifier(f"identifier is not valid UTF-8 (byte {exc.start})") from None
    if not isinstance(text, str):
        raise InvalidIdentifier("identifier must be text")
    if not text:
        raise InvalidIdentifier("empty identifier")
    if len(text) > MAX_IDENTIFIER_LEN:
        raise InvalidIdentifier(f"identifier longer than {MAX_IDENTIFIER_LEN} characters")
    for pos, ch in enumerate(text):
        if not ch.isprintable():
            raise InvalidIdentifier(f"control or unprintable character U+{ord(ch):04X} at position {pos}")
    try:
        if text[:4].lower() == "urn:":
            return _from_sgtin(epc.parse_sgtin_urn(text))
        if text.startswith("/") or _SCHEME_RE.match(text):
            return _gs1_identifier(gs1.parse_digital_link(text))
        if text.startswith(("(", "^")):
            return _from_elements(gs1.parse_element_string(text))
        if text.startswith("gs1/"):
            return _gs1_identifier(gs1.parse_digital_link(text[3:]))
        if text.startswith("gs1:"):
            return _gs1_under_prefix(text)
        return _handle(text)
    except UnicodeError:
        raise InvalidIdentifier("percent-escapes do not decode to UTF-8 text") from None


def gs1_prefix_candidates(gtin: str) -> list[str]:
    """Prefixes `gs1:<digits>` that may own a GTIN, longest first: the digits after the indicator digit,
    12 down to 4 of them (e.g. `gs1:9506000` for 09506000134376). The registry takes the first it holds."""
    gtin14 = gs1.check_gtin(gtin)
    return [f"gs1:{gtin14[1 : 1 + n]}" for n in GS1_PREFIX_LENGTHS]


def owner_prefix_candidates(identifier: Identifier) -> list[str]:
    """Prefixes that may own an identifier, most specific first: a Handle's prefix and its parents, or
    the `gs1:<digits>` company prefixes of a GS1 key (from the key's company-prefix position)."""
    if identifier.scheme == "handle":
        out: list[str] = []
        p: str | None = identifier.prefix
        while p is not None:
            out.append(p)
            p = parent_prefix(p)
        return out
    ai, value = identifier.key_elements[0]
    entry = gs1.AI_TABLE[ai]
    if entry.gcp_span is None:
        return []
    digits = value[entry.gcp_span[0] : entry.gcp_span[1]]
    digits = digits[: len(digits) - len(digits.lstrip("0123456789"))]
    return [f"gs1:{digits[:n]}" for n in GS1_PREFIX_LENGTHS if n <= len(digits)]


def digital_link_uri(identifier: Identifier, host: str = "id.gs1.org") -> str:
    """The GS1 Digital Link URI of a GS1 identifier (for QR codes), on `host` (`example.com` or
    `https://example.com[/stem]`)."""
    if identifier.scheme != "gs1":
        raise InvalidIdentifier(f"{identifier.canonical} is not a GS1 identifier")
    stem = host if "://" in host else f"https://{host}"
    return gs1.build_digital_link(identifier.elements, stem, identifier.attributes)
