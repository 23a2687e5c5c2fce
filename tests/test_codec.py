"""Canonical codec: round trips over the whole type algebra, and rejection of every other encoding."""

from __future__ import annotations

import json
import struct
from dataclasses import dataclass

import msgpack
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ledger.codec import CodecError, appended, decode, encode, from_plain, to_plain, unpack_strict

INT64_MIN = -(2**63)
UINT64_MAX = 2**64 - 1


@dataclass(frozen=True)
class Inner:
    n: int
    label: str


@dataclass(frozen=True)
class OneInt:
    x: int


@dataclass(frozen=True)
class OneBool:
    flag: bool


@dataclass(frozen=True)
class OneStr:
    s: str


@dataclass(frozen=True)
class OneBytes:
    b: bytes


@dataclass(frozen=True)
class Pair:
    a: int
    b: str


@dataclass(frozen=True)
class IntMap:
    m: dict[str, int]


@dataclass(frozen=True)
class Everything:
    i: int
    flag: bool
    s: str
    b: bytes
    opt_int: int | None
    opt_str: str | None
    opt_bytes: bytes | None
    ints: tuple[int, ...]
    blobs: tuple[bytes, ...]
    nested_ints: tuple[tuple[int, ...], ...]
    int_map: dict[str, int]
    record_map: dict[str, Inner]
    tuple_map: dict[str, tuple[str, ...]]
    inner: Inner
    opt_inner: Inner | None
    inners: tuple[Inner, ...]
    opt_inners: tuple[Inner, ...] | None


@dataclass(frozen=True)
class Outer:
    """Records nest several levels deep."""

    name: str
    everything: Everything
    children: tuple[Everything, ...]


# --- strategies -------------------------------------------------------------------------------

ints_st = st.one_of(
    st.integers(min_value=INT64_MIN, max_value=UINT64_MAX),
    st.sampled_from([0, 1, -1, 127, 128, -32, -33, 255, 256, 2**16, 2**32, INT64_MIN, UINT64_MAX, 2**63]),
)
text_st = st.text(max_size=40)
# Lengths around the fixstr/str8/str16 and bin8/bin16 boundaries.
long_text_st = st.one_of(text_st, st.integers(30, 300).map(lambda n: "é" * n))
bytes_st = st.one_of(st.binary(max_size=40), st.integers(250, 300).map(lambda n: b"\x01" * n))
inner_st = st.builds(Inner, ints_st, text_st)

everything_st = st.builds(
    Everything,
    i=ints_st,
    flag=st.booleans(),
    s=long_text_st,
    b=bytes_st,
    opt_int=st.none() | ints_st,
    opt_str=st.none() | text_st,
    opt_bytes=st.none() | bytes_st,
    ints=st.lists(ints_st, max_size=20).map(tuple),
    blobs=st.lists(st.binary(max_size=8), max_size=5).map(tuple),
    nested_ints=st.lists(st.lists(ints_st, max_size=4).map(tuple), max_size=4).map(tuple),
    int_map=st.dictionaries(text_st, ints_st, max_size=20),
    record_map=st.dictionaries(text_st, inner_st, max_size=4),
    tuple_map=st.dictionaries(text_st, st.lists(text_st, max_size=3).map(tuple), max_size=4),
    inner=inner_st,
    opt_inner=st.none() | inner_st,
    inners=st.lists(inner_st, max_size=4).map(tuple),
    opt_inners=st.none() | st.lists(inner_st, max_size=3).map(tuple),
)
outer_st = st.builds(Outer, text_st, everything_st, st.lists(everything_st, max_size=2).map(tuple))


def _sample_everything() -> Everything:
    inner = Inner(-5, "ünï")
    return Everything(
        i=UINT64_MAX,
        flag=True,
        s="héllo ☃",
        b=b"\x00\xff" * 20,
        opt_int=None,
        opt_str="x",
        opt_bytes=b"",
        ints=(1, -1, 300, INT64_MIN),
        blobs=(b"a", b""),
        nested_ints=((1, 2), ()),
        int_map={"b": 2, "a": 1, "": 0, "é": 3},
        record_map={"z": inner, "y": Inner(0, "")},
        tuple_map={"k": ("v", "w")},
        inner=inner,
        opt_inner=inner,
        inners=(inner, Inner(1, "one")),
        opt_inners=(),
    )


