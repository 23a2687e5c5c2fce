"""GS1 syntax: check digits, the AI dictionary, Digital Link URIs, element strings (EPC URNs: epc.py).

Written for this project from the GS1 General Specifications, the GS1 Digital Link standard and the
EPC Tag Data Standard as summarised in `REFERENCE.md` and `tests/data/gs1.json`. The AI table below
is data taken from the GS1 Barcode Syntax Dictionary (release 2026-01-27, (c) GS1 AISBL, BWIPP and
Zint, Apache License 2.0), reduced to the fields used here: flags, value format and Digital Link
primary-key qualifiers.

Policy where GS1's own tools disagree (see `policy_differences` in tests/data/gs1.json, which states
the disagreements without recommending one side):
- zero-suppressed GTIN-8/12/13 after `/01/` or in `?01=` are accepted and padded to 14 digits
  (digital-link.js, and gs1-syntax-engine with permitZeroSuppressedGTINinDLuris); `zero_suppressed=False`
  gives gs1-syntax-engine's default;
- a trailing slash is rejected (gs1-syntax-engine; it is also an empty path segment);
- convenience alphas (`/gtin/...`) are off unless `convenience_alphas=True` (gs1-syntax-engine default);
- element order: path elements, then query AIs in URI order (gs1-syntax-engine).
Value linters implemented: csum, zero, yesno, nonzero, nozeroprefix; the others (dates, country and
currency codes, csumalpha, ...) are not checked, and `req`/`ex` AI associations are not enforced.
"""

from __future__ import annotations

import re
import string
from collections.abc import Sequence
from dataclasses import dataclass

MAX_URI_LEN = 2048

CSET82 = frozenset("!\"%&'()*+,-./0123456789:;<=>?ABCDEFGHIJKLMNOPQRSTUVWXYZ_abcdefghijklmnopqrstuvwxyz")
CSET39 = frozenset("#-/0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ")
CSET64 = frozenset(string.ascii_letters + string.digits + "-_=")
_CHARSETS = {"N": frozenset(string.digits), "X": CSET82, "Y": CSET39, "Z": CSET64}
_UNRESERVED = frozenset(string.ascii_letters + string.digits + "-._~")
_URI_CHARS = _UNRESERVED | frozenset(":/?#[]@!$&'()*+,;=%")
_DIGITS = re.compile(r"[0-9]+")
Elements = Sequence[tuple[str, str]]  # (AI, value) pairs


class InvalidIdentifier(ValueError):
    """The text is not a well-formed prefix or identifier; the message says why.

    Defined here so that this module does not import `identifiers`; `identifiers` re-exports it."""


