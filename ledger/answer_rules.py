"""What an answer kind is, and the strict comparisons its checker uses (docs/proofs.md, "Answers").

An answer kind is one JSON shape around a state proof: the key namespace of the proof's first entry,
the field that tells it apart from other kinds of that namespace, its fields, and a checker that
proves every field from the proven state (or refuses the answer). Adding a kind of answer is one
`AnswerKind` and one checker, listed in `ledger.verifier.KINDS`.

Comparisons are of JSON values, strictly: `true` is not `1`, `1` is not `1.0`, objects have the same
member names, arrays the same length and order.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, TypeVar

from ledger.codec import CodecError, decode, to_plain
from ledger.proofs import InvalidProof, VerifiedState

T = TypeVar("T")


@dataclass(frozen=True)
class Checked:
    """What a checker proved: the JSON form of the record the answer is about (None: absent)."""

    present: bool
    record: Any


@dataclass(frozen=True)
class AnswerKind:
    name: str
    key_prefix: bytes  # namespace of the proof's first entry
    marker: str | None  # a field only answers of this kind have (None: the namespace's default kind)
    required: frozenset[str]  # besides `proof`
    check: Callable[[Mapping[str, Any], VerifiedState], Checked]  # raises InvalidProof
    optional: frozenset[str] = field(default_factory=frozenset)  # besides `unproven`


def fail(code: str, message: str) -> InvalidProof:
    return InvalidProof(code, message)


def json_equal(a: Any, b: Any) -> bool:
    """Equality of JSON values that tells booleans, integers, floats and null apart."""
    if type(a) is not type(b):
        return False
    if type(a) is dict:
        return a.keys() == b.keys() and all(json_equal(a[k], b[k]) for k in a)
    if type(a) is list:
        return len(a) == len(b) and all(json_equal(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


def is_int(value: Any) -> bool:
    return type(value) is int


def need(doc: Mapping[str, Any], name: str, kind: type | tuple[type, ...], nullable: bool = False) -> Any:
    """Field `name` of the answer, of JSON type `kind` (str, int, bool, dict, list), else `answer_fields`."""
    value = doc.get(name)
    kinds = kind if isinstance(kind, tuple) else (kind,)
    if (value is None and nullable) or type(value) in kinds:
        return value
    raise fail("answer_fields", f"the answer's {name!r} is not a {'/'.join(k.__name__ for k in kinds)}")


def key_of(namespace: str, name: str) -> bytes | None:
    """The state key `namespace + name` (None when `name` is not valid Unicode text)."""
    try:
        return (namespace + name).encode()
    except UnicodeEncodeError:
        return None


def require_key(state: VerifiedState, namespace: str, name: str, what: str) -> None:
    """The proof's first entry is the key of the thing the answer names."""
    if key_of(namespace, name) != state.keys[0]:
        proven = state.keys[0].decode(errors="replace")
        raise fail("answer_key", f"the answer is about {what} {name!r}, the proof about {proven!r}")


def decode_value(cls: type[T], value: bytes | None, what: str) -> T | None:
    """The proven value as a record of `cls` (strict canonical decoding), None when absent."""
    if value is None:
        return None
    try:
        return decode(cls, value)
    except CodecError as exc:
        raise fail("value_not_record", f"the proven value is not a {what} record: {exc}") from exc


def require_presence(claims_present: bool, present: bool, what: str) -> None:
    if claims_present != present:
        said, proven = ("exists", "absent") if claims_present else ("does not exist", "present")
        raise fail("answer_presence", f"the answer says the {what} {said}; the proof proves it {proven}")


def require_record(claimed: Any, record: Any, what: str) -> Any:
    plain = to_plain(record)
    if not json_equal(claimed, plain):
        raise fail("answer_record", f"the answer's {what} differs from the proven record")
    return plain


def require_derived(name: str, claimed: Any, proven: Any) -> None:
    if not json_equal(claimed, proven):
        raise fail("answer_derived", f"the answer's {name} is {claimed!r:.80}; the proof gives {proven!r:.80}")