# --- round trips ------------------------------------------------------------------------------


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(everything_st)
def test_record_round_trip(value: Everything) -> None:
    data = encode(value)
    decoded = decode(Everything, data)
    assert decoded == value
    assert encode(decoded) == data


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(outer_st)
def test_nested_record_round_trip(value: Outer) -> None:
    assert decode(Outer, encode(value)) == value


@settings(max_examples=100, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(everything_st)
def test_plain_json_round_trip(value: Everything) -> None:
    plain = json.loads(json.dumps(to_plain(value)))
    assert from_plain(Everything, plain) == value


def test_plain_form_shape() -> None:
    value = Pair(7, "x")
    assert to_plain(value) == {"a": 7, "b": "x"}
    assert to_plain(OneBytes(b"\xab\x01")) == {"b": "ab01"}
    assert to_plain(_sample_everything())["inner"] == {"n": -5, "label": "ünï"}


def test_encoding_is_independent_of_dict_insertion_order() -> None:
    a = IntMap({"a": 1, "b": 2, "c": 3})
    b = IntMap({"c": 3, "a": 1, "b": 2})
    assert encode(a) == encode(b)
    # The map is written with its keys sorted.
    assert encode(a) == b"\x91\x83\xa1a\x01\xa1b\x02\xa1c\x03"


@pytest.mark.parametrize("n", [0, 1, -1, 127, 128, 255, 256, -32, -33, -128, -129, 2**31, INT64_MIN, UINT64_MAX])
def test_int_bounds_round_trip(n: int) -> None:
    assert decode(int, encode(n)) == n
    assert decode(OneInt, encode(OneInt(n))) == OneInt(n)


@pytest.mark.parametrize("n", [UINT64_MAX + 1, INT64_MIN - 1, 2**100, -(2**100)])
def test_ints_beyond_64_bits_do_not_encode(n: int) -> None:
    with pytest.raises(CodecError):
        encode(n)
    with pytest.raises(CodecError):
        encode(OneInt(n))
    with pytest.raises(CodecError):
        encode(Everything(**{**_sample_everything().__dict__, "ints": (1, n)}))


def test_top_level_float_does_not_encode() -> None:
    with pytest.raises(CodecError):
        encode(1.5)
    with pytest.raises(CodecError):
        encode([1, 2.0])


def test_float_in_a_record_field_does_not_encode() -> None:
    with pytest.raises(CodecError):
        encode(OneInt(1.5))  # type: ignore[arg-type]


# --- rejection of non-canonical or mistyped bytes -------------------------------------------------

NON_CANONICAL = {
    # Ints in a longer header than needed.
    "uint16 for 5": (int, b"\xcd\x00\x05"),
    "uint8 for 5": (int, b"\xcc\x05"),
    "int8 for 5": (int, b"\xd0\x05"),
    "uint32 for 5": (int, b"\xce\x00\x00\x00\x05"),
    "uint64 for 300": (int, b"\xcf" + (300).to_bytes(8, "big")),
    "int8 for -1": (int, b"\xd0\xff"),
    "int16 for -100": (int, b"\xd1\xff\x9c"),
    "int64 for -1": (int, b"\xd3" + (-1).to_bytes(8, "big", signed=True)),
    "long int inside a record": (OneInt, b"\x91\xcd\x00\x05"),
    # Strings and bins in a longer header than needed.
    "str8 for a short string": (str, b"\xd9\x01a"),
    "str16 for a short string": (str, b"\xda\x00\x01a"),
    "str8 in a record": (OneStr, b"\x91\xd9\x02ab"),
    "bin16 for short bytes": (bytes, b"\xc5\x00\x01x"),
    "bin32 for short bytes": (OneBytes, b"\x91\xc6\x00\x00\x00\x01x"),
    # Arrays and maps in a longer header than needed.
    "array16 for a record": (OneInt, b"\xdc\x00\x01\x05"),
    "map16 for a short map": (IntMap, b"\x91\xde\x00\x01\xa1a\x01"),
    # Maps: unsorted or duplicate keys.
    "unsorted map keys": (IntMap, b"\x91\x82\xa1b\x01\xa1a\x02"),
    "duplicate map keys": (IntMap, b"\x91\x82\xa1a\x01\xa1a\x02"),
    "duplicate map keys, same value": (IntMap, b"\x91\x82\xa1a\x01\xa1a\x01"),
    # Trailing bytes.
    "trailing byte": (OneInt, b"\x91\x05\x00"),
    "two records": (OneInt, b"\x91\x05\x91\x05"),
}

MISTYPED = {
    "float64 for int": (OneInt, b"\x91\xcb" + struct.pack(">d", 5.0)),
    "float32 for int": (OneInt, b"\x91\xca" + struct.pack(">f", 5.0)),
    "float as map value": (IntMap, b"\x91\x81\xa1a\xcb" + struct.pack(">d", 1.0)),
    "fixext1": (OneInt, b"\x91\xd4\x01\x00"),
    "ext8": (OneBytes, b"\x91\xc7\x01\x05\x00"),
    "timestamp ext for int": (OneInt, b"\x91\xd6\xff\x00\x00\x00\x01"),
    "true for int": (OneInt, b"\x91\xc3"),
    "false for int": (int, b"\xc2"),
    "int 1 for bool": (OneBool, b"\x91\x01"),
    "int 0 for bool": (bool, b"\x00"),
    "nil for int": (OneInt, b"\x91\xc0"),
    "bin for str": (OneStr, b"\x91\xc4\x01a"),
    "str for bytes": (OneBytes, b"\x91\xa1a"),
    "int map key": (IntMap, b"\x91\x81\x01\x01"),
    "bin map key": (IntMap, b"\x91\x81\xc4\x01a\x01"),
    "map for record": (Pair, b"\x81\xa1a\x01"),
    "too few fields": (Pair, b"\x91\x01"),
    "too many fields": (Pair, b"\x93\x01\xa1x\x02"),
    "empty array for record": (Pair, b"\x90"),
    "scalar for record": (Pair, b"\x01"),
    "invalid utf-8": (OneStr, b"\x91\xa2\xff\xfe"),
    "invalid utf-8 as map key": (IntMap, b"\x91\x81\xa1\xff\x01"),
    "overlong utf-8": (str, b"\xa2\xc0\xaf"),
    "utf-8 surrogate": (str, b"\xa3\xed\xa0\x80"),
    "empty input": (OneInt, b""),
    "reserved byte 0xc1": (OneInt, b"\xc1"),
    "truncated array": (Pair, b"\x92\x01"),
    "truncated str": (OneStr, b"\x91\xa5ab"),
}


@pytest.mark.parametrize("cls,data", list(NON_CANONICAL.values()), ids=list(NON_CANONICAL))
def test_non_canonical_forms_are_rejected(cls: type, data: bytes) -> None:
    # The bytes start with well-formed msgpack that a lenient unpacker accepts...
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    next(unpacker)
    # ...but not the canonical encoding of any value, so the strict decoder refuses them.
    with pytest.raises(CodecError):
        decode(cls, data)


@pytest.mark.parametrize("cls,data", list(MISTYPED.values()), ids=list(MISTYPED))
def test_mistyped_or_malformed_input_is_rejected(cls: type, data: bytes) -> None:
    with pytest.raises(CodecError):
        decode(cls, data)


def test_canonical_forms_of_the_rejected_cases_decode() -> None:
    """The shortest forms of the values above are accepted, so the rejections are about the form."""
    assert decode(int, b"\x05") == 5
    assert decode(int, b"\xff") == -1
    assert decode(int, b"\xd0\x9c") == -100
    assert decode(int, b"\xcd\x01\x2c") == 300
    assert decode(OneInt, b"\x91\x05") == OneInt(5)
    assert decode(str, b"\xa1a") == "a"
    assert decode(bytes, b"\xc4\x01x") == b"x"
    assert decode(IntMap, b"\x91\x82\xa1a\x02\xa1b\x01") == IntMap({"a": 2, "b": 1})
    assert decode(OneBool, b"\x91\xc3") == OneBool(True)
    assert decode(Pair, b"\x92\x01\xa1x") == Pair(1, "x")


def test_every_truncation_is_rejected() -> None:
    data = encode(_sample_everything())
    for cut in range(len(data)):
        with pytest.raises(CodecError):
            decode(Everything, data[:cut])


def test_non_bytes_input_is_rejected() -> None:
    with pytest.raises(CodecError):
        decode(OneInt, [5])  # type: ignore[arg-type]


def test_oversized_input_is_rejected() -> None:
    big = encode(OneBytes(b"x" * (4 * 1024 * 1024)))
    with pytest.raises(CodecError):
        decode(OneBytes, big)


def test_unpack_strict_rejects_ext_types() -> None:
    with pytest.raises(CodecError):
        unpack_strict(b"\xd4\x01\x00")


def test_unpack_strict_rejects_the_timestamp_ext_type() -> None:
    with pytest.raises(CodecError):
        unpack_strict(b"\xd6\xff\x00\x00\x00\x01")


# --- plain form rejections ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "cls,plain",
    [
        (OneBytes, {"b": "AB"}),  # uppercase hex
        (OneBytes, {"b": "a b"}),  # separators
        (OneBytes, {"b": "abc"}),  # odd length
        (OneBytes, {"b": 5}),
        (OneInt, {"x": 1.0}),
        (OneInt, {"x": True}),
        (OneInt, {"x": "1"}),
        (OneBool, {"flag": 1}),
        (OneInt, {}),  # missing field
        (OneInt, {"x": 1, "y": 2}),  # unknown field
        (OneInt, [1]),  # array instead of object
        (IntMap, {"m": {"a": None}}),
        (IntMap, {"m": [["a", 1]]}),
    ],
)
def test_from_plain_rejects_mistyped_json(cls: type, plain: object) -> None:
    with pytest.raises(CodecError):
        from_plain(cls, plain)


