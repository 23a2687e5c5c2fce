"""Identifier parsing: GS1 conformance data (tests/data/gs1.json, copied from ../shared/testdata) and
properties. Where GS1's tools disagree (gs1.json `policy_differences`), the policy of
ledger.resolver.gs1 applies: zero-suppressed GTINs accepted and padded, trailing slash rejected,
convenience alphas only on request, URI order kept."""

from __future__ import annotations

import json
import re
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from ledger.resolver import epc, gs1
from ledger.resolver.identifiers import (
    Identifier,
    InvalidIdentifier,
    check_gtin,
    digital_link_uri,
    gs1_prefix_candidates,
    owner_prefix_candidates,
    parse_identifier,
    split_handle,
)

DATA = json.loads((Path(__file__).parent / "data" / "gs1.json").read_text())
DL = DATA["digital_link"]
ENGINE = DL["parse_gs1_syntax_engine"]
JS = DL["digital_link_js"]
SGTIN = DATA["sgtin"]


def ids(cases: list[dict[str, Any]], field: str) -> list[str]:
    return [str(c[field])[:60] for c in cases]


# --- check digits -------------------------------------------------------------------------------


@pytest.mark.parametrize("case", DATA["gtin_check_digit"]["valid"], ids=lambda c: c["gtin"])
def test_valid_gtins_are_padded_to_14(case: dict[str, Any]) -> None:
    assert check_gtin(case["gtin"]) == case["gtin"].zfill(14)


@pytest.mark.parametrize("case", DATA["gtin_check_digit"]["invalid_check_digit"], ids=lambda c: c["gtin"])
def test_bad_check_digit_names_the_expected_digit(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidIdentifier, match=f"expected {case['correct_check_digit']}"):
        check_gtin(case["gtin"])
    with pytest.raises(InvalidIdentifier, match=f"expected {case['correct_check_digit']}"):
        parse_identifier("/01/" + case["gtin"])


@pytest.mark.parametrize("case", DATA["gtin_check_digit"]["invalid_format"], ids=lambda c: repr(c["input"]))
def test_malformed_gtins(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidIdentifier):
        if case["input"].startswith("^"):
            parse_identifier(case["input"])
        else:
            check_gtin(case["input"])


@pytest.mark.parametrize("case", DATA["other_gs1_keys_check_digit"]["cases"], ids=lambda c: c["key"] + c["value"])
def test_other_key_check_digits(case: dict[str, Any]) -> None:
    if case["valid"]:
        gs1.validate_ai(case["ai"], case["value"])
    else:
        with pytest.raises(InvalidIdentifier, match=f"expected {case['correct_check_digit']}"):
            gs1.validate_ai(case["ai"], case["value"])


# --- Digital Link: gs1-syntax-engine cases ------------------------------------------------------


def engine_options(case: dict[str, Any]) -> dict[str, bool]:
    opts = case.get("options", {})
    return {
        "zero_suppressed": bool(opts.get("permitZeroSuppressedGTINinDLuris")),
        "convenience_alphas": bool(opts.get("permitConvenienceAlphas")),
    }


# Unknown AIs are never permitted here (policy): those engine cases are left out, not skipped.
ENGINE_VALID = [c for c in ENGINE["valid"] if not c.get("options", {}).get("permitUnknownAIs")]


@pytest.mark.parametrize("case", ENGINE_VALID, ids=ids(ENGINE_VALID, "uri"))
def test_engine_valid_uris(case: dict[str, Any]) -> None:
    link = gs1.parse_digital_link(case["uri"], **engine_options(case))
    assert [list(e) for e in link.elements] == case["elements"]
    assert link.element_string == case["element_string"]
    if not case.get("options", {}).get("permitConvenienceAlphas"):
        ident = parse_identifier(case["uri"])  # the default policy accepts every other valid engine case
        assert sorted(ident.elements) == sorted(link.elements)


@pytest.mark.parametrize("case", ENGINE["invalid"], ids=ids(ENGINE["invalid"], "uri"))
def test_engine_invalid_uris(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidIdentifier):
        gs1.parse_digital_link(case["uri"], **engine_options(case))


ZERO_SUPPRESSED = [c for c in ENGINE["invalid"] if "zero-suppress" in c["reason"] or "not expanded" in c["reason"]]


@pytest.mark.parametrize("case", ZERO_SUPPRESSED, ids=ids(ZERO_SUPPRESSED, "uri"))
def test_policy_zero_suppressed_gtins_are_accepted_and_padded(case: dict[str, Any]) -> None:
    link = gs1.parse_digital_link(case["uri"])
    gtin = dict(link.elements)["01"]
    assert len(gtin) == 14 and check_gtin(gtin) == gtin