# flags;format;dlpkey;AIs. flags: '*' predefined length, '?' allowed as a DL data attribute, '.' none.
# dlpkey: empty = not a primary key, '-' = key without qualifiers, else ordered qualifiers, '|' between
# alternatives.
_TABLE = """\
*?;N18,csum,gcppos2;-;00
*?;N14,csum,gcppos2;22,10,21|235;01
*?;N14,csum,gcppos2;;02
*;N14,csum,gcppos2;;03
?;X..20;;10 243 420 4318 7020 7021 7022 710 711 712 713 714 715 716 717 7240 8002 8012
*?;N6,yymmd0;;11 12 13 15 16 17
*?;N2;;20
.;X..20;;21 22 254
.;X..28;;235
?;X..30;;240 241 250 251 400 403 4308 4319 7002 90
?;N..6;;242
?;N13,csum,gcppos1 [X..17];-;253
?;N13,csum,gcppos1 [N..12];-;255
?;N..8;;30 37
*?;N6;;3100-3105 3110-3115 3120-3125 3130-3135 3140-3145 3150-3155 3160-3165 3200-3205 3210-3215 3220-3225
*?;N6;;3230-3235 3240-3245 3250-3255 3260-3265 3270-3275 3280-3285 3290-3295 3300-3305 3310-3315 3320-3325
*?;N6;;3330-3335 3340-3345 3350-3355 3360-3365 3370-3375 3400-3405 3410-3415 3420-3425 3430-3435 3440-3445
*?;N6;;3450-3455 3460-3465 3470-3475 3480-3485 3490-3495 3500-3505 3510-3515 3520-3525 3530-3535 3540-3545
*?;N6;;3550-3555 3560-3565 3570-3575 3600-3605 3610-3615 3620-3625 3630-3635 3640-3645 3650-3655 3660-3665
*?;N6;;3670-3675 3680-3685 3690-3695
?;N..15;;3900-3909 3920-3929
?;N3,iso4217 N..15;;3910-3919 3930-3939
?;N4;;3940-3943 8111
?;N6;;3950-3955 8005
?;X..30,gcppos1;-;401
?;N17,csum,gcppos1;-;402
*?;N13,csum,gcppos1;;410 411 412 413 416
*?;N13,csum,gcppos1;254|7040;414
*?;N13,csum,gcppos1;8020;415
*?;N13,csum,gcppos1;7040;417
?;N3,iso3166 X..9;;421
?;N3,iso3166;;422 424 426
?;N3,iso3166 [N3],iso3166 [N3],iso3166 [N3],iso3166 [N3],iso3166;;423 425
?;X..3;;427 7008
?;X..35,pcenc;;4300 4301 4310 4311 4320
?;X..70,pcenc;;4302 4303 4304 4305 4306 4312 4313 4314 4315 4316 7257
?;X2,iso3166alpha2;;4307 4317
?;N10,latitude N10,longitude;;4309
?;N1,yesno;;4321 4322 4323
?;N6,yymmd0 N4,hhmi;;4324 4325
?;N6,yymmdd;;4326 7006
?;N6 [X1],hyphen;;4330 4331 4332 4333
?;N13;;7001
?;N6,yymmdd N4,hhmi;;7003
?;N..4;;7004
?;X..12;;7005
?;N6,yymmdd [N6],yymmdd;;7007
?;X..10;;7009 7255
?;X..2;;7010
?;N6,yymmdd [N4],hhmi;;7011
?;X..30,gcppos1;;7023
?;N3,iso3166999 X..27;;7030-7039
.;N1 X1 X1 X1,importeridx;;7040
.;X..4,packagetype;;7041
?;X2 X..28;;7230-7239
?;N2,mediatype;;7241
?;X..25;;7242
?;N8,yyyymmdd;;7250
?;N8,yyyymmdd N4,hhmi;;7251
?;N1,iso5218;;7252
?;X..40,pcenc;;7253 7254 7259
?;X..90,pcenc;;7256
?;X3,posinseqslash;;7258
?;N4,nonzero N5,nonzero N3,nonzero N1,winding N1;;8001
?;N1,zero N13,csum,gcppos1 [X..16];-;8003
?;X..30,gcppos1;7040;8004
?;N14,csum,gcppos2 N4,pieceoftotal;22,10,21;8006
?;X..34,iban;;8007
?;N6,yymmdd N2,hh [N2],mi [N2],ss;;8008
?;X..50;;8009
?;Y..30,gcppos1;8011;8010
.;N..12,nozeroprefix;;8011
?;X..25,csumalpha,gcppos1;-;8013
.;X..25,csumalpha,gcppos1,hasnondigit;;8014
?;N18,csum,gcppos1;8019;8017 8018
.;N..10;;8019
.;X..25;;8020
?;N14,csum,gcppos2 N4,pieceoftotal;;8026
?;Z..90;;8030
.;N15;;8040 8041
.;N32;;8042
.;N18 [N..2];;8043
?;X..70,couponcode;;8110
?;X..70,couponposoffer;;8112
.;X..70;;8200
?;X..90;;91-99
"""