# --- properties over arbitrary bytes --------------------------------------------------------------


def _decode_is_canonical_or_raises(cls: type, data: bytes) -> None:
    try:
        value: object = decode(cls, data)
    except CodecError:
        return
    assert encode(value) == data


@settings(max_examples=300, deadline=None)
@given(st.binary(max_size=64), st.sampled_from([int, str, bytes, bool, OneInt, Pair, IntMap, Inner, Everything]))
def test_random_bytes_decode_only_to_their_canonical_value(data: bytes, cls: type) -> None:
    _decode_is_canonical_or_raises(cls, data)


@settings(max_examples=200, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(everything_st, st.data())
def test_mutated_encodings_decode_only_to_their_canonical_value(value: Everything, data: st.DataObject) -> None:
    raw = bytearray(encode(value))
    op = data.draw(st.sampled_from(["flip", "insert", "delete"]))
    pos = data.draw(st.integers(0, len(raw) - 1))
    if op == "flip":
        raw[pos] ^= data.draw(st.integers(1, 255))
    elif op == "insert":
        raw.insert(pos, data.draw(st.integers(0, 255)))
    else:
        del raw[pos]
    _decode_is_canonical_or_raises(Everything, bytes(raw))


@dataclass(frozen=True)
class Before:
    name: str
    size: int


@dataclass(frozen=True)
class After:
    name: str
    size: int
    share: int = appended(0)
    note: str = appended("")


def test_a_record_with_appended_fields_is_not_a_record_with_misplaced_ones() -> None:
    @dataclass(frozen=True)
    class Misplaced:
        share: int = appended(0)
        name: str = ""

    with pytest.raises(CodecError, match="appended fields must come after all others"):
        encode(Misplaced())


@given(st.text(max_size=8), st.integers(0, 2**40), st.integers(0, 3), st.sampled_from(["", "x"]))
def test_appended_fields_at_their_defaults_are_not_encoded_and_old_records_decode(
        name: str, size: int, share: int, note: str) -> None:
    old = encode(Before(name, size))
    assert decode(After, old) == After(name, size) and encode(After(name, size)) == old
    record = After(name, size, share, note)
    raw = encode(record)
    assert decode(After, raw) == record
    # Only the trailing fields at their defaults are left out; the last one written is never its default.
    assert len(msgpack.unpackb(raw)) == 2 + (2 if note else 1 if share else 0)
    assert from_plain(After, {"name": name, "size": size}) == After(name, size)
    assert from_plain(After, to_plain(record)) == record
    # Writing a default out is not canonical: one encoding per record.
    with pytest.raises(CodecError):
        decode(After, msgpack.packb([name, size, share, ""], use_bin_type=True))
    with pytest.raises(CodecError):
        decode(After, msgpack.packb([name], use_bin_type=True))