def test_policy_trailing_slash_and_convenience_alphas() -> None:
    for uri in ("https://example.com/01/01234565/", "https://a/stem/00/006141411234567890/"):
        with pytest.raises(InvalidIdentifier, match="end with '/'"):
            parse_identifier(uri)
    with pytest.raises(InvalidIdentifier):
        parse_identifier("https://a/gtin/12312312312333")
    assert gs1.parse_digital_link("https://a/gtin/12312312312333", convenience_alphas=True).elements == (
        ("01", "12312312312333"),
    )


# --- Digital Link: digital-link.js cases --------------------------------------------------------


@pytest.mark.parametrize("case", JS["valid"], ids=ids(JS["valid"], "uri"))
def test_js_valid_uris(case: dict[str, Any]) -> None:
    if case["uri"].endswith("/"):
        with pytest.raises(InvalidIdentifier):  # policy: trailing slash rejected (gs1-syntax-engine)
            gs1.parse_digital_link(case["uri"])
        return
    link = gs1.parse_digital_link(case["uri"], convenience_alphas=True)
    elements = dict(link.elements)
    parsed = case.get("parsed")
    if parsed:
        ((key_ai, key_value),) = parsed["identifier"].items()
        assert link.elements[0] == (key_ai, check_gtin(key_value) if key_ai == "01" else key_value)
        assert dict(link.elements[1 : link.path_count]) == parsed.get("keyQualifiers", {})
        attrs = {**{ai: v for ai, v in link.elements[link.path_count :]}, **dict(link.attributes)}
        expected = dict(parsed.get("attributes", {}))
        if "linkType" in parsed:
            expected["linkType"] = parsed["linkType"]
        assert attrs == expected
        if "domain" in parsed:
            assert link.stem == parsed["domain"]
    if "valid_attribute" in case:
        assert case["valid_attribute"].split()[0] in elements


@pytest.mark.parametrize("case", JS["invalid"], ids=ids(JS["invalid"], "uri"))
def test_js_invalid_uris(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidIdentifier):
        gs1.parse_digital_link(case["uri"], convenience_alphas=True)
    with pytest.raises(InvalidIdentifier):
        parse_identifier(case["uri"])


@pytest.mark.parametrize("case", JS["rule_checks"], ids=lambda c: f"{c['rule']}:{c['value']}")
def test_js_rule_checks(case: dict[str, Any]) -> None:
    def check() -> None:
        if case["rule"] == "gtin":
            check_gtin(case["value"])
        else:
            gs1.validate_ai({"ser": "21", "cpv": "22"}[case["rule"]], case["value"])

    if case["valid"]:
        check()
    else:
        with pytest.raises(InvalidIdentifier):
            check()


@pytest.mark.parametrize("case", JS["extension_parameter_rules"]["cases"], ids=lambda c: c["param"])
def test_extension_parameters(case: dict[str, Any]) -> None:
    uri = "https://example.com/01/09520123456788?" + case["param"]
    if case["valid"]:
        gs1.parse_digital_link(uri)
    else:
        with pytest.raises(InvalidIdentifier):
            gs1.parse_digital_link(uri)


# --- Digital Link generation, escaping, path sequences ------------------------------------------

GENERATE = DL["generate_gs1_syntax_engine"]["cases"]


@pytest.mark.parametrize("case", GENERATE, ids=ids(GENERATE, "ai_data"))
def test_generate_uris(case: dict[str, Any]) -> None:
    def build() -> str:
        return gs1.build_digital_link(gs1.parse_element_string(case["ai_data"]), case["stem"])

    if case["valid"]:
        assert build() == case["expected_uri"]
        # and the generated URI parses back to the same AI data (duplicates collapsed)
        elements = list(dict.fromkeys(gs1.parse_element_string(case["ai_data"])))
        assert sorted(gs1.parse_digital_link(case["expected_uri"]).elements) == sorted(elements)
    else:
        with pytest.raises(InvalidIdentifier):
            build()


@pytest.mark.parametrize("case", DL["uri_escaping"]["escape"], ids=lambda c: c["value"])
def test_escape(case: dict[str, Any]) -> None:
    assert gs1.escape(case["value"]) == case["path_component"]
    assert gs1.escape(case["value"], query=True) == case["query_component"]


