"""EPC SGTIN URNs (EPC Tag Data Standard): `urn:epc:id:sgtin:CompanyPrefix.IndicatorAndItemRef.Serial`.

An SGTIN names the same serialised item as a GTIN-14 with serial (AI 01 + AI 21); it also carries
where the GS1 company prefix ends, which the GTIN alone does not say.
"""

from __future__ import annotations

import re
from dataclasses import dataclass

from ledger.resolver.gs1 import CSET82, InvalidIdentifier, check_digit, check_gtin, validate_ai

_DIGITS = re.compile(r"[0-9]+")

_URN_PREFIX = "urn:epc:id:sgtin:"
_URN_ESCAPES = {'"': "%22", "%": "%25", "&": "%26", "/": "%2F", "<": "%3C", ">": "%3E", "?": "%3F"}
_URN_UNESCAPES = {v: k for k, v in _URN_ESCAPES.items()}


@dataclass(frozen=True)
class Sgtin:
    """A serialised GTIN with its company prefix, as an EPC SGTIN URN carries it."""

    company_prefix: str
    item_reference: str  # indicator digit + item reference
    gtin: str
    serial: str

    @property
    def urn(self) -> str:
        return f"{_URN_PREFIX}{self.company_prefix}.{self.item_reference}.{escape_urn_serial(self.serial)}"


def escape_urn_serial(serial: str) -> str:
    return "".join(_URN_ESCAPES.get(c, c) for c in serial)


def parse_sgtin_urn(urn: str) -> Sgtin:
    """`urn:epc:id:sgtin:CompanyPrefix.IndicatorAndItemRef.Serial` -> GTIN-14 and serial."""
    if urn[: len(_URN_PREFIX)].lower() != _URN_PREFIX:
        raise InvalidIdentifier(f"not an EPC SGTIN URN: expected {_URN_PREFIX}CompanyPrefix.ItemRef.Serial")
    parts = urn[len(_URN_PREFIX) :].split(".", 2)
    if len(parts) != 3:
        raise InvalidIdentifier("SGTIN URN needs three parts: company prefix, item reference, serial")
    cp, ir, raw = parts
    if not _DIGITS.fullmatch(cp) or not _DIGITS.fullmatch(ir):
        raise InvalidIdentifier("SGTIN company prefix and item reference must be digits")
    if not 6 <= len(cp) <= 12:
        raise InvalidIdentifier(f"SGTIN company prefix has {len(cp)} digits; 6 to 12 required")
    if len(cp) + len(ir) != 13:
        raise InvalidIdentifier(f"SGTIN company prefix + item reference have {len(cp) + len(ir)} digits; 13 required")
    serial = []
    i = 0
    while i < len(raw):
        esc = raw[i : i + 3].upper()
        if raw[i] == "%":
            if esc not in _URN_UNESCAPES:
                raise InvalidIdentifier(f"escape {raw[i : i + 3]!r} not allowed in an SGTIN serial")
            serial.append(_URN_UNESCAPES[esc])
            i += 3
            continue
        if raw[i] not in CSET82 or raw[i] in _URN_ESCAPES:
            raise InvalidIdentifier(f"character {raw[i]!r} not allowed unescaped in an SGTIN serial")
        serial.append(raw[i])
        i += 1
    text = "".join(serial)
    if not 1 <= len(text) <= 20:
        raise InvalidIdentifier(f"SGTIN serial must have 1-20 characters, not {len(text)}")
    body = ir[0] + cp + ir[1:]
    return Sgtin(cp, ir, body + check_digit(body), text)


def sgtin_from_gtin(gtin: str, serial: str, company_prefix_length: int) -> Sgtin:
    """GTIN + serial -> SGTIN; the company prefix length must be known (6-12)."""
    gtin14 = check_gtin(gtin)
    validate_ai("21", serial)
    if not 6 <= company_prefix_length <= 12:
        raise InvalidIdentifier("company prefix length must be 6-12")
    cp = gtin14[1 : 1 + company_prefix_length]
    return Sgtin(cp, gtin14[0] + gtin14[1 + company_prefix_length : 13], gtin14, serial)