# Convenience alphas of the GS1 Digital Link standard (only with convenience_alphas=True).
CONVENIENCE_ALPHAS = {
    "gtin": "01",
    "itip": "8006",
    "cpv": "22",
    "lot": "10",
    "ser": "21",
    "sscc": "00",
    "gln": "414",
    "glnx": "254",
    "party": "417",
    "gsrn": "8018",
    "gsrnp": "8017",
    "srin": "8019",
    "gdti": "253",
    "gsin": "402",
    "gcn": "255",
    "ginc": "401",
    "giai": "8004",
    "grai": "8003",
    "cpid": "8010",
    "cpsn": "8011",
    "gmn": "8013",
    "tpx": "235",
    "upui": "235",
}
_SPEC_RE = re.compile(r"(\[)?([NXYZ])(\.\.)?([0-9]+)\]?((?:,[a-z0-9]+)*)")


@dataclass(frozen=True)
class _Component:
    charset: str
    min_len: int
    max_len: int
    optional: bool
    linters: tuple[str, ...]


@dataclass(frozen=True)
class AIEntry:
    """One Application Identifier: its value format and Digital Link role."""

    ai: str
    predefined_length: bool
    dl_attribute: bool
    components: tuple[_Component, ...]
    qualifier_paths: tuple[tuple[str, ...], ...] | None  # None: not a Digital Link primary key
    gcp_span: tuple[int, int] | None  # where the company prefix may lie in the value (check digit excluded)

    @property
    def fixed_length(self) -> int | None:
        if not self.predefined_length:
            return None
        return sum(c.max_len for c in self.components)


def _load_table() -> dict[str, AIEntry]:
    table: dict[str, AIEntry] = {}
    for line in _TABLE.splitlines():
        flags, spec, dlpkey, ais = line.split(";")
        comps: list[_Component] = []
        gcp_span: tuple[int, int] | None = None
        offset = 0
        for token in spec.split():
            m = _SPEC_RE.fullmatch(token)
            assert m, token
            n = int(m.group(4))
            linters = tuple(x for x in m.group(5).split(",") if x)
            for lint in linters:
                if lint.startswith("gcppos"):
                    gcp_span = (offset + int(lint[6:]) - 1, offset + n - (1 if "csum" in linters else 0))
            comps.append(_Component(m.group(2), 1 if m.group(3) else n, n, bool(m.group(1)), linters))
            offset += n
        paths = None if not dlpkey else (() if dlpkey == "-" else tuple(tuple(a.split(",")) for a in dlpkey.split("|")))
        for item in ais.split():
            lo, _, hi = item.partition("-")
            for code in range(int(lo), int(hi or lo) + 1):
                ai = str(code).zfill(len(lo))
                table[ai] = AIEntry(ai, "*" in flags, "?" in flags, tuple(comps), paths, gcp_span)
    return table


AI_TABLE = _load_table()


def check_digit(digits: str) -> str:
    """GS1 mod-10 check digit for `digits` (everything left of the check digit)."""
    total = sum(int(c) * (3 if i % 2 == 0 else 1) for i, c in enumerate(reversed(digits)))
    return str((10 - total % 10) % 10)


def check_gtin(text: str) -> str:
    """Validate a GTIN-8/12/13/14 and return it as GTIN-14 (left-padded with zeros)."""
    if not _DIGITS.fullmatch(text):
        raise InvalidIdentifier(f"GTIN {text!r} must consist of digits only")
    if len(text) not in (8, 12, 13, 14):
        raise InvalidIdentifier(f"GTIN {text!r} has {len(text)} digits; a GTIN has 8, 12, 13 or 14")
    expected = check_digit(text[:-1])
    if text[-1] != expected:
        raise InvalidIdentifier(f"GTIN {text}: bad check digit {text[-1]}, expected {expected} ({text[:-1]}{expected})")
    return text.zfill(14)