@pytest.mark.parametrize("case", DL["uri_escaping"]["unescape"], ids=lambda c: c["input"])
def test_unescape(case: dict[str, Any]) -> None:
    assert gs1.unescape(case["input"]) == case["as_path_component"]
    assert gs1.unescape(case["input"], query=True) == case["as_query_component"]


def test_unescape_rejects_nul_and_bad_utf8() -> None:
    for text in ("A%00B", "%ff", "%C3"):
        with pytest.raises(InvalidIdentifier):
            gs1.unescape(text)


@pytest.mark.parametrize("seq", DL["path_ai_sequences"]["valid"], ids=lambda s: ",".join(s))
def test_valid_path_sequences(seq: list[str]) -> None:
    gs1.check_path_sequence(seq)


@pytest.mark.parametrize("case", DL["path_ai_sequences"]["invalid"], ids=lambda c: ",".join(c["sequence"]))
def test_invalid_path_sequences(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidIdentifier):
        gs1.check_path_sequence(case["sequence"])


# --- EPC SGTIN URNs -----------------------------------------------------------------------------


@pytest.mark.parametrize("case", SGTIN["pairs"], ids=ids(SGTIN["pairs"], "urn"))
def test_sgtin_pairs_both_ways(case: dict[str, Any]) -> None:
    sgtin = epc.parse_sgtin_urn(case["urn"])
    assert (sgtin.gtin, sgtin.serial) == (case["gtin"], case["serial"])
    assert len(sgtin.company_prefix) == case["gcp_length"]
    assert epc.sgtin_from_gtin(case["gtin"], case["serial"], case["gcp_length"]).urn == case["urn"]
    forms = [case["urn"], f"/01/{case['gtin']}/21/{case['serial']}"]
    forms += [case[f] for f in ("element_string", "digital_link") if f in case]
    keys = {parse_identifier(f).canonical for f in forms}
    assert keys == {f"gs1/01/{case['gtin']}/21/{case['serial']}"}
    if "digital_link" in case:
        assert digital_link_uri(parse_identifier(case["urn"])) == case["digital_link"]


@pytest.mark.parametrize("case", SGTIN["urn_to_gtin_key"]["cases"], ids=ids(SGTIN["urn_to_gtin_key"]["cases"], "urn"))
def test_sgtin_urn_to_gtin(case: dict[str, Any]) -> None:
    sgtin = epc.parse_sgtin_urn(case["urn"])
    assert (sgtin.gtin, sgtin.serial, len(sgtin.company_prefix)) == (
        case["gtin14"],
        case["serial_decoded"],
        case["gcp_length"],
    )
    assert sgtin.urn == case["urn"]
    ident = parse_identifier(case["urn"])
    assert ident.gtin == case["gtin14"] and ident.serial == case["serial_decoded"]
    assert ":" not in ident.canonical  # usable by Handle clients
    assert parse_identifier(ident.canonical) == ident


@pytest.mark.parametrize("case", SGTIN["invalid_urns"], ids=ids(SGTIN["invalid_urns"], "urn"))
def test_invalid_sgtin_urns(case: dict[str, Any]) -> None:
    with pytest.raises(InvalidIdentifier):
        parse_identifier(case["urn"])


# --- identifiers, keys and owners ---------------------------------------------------------------


def test_reference_example_and_owner_candidates() -> None:
    ident = parse_identifier("https://id.example.com/01/09506000134376/21/12345")
    assert ident.canonical == "gs1/01/09506000134376/21/12345"
    assert split_handle(ident.canonical) == ("gs1", "01/09506000134376/21/12345")
    assert "gs1:9506000" in gs1_prefix_candidates("09506000134376")
    assert gs1_prefix_candidates("9506000134376") == gs1_prefix_candidates("09506000134376")
    cands = owner_prefix_candidates(ident)
    assert cands == gs1_prefix_candidates(ident.gtin or "") and cands[0] == "gs1:950600013437"
    assert [len(c) - 4 for c in cands] == list(range(12, 3, -1))
    assert parse_identifier("gs1:9506000/01/09506000134376/21/12345") == ident
    assert parse_identifier("gs1:0614141/sgtin.0614141.812345.6789").canonical == "gs1/01/80614141123458/21/6789"
    with pytest.raises(InvalidIdentifier, match="not a company prefix"):
        parse_identifier("gs1:9506001/01/09506000134376/21/12345")
    assert owner_prefix_candidates(parse_identifier("88.100.1/EQ-1")) == ["88.100.1", "88.100", "88"]


def test_qualifiers_and_attributes_are_kept_outside_the_key() -> None:
    ident = parse_identifier("https://id.gs1.org/01/09506000134376/22/V1/10/L%2F1/21/S+1?17=261231&linkType=pip")
    assert ident.canonical == "gs1/01/09506000134376/21/S%2B1"
    assert ident.serial == "S+1"
    assert ident.qualifiers == (("22", "V1"), ("10", "L/1"), ("17", "261231"))
    assert ident.attributes == (("linkType", "pip"),)
    uri = digital_link_uri(ident, "resolver.example.com")
    assert uri == "https://resolver.example.com/01/09506000134376/22/V1/10/L%2F1/21/S%2B1?17=261231&linkType=pip"
    assert parse_identifier(uri) == ident


@pytest.mark.parametrize(
    "text",
    [
        "",
        "   ",
        "88.100.1/EQ\n1",
        "88.100.1/EQ\x001",
        "88.100.1/a\u200bb",
        b"88.100.1/\xff\xfe",
        "88.100.1/a:b",
        "88.100.1/a\\b",
        "88.100.1/a/../b",
        "88.100.1/a/%2E%2E/b",
        "88.100.1/a%2F..%2Fb",
        "88.100.1/a//b",
        "88.100.1/a/",
        "88.100.1/%00",
        "88.100.1/%0A",
        "x" * 3000,
        "88.100.1/" + "x" * 256,
        "/01/../01/09506000134376",
        "/01/09506000134376/21/..",
        "/01/09506000134376/21/%2E%2E",
        "/01/09506000134376/21/a%2F%2E%2E%2Fb",
        "/01/09506000134376/21/a%5Cb",
        "/01/09506000134376//21/1",
        "/01/09506000134376/21/" + "9" * 21,
        "/01/09506000134376/21/a%20b",
        "urn:epc:id:sgtin:0614141.812345.",
        "gs1:9506000",
        "(01)09506000134376(21)",
        "gs1/01/09506000134375",
        "88.100.1",
        "/",
        "https://",
        "file:///etc/passwd",
        "digital link",
    ],
)
def test_bad_input_is_rejected_with_invalid_identifier(text: str | bytes) -> None:
    with pytest.raises(InvalidIdentifier) as info:
        parse_identifier(text)
    assert str(info.value)


def test_error_messages_say_what_is_wrong() -> None:
    cases: dict[str | bytes, str] = {
        "/01/09506000134375": "expected 6",
        b"\xc3(": "UTF-8",
        "88.100.1/EQ\x07": "U+0007",
        "x" * 5000: "longer than",
        "88.100.1/a:b": "':'",
        "/01/09506000134376/21/%2E%2E": "path trick",
        "/01/09506000134376/21/" + "9" * 21: "too long",
    }
    for text, fragment in cases.items():
        with pytest.raises(InvalidIdentifier, match=re.escape(fragment)):
            parse_identifier(text)


# --- Handle-style identifiers: split_handle unchanged -------------------------------------------


def legacy_split_handle(handle: str) -> tuple[str, str] | None:
    """Oracle: split_handle as it was before GS1 support (None = InvalidIdentifier)."""
    prefix, sep, suffix = handle.partition("/")
    try:
        gs1_prefix = prefix.startswith("gs1:") and prefix[4:].isascii() and prefix[4:].isdigit()
        seg_ok = all(
            s and s[0].isascii() and s[0].isalnum() and all(c.isascii() and (c.isalnum() or c == "-") for c in s)
            for s in prefix.split(".")
        )
        assert sep and suffix and 0 < len(prefix) <= 128
        assert seg_ok or (gs1_prefix and 4 <= len(prefix) - 4 <= 12)
        assert len(suffix) <= 255 and suffix.isprintable()
        assert not any(part in (".", "..") for part in suffix.split("/"))
    except AssertionError:
        return None
    return prefix, suffix


LEGACY = [
    ("88.100.1/EQ-0001", ("88.100.1", "EQ-0001")),
    ("4263537/4000", ("4263537", "4000")),
    ("88/big", ("88", "big")),
    ("0.NA/88.100.1", ("0.NA", "88.100.1")),
    ("88.100.1/a:b", ("88.100.1", "a:b")),
    ("gs1:9506000/x", ("gs1:9506000", "x")),
    ("88.100.1/a b/c", ("88.100.1", "a b/c")),
    ("bad prefix/x", None),
    ("88.100.1/\x01ctl", None),
    ("88.100.1/a/../b", None),
    ("88.100.1", None),
    ("88.100.1/", None),
    ("/x", None),
    ("88..1/x", None),
    ("gs1:123/x", None),
    ("-a/x", None),
]