def _check_component(ai: str, comp: _Component, part: str) -> None:
    bad = next((c for c in part if c not in _CHARSETS[comp.charset]), None)
    if bad is not None:
        kind = {"N": "a digit", "X": "GS1 character set 82", "Y": "GS1 character set 39", "Z": "base64url"}
        raise InvalidIdentifier(f"AI ({ai}): character {bad!r} is not {kind[comp.charset]}")
    for lint in comp.linters:
        if lint == "csum" and part[-1] != check_digit(part[:-1]):
            raise InvalidIdentifier(f"AI ({ai}) {part}: bad check digit {part[-1]}, expected {check_digit(part[:-1])}")
        if lint == "zero" and part != "0":
            raise InvalidIdentifier(f"AI ({ai}): digit {part!r} must be 0")
        if lint == "yesno" and part not in ("0", "1"):
            raise InvalidIdentifier(f"AI ({ai}): flag {part!r} must be 0 or 1")
        if lint == "nonzero" and int(part) == 0:
            raise InvalidIdentifier(f"AI ({ai}): {part!r} must not be zero")
        if lint == "nozeroprefix" and len(part) > 1 and part[0] == "0":
            raise InvalidIdentifier(f"AI ({ai}): {part!r} must not start with 0")


def validate_ai(ai: str, value: str) -> None:
    """Check `value` against the format of AI `ai` (character sets, lengths, check digits)."""
    entry = AI_TABLE.get(ai)
    if entry is None:
        raise InvalidIdentifier(f"unknown AI ({ai})")
    if not value:
        raise InvalidIdentifier(f"empty value for AI ({ai})")
    pos = 0
    for comp in entry.components:
        rest = value[pos:]
        if not rest and comp.optional:
            break
        take = min(len(rest), comp.max_len)
        if take < comp.min_len:
            need = comp.min_len if comp.min_len == comp.max_len else f"at least {comp.min_len}"
            raise InvalidIdentifier(f"AI ({ai}) value {value!r} too short: {need} characters needed at offset {pos}")
        _check_component(ai, comp, rest[:take])
        pos += take
    if pos < len(value):
        raise InvalidIdentifier(f"AI ({ai}) value {value!r} too long: at most {pos} characters")


def escape(value: str, *, query: bool = False) -> str:
    """Percent-encode a Digital Link path (or query) component: all but unreserved characters."""
    out = []
    for byte in value.encode():
        ch = chr(byte)
        if ch in _UNRESERVED:
            out.append(ch)
        elif query and ch == " ":
            out.append("+")
        else:
            out.append(f"%{byte:02X}")
    return "".join(out)


def unescape(text: str, *, query: bool = False) -> str:
    """Decode %XX escapes (malformed ones stay as they are; '+' is a space only in the query).

    %00 and escapes that do not decode to UTF-8 are rejected."""
    out = bytearray()
    i = 0
    while i < len(text):
        ch = text[i]
        if ch == "%" and i + 2 < len(text) and all(c in string.hexdigits for c in text[i + 1 : i + 3]):
            byte = int(text[i + 1 : i + 3], 16)
            if byte == 0:
                raise InvalidIdentifier("percent-encoded NUL (%00) is not allowed")
            out.append(byte)
            i += 3
            continue
        out += b" " if (query and ch == "+") else ch.encode()
        i += 1
    try:
        return out.decode()
    except UnicodeDecodeError:
        raise InvalidIdentifier("percent-escapes do not decode to UTF-8 text") from None


def _check_value_path(ai: str, value: str) -> None:
    # Values may hold '/', escaped in URIs and keys; refuse those that would be path tricks if decoded.
    if value in (".", "..") or ("/" in value and any(p in ("", ".", "..") for p in value.split("/"))):
        raise InvalidIdentifier(f"AI ({ai}) value {value!r} decodes to a path trick ('.', '..' or empty segment)")
    if "\\" in value:
        raise InvalidIdentifier(f"AI ({ai}) value contains a backslash")


def _gtin_value(ai: str, value: str, zero_suppressed: bool) -> str:
    if ai == "01" and _DIGITS.fullmatch(value) and len(value) in (8, 12, 13):
        if not zero_suppressed:
            raise InvalidIdentifier(f"zero-suppressed GTIN {value} for AI (01): 14 digits required")
        return check_gtin(value)
    return value


def _is_subsequence(seq: tuple[str, ...], alt: tuple[str, ...]) -> bool:
    it = iter(alt)
    return all(a in it for a in seq)


def check_path_sequence(ais: Sequence[str]) -> list[tuple[str, ...]]:
    """Check a Digital Link path AI sequence (primary key, then qualifiers in order, from one
    alternative); return the qualifier alternatives it is compatible with."""
    key = AI_TABLE.get(ais[0]) if ais else None
    if key is None or key.qualifier_paths is None:
        raise InvalidIdentifier(f"({ais[0] if ais else ''}) is not a Digital Link primary key")
    seq = tuple(ais[1:])
    compatible = [alt for alt in key.qualifier_paths if _is_subsequence(seq, alt)]
    if seq and not compatible:
        allowed = " or ".join(",".join(a) for a in key.qualifier_paths) or "none"
        raise InvalidIdentifier(
            f"invalid key-qualifier sequence {','.join(seq)} after ({key.ai}); allowed in order: {allowed}"
        )
    return compatible


@dataclass(frozen=True)
class DigitalLink:
    """A parsed GS1 Digital Link: `elements` are (AI, value) pairs, the primary key first, then the path
    qualifiers (`path_count` elements in all come from the path), then query AIs in URI order;
    `attributes` are the other query parameters (e.g. linkType), kept in order."""

    stem: str
    elements: tuple[tuple[str, str], ...]
    path_count: int
    attributes: tuple[tuple[str, str], ...] = ()

    @property
    def element_string(self) -> str:
        return element_string(self.elements)


def element_string(elements: Elements) -> str:
    """The '^'-for-FNC1 element string, written as gs1-syntax-engine writes it."""
    out = ["^"]
    for i, (ai, value) in enumerate(elements):
        out.append(ai + value)
        entry = AI_TABLE[ai]
        if not entry.predefined_length and i < len(elements) - 1:
            out.append("^")
    return "".join(out)


_HOST_RE = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]*)|\[[0-9A-Fa-f:.]+\])(?::[0-9]{1,5})?")


def _split_uri(uri: str) -> tuple[str, str, str]:
    """-> (stem host part, path, query) for an absolute http(s) URI or a bare path."""
    if not uri:
        raise InvalidIdentifier("empty input")
    if len(uri) > MAX_URI_LEN:
        raise InvalidIdentifier(f"Digital Link longer than {MAX_URI_LEN} characters")
    bad = next((c for c in uri if c not in _URI_CHARS), None)
    if bad is not None:
        raise InvalidIdentifier(f"character {bad!r} outside the permitted URI character set")
    uri = uri.partition("#")[0]
    if uri.startswith("/"):
        origin, rest = "", uri
    else:
        m = re.match(r"([A-Za-z][A-Za-z0-9+.-]*)://", uri)
        if not m:
            raise InvalidIdentifier("not a GS1 Digital Link: expected http(s)://host/... or a path starting with '/'")
        scheme = m.group(1)
        if scheme.lower() not in ("http", "https"):
            raise InvalidIdentifier(f"scheme must be http or https, not {scheme!r}")
        if scheme not in ("http", "https", "HTTP", "HTTPS"):
            raise InvalidIdentifier(f"mixed-case scheme {scheme!r}")
        rest = uri[m.end() :]
        cut = min((i for i in (rest.find("/"), rest.find("?")) if i >= 0), default=len(rest))
        host, rest = rest[:cut], rest[cut:]
        if not host:
            raise InvalidIdentifier("no domain")
        if not _HOST_RE.fullmatch(host) or int(host.rpartition("]")[2].partition(":")[2] or 0) > 65535:
            raise InvalidIdentifier(f"bad character or form in domain {host!r}")
        origin = uri[: m.end()] + host
    path, _, query = rest.partition("?")
    return origin, path, query