@pytest.mark.parametrize(("handle", "expected"), LEGACY)
def test_split_handle_unchanged(handle: str, expected: tuple[str, str] | None) -> None:
    assert legacy_split_handle(handle) == expected
    if expected is None:
        with pytest.raises(InvalidIdentifier):
            split_handle(handle)
    else:
        assert split_handle(handle) == expected


@given(st.text(max_size=40) | st.from_regex(r"[0-9a-z.:-]{1,12}/[ -~]{0,20}", fullmatch=True))
def test_split_handle_matches_legacy_behaviour(text: str) -> None:
    try:
        got: tuple[str, str] | None = split_handle(text)
    except InvalidIdentifier:
        got = None
    assert got == legacy_split_handle(text)


# --- properties ---------------------------------------------------------------------------------

serials = st.text(alphabet=sorted(gs1.CSET82), min_size=1, max_size=20).filter(
    lambda s: s not in (".", "..") and not ("/" in s and any(p in ("", ".", "..") for p in s.split("/")))
)


@st.composite
def gtins(draw: st.DrawFn) -> str:
    body = draw(st.text(alphabet=string.digits, min_size=13, max_size=13))
    return body + gs1.check_digit(body)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(gtin=gtins(), serial=serials, gcp_len=st.integers(6, 12), lot=st.none() | serials)
def test_all_forms_of_one_item_share_one_key(gtin: str, serial: str, gcp_len: int, lot: str | None) -> None:
    key = f"gs1/01/{gtin}/21/{gs1.escape(serial)}"
    urn = epc.sgtin_from_gtin(gtin, serial, gcp_len).urn
    path = f"/01/{gtin}" + (f"/10/{gs1.escape(lot)}" if lot else "") + f"/21/{gs1.escape(serial)}"
    forms = [
        urn,
        "https://example.com" + path,
        "HTTPS://id.gs1.org/stem" + path + "?17=261231#x",
        path,
        key,
        f"gs1:{gtin[1 : 1 + gcp_len]}{path}",
        f"gs1:{gtin[1 : 1 + gcp_len]}/sgtin.{urn[len('urn:epc:id:sgtin:') :]}",
        f"^01{gtin}21{serial}",
    ]
    if not set("()") & set(serial):
        forms.append(f"(01){gtin}(21){serial}")
    if gtin.startswith("0"):
        forms.append(f"/01/{gtin[1:]}/21/{gs1.escape(serial)}")  # zero-suppressed GTIN-13
    parsed = [parse_identifier(f) for f in forms]
    assert {p.canonical for p in parsed} == {key}
    base = parse_identifier(key)
    assert (base.gtin, base.serial, base.qualifiers) == (gtin, serial, ())
    for p in parsed:
        assert parse_identifier(p.canonical) == base  # the canonical form re-parses to the same Identifier
        assert parse_identifier(digital_link_uri(p, "id.example.com")) == p  # nothing is lost
        assert f"gs1:{gtin[1 : 1 + gcp_len]}" in owner_prefix_candidates(p)
        assert split_handle(p.canonical) == ("gs1", p.suffix) and ":" not in p.suffix


@given(
    st.text(max_size=200)
    | st.binary(max_size=200)
    | st.text(alphabet="0123456789/%2EeFf.?&=+#:ab()^", max_size=80).map(lambda s: "https://a/01/" + s)
)
@settings(max_examples=500)
def test_random_input_only_raises_invalid_identifier(text: str | bytes) -> None:
    try:
        ident = parse_identifier(text)
    except InvalidIdentifier as exc:
        assert str(exc)
        return
    assert isinstance(ident, Identifier)
    again = parse_identifier(ident.canonical)
    assert again.canonical == ident.canonical
    assert ident.canonical == f"{ident.prefix}/{ident.suffix}"


handles = st.from_regex(r"88(\.[1-9][0-9]{0,3}){0,2}/[A-Za-z0-9][A-Za-z0-9._-]{0,30}", fullmatch=True)


@given(handles)
def test_handles_round_trip(handle: str) -> None:
    assume(not any(p in (".", "..") for p in handle.split("/")[1].split("/")))
    ident = parse_identifier(handle)
    assert (ident.scheme, ident.canonical) == ("handle", handle)
    assert (ident.prefix, ident.suffix) == split_handle(handle)
    assert parse_identifier(ident.canonical) == ident == parse_identifier(handle.encode())