def parse_digital_link(uri: str, *, zero_suppressed: bool = True, convenience_alphas: bool = False) -> DigitalLink:
    """Parse a GS1 Digital Link URI (`https://host[/stem]/01/{gtin}[/22/..][/10/..][/21/..][?...]`)
    or a bare path (`/01/...`); raise InvalidIdentifier with the reason if it is not valid."""
    origin, path, query = _split_uri(uri)
    if path in ("", "/"):
        raise InvalidIdentifier("no path info: a Digital Link path holds a GS1 key such as /01/{gtin}")
    if path.endswith("/"):
        raise InvalidIdentifier("a Digital Link path must not end with '/'")
    segs = path[1:].split("/")
    for seg in segs:
        if seg == "":
            raise InvalidIdentifier("empty path segment ('//') in a Digital Link path")
        if seg in (".", ".."):
            raise InvalidIdentifier("'.' or '..' path segment in a Digital Link path")

    def ai_of(seg: str) -> str:
        return CONVENIENCE_ALPHAS.get(seg, seg) if convenience_alphas else seg

    i = len(segs) - 2
    while i >= 0:
        entry = AI_TABLE.get(ai_of(segs[i]))
        if entry is not None and entry.qualifier_paths is not None:
            break
        i -= 2
    if i < 0:
        raise InvalidIdentifier("no GS1 primary key AI (such as /01/{gtin}) in the path")
    key = AI_TABLE[ai_of(segs[i])]
    assert key.qualifier_paths is not None
    pairs = [(ai_of(segs[j]), segs[j + 1]) for j in range(i, len(segs), 2)]
    seq = tuple(ai for ai, _ in pairs[1:])
    for ai in seq:
        if ai not in AI_TABLE:
            raise InvalidIdentifier(f"unknown AI ({ai}) in the path" if ai.isdigit() else f"{ai!r} is not an AI")
    compatible = check_path_sequence((key.ai, *seq))
    elements: list[tuple[str, str]] = []
    for ai, raw in pairs:
        value = _gtin_value(ai, unescape(raw), zero_suppressed)
        validate_ai(ai, value)
        _check_value_path(ai, value)
        elements.append((ai, value))
    path_count = len(elements)
    attributes: list[tuple[str, str]] = []
    qualifiers = {q for alt in compatible for q in alt}
    for param in query.split("&"):
        name, eq, raw = param.partition("=")
        if not eq:
            continue  # empty parameters and singletons carry no data
        if name.isascii() and name.isdigit():
            entry = AI_TABLE.get(name)
            if entry is None:
                raise InvalidIdentifier(f"numeric query parameter {name!r} is not a known AI")
            value = _gtin_value(name, unescape(raw, query=True), zero_suppressed)
            if not value:
                raise InvalidIdentifier(f"empty value for AI ({name}) in the query")
            if name in qualifiers:
                raise InvalidIdentifier(f"AI ({name}) is a key qualifier of ({key.ai}) and belongs in the path")
            if not entry.dl_attribute:
                raise InvalidIdentifier(f"AI ({name}) is not permitted as a Digital Link data attribute")
            if any(ai == name for ai, _ in elements):
                raise InvalidIdentifier(f"duplicate AI ({name})")
            validate_ai(name, value)
            elements.append((name, value))
        else:
            pair = (unescape(name, query=True), unescape(raw, query=True))
            if not all(s.isprintable() for s in pair):
                raise InvalidIdentifier("query parameter contains control characters")
            attributes.append(pair)
    return DigitalLink(origin, tuple(elements), path_count, tuple(attributes))


def arrange(elements: Elements) -> tuple[list[tuple[str, str]], list[tuple[str, str]]]:
    """Split AI data into Digital Link path elements and query attributes, as gs1-syntax-engine does:
    the first primary key wins; its qualifiers go to the path along the alternative that uses most of
    them (the first on a tie); the rest become query attributes, predefined-length AIs first. Identical
    duplicates collapse; conflicting duplicates are an error."""
    unique: list[tuple[str, str]] = []
    for ai, value in elements:
        if AI_TABLE.get(ai) is None:
            raise InvalidIdentifier(f"unknown AI ({ai})")
        prior = next((v for a, v in unique if a == ai), None)
        if prior is None:
            unique.append((ai, value))
        elif prior != value:
            raise InvalidIdentifier(f"duplicate AI ({ai}) with different values")
    key = next((e for e in unique if AI_TABLE[e[0]].qualifier_paths is not None), None)
    if key is None:
        raise InvalidIdentifier("no GS1 primary key AI (such as (01) GTIN) in the data")
    present = dict(unique)
    alts = AI_TABLE[key[0]].qualifier_paths or ()
    best: tuple[str, ...] = ()
    for alt in alts:
        used = tuple(q for q in alt if q in present)
        if len(used) > len(best):
            best = used
    path = [key] + [(q, present[q]) for q in best]
    rest = [e for e in unique if e not in path]
    for ai, _ in rest:
        if not AI_TABLE[ai].dl_attribute:
            raise InvalidIdentifier(f"AI ({ai}) is not permitted as a Digital Link data attribute")
    rest.sort(key=lambda e: not AI_TABLE[e[0]].predefined_length)
    return path, rest


def build_digital_link(
    elements: Elements,
    stem: str | None = None,
    attributes: tuple[tuple[str, str], ...] = (),
) -> str:
    """The Digital Link URI of AI data; the stem defaults to https://id.gs1.org."""
    for ai, value in elements:
        validate_ai(ai, value)
    path, query = arrange(elements)
    uri = (stem or "https://id.gs1.org").rstrip("/") + "".join(f"/{ai}/{escape(v)}" for ai, v in path)
    params = [f"{ai}={escape(v, query=True)}" for ai, v in query]
    params += [f"{escape(k, query=True)}={escape(v, query=True)}" for k, v in attributes]
    return uri + ("?" + "&".join(params) if params else "")


_HRI_RE = re.compile(r"\s*\(([0-9]{2,4})\)([^()]*?)\s*(?=\(|$)")


def parse_element_string(text: str) -> list[tuple[str, str]]:
    """Parse `(01)09506000134376(21)12345` (bracketed) or `^0109506000134376^2112345` ('^' = FNC1)."""
    pairs: list[tuple[str, str]] = []
    if text.startswith("^"):
        pos = 1
        while pos < len(text):
            if text[pos] == "^":
                pos += 1
                continue
            ai = next((text[pos : pos + n] for n in (2, 3, 4) if text[pos : pos + n] in AI_TABLE), None)
            if ai is None:
                raise InvalidIdentifier(f"unknown AI at offset {pos} of the element string")
            pos += len(ai)
            fixed = AI_TABLE[ai].fixed_length
            if fixed is not None:
                end = pos + fixed
            else:
                end = text.find("^", pos)
                end = len(text) if end < 0 else end
            pairs.append((ai, text[pos:end]))
            pos = end
    else:
        pos = 0
        for m in _HRI_RE.finditer(text):
            if m.start() != pos:
                break
            pairs.append((m.group(1), m.group(2)))
            pos = m.end()
        if pos != len(text) or not pairs:
            raise InvalidIdentifier("malformed element string: expected (AI)value pairs such as (01)...(21)...")
    for ai, value in pairs:
        validate_ai(ai, value)
    return pairs
