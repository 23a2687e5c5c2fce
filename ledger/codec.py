"""Canonical msgpack encoding of typed records.

Theory of operation: every record that is hashed or signed is a frozen dataclass whose fields
are drawn from a small type algebra (int, bool, str, bytes, None-able, tuple[T, ...],
dict[str, T] and nested records). A record encodes as a msgpack array of its fields in
declaration order; dicts encode as maps with sorted keys. msgpack already chooses the shortest
form for every int, str and bin header, so the encoding of a value is unique.

Decoding is strict: the bytes are unpacked, rebuilt into the typed record (rejecting wrong types,
floats, ext types, wrong arity), then encoded again; if that encoding is not byte-for-byte the
input, the input was not canonical (long-form headers, unsorted or duplicate map keys, trailing
bytes...) and is rejected. So a signature always covers exactly one byte string per record.

`to_plain`/`from_plain` give the JSON-facing form of the same records (bytes as lowercase hex).

A field added to a record after records of it were stored is declared `appended(default)`, after every other
field: a record whose appended fields hold their defaults encodes without them, exactly as before they existed,
so old records still decode (and keep their bytes and hashes), and writing the default explicitly is not
canonical (the encoding stays unique).
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Callable
from typing import Any, TypeVar, Union

import msgpack

T = TypeVar("T")

MAX_RECORD_BYTES = 4 * 1024 * 1024


class CodecError(ValueError):
    """Raised for bytes or plain data that are not the canonical form of the expected type."""


# --- encoding ----------------------------------------------------------------------------------

# Per-class encoders, compiled once: a record becomes a list of its fields, with conversion code
# only for fields that need it (msgpack packs ints, strs, bytes, bools, None and tuples natively).
_encoder_cache: dict[type, Callable[[Any], Any]] = {}


def _to_msgpack_tree(value: Any) -> Any:
    enc = _encoder_cache.get(type(value))
    if enc is not None:
        return enc(value)
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return _record_encoder(type(value))(value)
    if isinstance(value, tuple | list):
        return [_to_msgpack_tree(v) for v in value]
    if isinstance(value, dict):
        return {k: _to_msgpack_tree(value[k]) for k in sorted(value)}
    if isinstance(value, float):
        raise CodecError("floats are not canonical")
    return value


_PRIMITIVES = (int, str, bytes, bool, type(None))


def _primitive_types(tp: Any) -> tuple[type, ...] | None:
    """The exact Python types allowed for a field msgpack packs as it is, or None if not such a field."""
    if tp in _PRIMITIVES:
        return (tp,)
    if typing.get_origin(tp) in (Union, types.UnionType):
        args = typing.get_args(tp)
        if all(a in _PRIMITIVES for a in args):
            return tuple(args)
    return None


def _checked(allowed: tuple[type, ...]) -> Callable[[Any], Any]:
    def check(v: Any) -> Any:
        if type(v) not in allowed:
            _bad_type(allowed, v)
        return v

    return check


def _bad_type(allowed: tuple[type, ...], v: Any) -> typing.NoReturn:
    raise CodecError(f"expected {'/'.join(t.__name__ for t in allowed)}, got {type(v).__name__}")


def _type_test(var: str, allowed: tuple[type, ...]) -> str:
    """Python source that is true when `var` is NOT of one of the `allowed` exact types."""
    tests = [f"type({var}) is not {t.__name__}" for t in allowed if t is not type(None)]
    if type(None) not in allowed:
        return " and ".join(tests)
    return f"{var} is not None" + (f" and {' and '.join(tests)}" if tests else "")


def _primitive_check_line(i: int, tp: Any, env: dict[str, Any]) -> str | None:
    """Generated source checking field `x{i}` of primitive type `tp` inline (None if `tp` is not primitive)."""
    allowed = _primitive_types(tp)
    if allowed is None:
        return None
    env[f"a{i}"] = allowed
    return f"    if {_type_test(f'x{i}', allowed)}: _bad_type(a{i}, x{i})"


def _compile(source: str, name: str, env: dict[str, Any]) -> Callable[..., Any]:
    """Build a function from generated source (the codec's hot paths: one per record class)."""
    namespace: dict[str, Any] = {}
    exec(source, {"CodecError": CodecError, **env}, namespace)  # noqa: S102 - source built from field names only
    fn: Callable[..., Any] = namespace[name]
    return fn


def _field_encoder(tp: Any) -> Callable[[Any], Any]:
    """Converts a field's value to what msgpack packs, checking primitive types exactly."""
    allowed = _primitive_types(tp)
    if allowed is not None:
        return _checked(allowed)
    origin = typing.get_origin(tp)
    if origin in (Union, types.UnionType):
        inner = [a for a in typing.get_args(tp) if a is not type(None)]
        inner_enc = _field_encoder(inner[0]) if len(inner) == 1 else _to_msgpack_tree
        return lambda v: None if v is None else inner_enc(v)
    if origin is tuple:
        item_enc = _field_encoder(typing.get_args(tp)[0])
        return lambda v: [item_enc(x) for x in v]
    return _to_msgpack_tree


APPENDED = "codec_appended"


def appended(default: Any) -> Any:
    """A record field added later (see the module's docstring): omitted from the encoding while at `default`."""
    return dataclasses.field(default=default, metadata={APPENDED: True})


def _appended_defaults(cls: type) -> tuple[Any, ...]:
    """The defaults of the record's trailing appended fields, in field order (checked to be trailing)."""
    fields = dataclasses.fields(cls)
    flags = [bool(f.metadata.get(APPENDED)) for f in fields]
    tail = len(flags) - flags.index(True) if True in flags else 0
    if any(flags[:len(flags) - tail]) or not all(flags[len(flags) - tail:]):
        raise TypeError(f"{cls.__name__}: appended fields must come after all others")
    return tuple(f.default for f in fields[len(fields) - tail:])


def _record_encoder(cls: type) -> Callable[[Any], Any]:
    enc = _encoder_cache.get(cls)
    if enc is not None:
        return enc
    hints = typing.get_type_hints(cls)
    names = _field_names(cls)
    # Generated code: read each field, check primitive types inline, convert the others.
    lines = ["def encode_record(v):"]
    env: dict[str, Any] = {"_bad_type": _bad_type}
    for i, n in enumerate(names):
        lines.append(f"    x{i} = v.{n}")
        check = _primitive_check_line(i, hints[n], env)
        if check is None:
            env[f"e{i}"] = _field_encoder(hints[n])
            check = f"    x{i} = e{i}(x{i})"
        lines.append(check)
    lines.append(f"    out = [{', '.join(f'x{i}' for i in range(len(names)))}]")
    defaults = _appended_defaults(cls)
    if defaults:  # drop the trailing appended fields at their defaults
        env["_defaults"], env["_required"] = (None,) * (len(names) - len(defaults)) + defaults, len(names) - len(
            defaults)
        lines.append("    while len(out) > _required and type(out[-1]) is type(_defaults[len(out) - 1])"
                     " and out[-1] == _defaults[len(out) - 1]:")
        lines.append("        out.pop()")
    lines.append("    return out")
    enc = _compile("\n".join(lines), "encode_record", env)
    _encoder_cache[cls] = enc
    return enc


def encode(value: Any) -> bytes:
    """Canonical bytes of a record (or of a plain value built from the supported types)."""
    try:
        return msgpack.packb(_to_msgpack_tree(value), use_bin_type=True)
    except (OverflowError, TypeError, ValueError) as exc:
        raise CodecError(str(exc)) from exc


# --- typed decoding ----------------------------------------------------------------------------

_field_cache: dict[type, tuple[str, ...]] = {}
_converter_cache: dict[Any, Callable[[Any, bool], Any]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    names = _field_cache.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls))
        _field_cache[cls] = names
    return names


def _fail(expected: str, got: Any) -> typing.NoReturn:
    raise CodecError(f"expected {expected}, got {type(got).__name__}")


def _converter(tp: Any) -> Callable[[Any, bool], Any]:
    """Build (and cache) a function turning an unpacked msgpack tree or plain JSON into `tp`.

    The bool argument selects the plain (JSON) form, where bytes arrive as hex strings.
    """
    conv = _converter_cache.get(tp)
    if conv is None:
        conv = _build_converter(tp)
        _converter_cache[tp] = conv
    return conv


def _build_converter(tp: Any) -> Callable[[Any, bool], Any]:
    origin = typing.get_origin(tp)
    if tp is int:

        def conv_int(v: Any, plain: bool) -> int:
            if type(v) is not int:
                _fail("int", v)
            return v

        return conv_int
    if tp is bool:

        def conv_bool(v: Any, plain: bool) -> bool:
            if type(v) is not bool:
                _fail("bool", v)
            return v

        return conv_bool
    if tp is str:

        def conv_str(v: Any, plain: bool) -> str:
            if type(v) is not str:
                _fail("str", v)
            return v

        return conv_str
    if tp is bytes:

        def conv_bytes(v: Any, plain: bool) -> bytes:
            if plain:
                if type(v) is not str:
                    _fail("hex string", v)
                try:
                    out = bytes.fromhex(v)
                except ValueError as exc:
                    raise CodecError("invalid hex") from exc
                if out.hex() != v:
                    raise CodecError("hex must be lowercase without separators")
                return out
            if type(v) is not bytes:
                _fail("bytes", v)
            return v

        return conv_bytes
    if tp is type(None):

        def conv_none(v: Any, plain: bool) -> None:
            if v is not None:
                _fail("nil", v)
            return None

        return conv_none
    if origin in (Union, types.UnionType):
        args = typing.get_args(tp)
        inner = [a for a in args if a is not type(None)]
        if len(args) != 2 or len(inner) != 1:
            raise TypeError(f"only Optional[X] unions are supported, not {tp}")
        inner_conv = _converter(inner[0])

        def conv_optional(v: Any, plain: bool) -> Any:
            return None if v is None else inner_conv(v, plain)

        return conv_optional
    if origin is tuple:
        args = typing.get_args(tp)
        if len(args) != 2 or args[1] is not Ellipsis:
            raise TypeError(f"only tuple[X, ...] is supported, not {tp}")
        item_conv = _converter(args[0])

        def conv_tuple(v: Any, plain: bool) -> tuple[Any, ...]:
            if type(v) is not list:
                _fail("array", v)
            return tuple(item_conv(x, plain) for x in v)

        return conv_tuple
    if origin is dict:
        key_t, val_t = typing.get_args(tp)
        if key_t is not str:
            raise TypeError("only dict[str, X] is supported")
        val_conv = _converter(val_t)

        def conv_dict(v: Any, plain: bool) -> dict[str, Any]:
            if type(v) is not dict:
                _fail("map", v)
            out = {}
            for k, x in v.items():
                if type(k) is not str:
                    _fail("str key", k)
                out[k] = val_conv(x, plain)
            return out

        return conv_dict
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return _record_converter(tp)
    raise TypeError(f"unsupported field type {tp!r}")


def _compile_record_decoder(cls: type, names: tuple[str, ...], hints: dict[str, Any]) -> Callable[[Any], Any]:
    """Generated decoder of the msgpack form: arity check, inline primitive checks, nested converters."""
    env: dict[str, Any] = {"cls": cls, "_fail": _fail, "_bad_type": _bad_type}
    xs = ", ".join(f"x{i}" for i in range(len(names)))
    defaults = _appended_defaults(cls)
    required = len(names) - len(defaults)
    env["_defaults"] = defaults
    lines = [
        "def decode_record(v):",
        f"    if type(v) is not list: _fail('array for {cls.__name__}', v)",
        f"    if not {required} <= len(v) <= {len(names)}:",
        f"        raise CodecError('{cls.__name__}: expected {len(names)} fields, got %d' % len(v))",
    ]
    if defaults:  # absent appended fields take their defaults
        lines.append(f"    if len(v) < {len(names)}: v = [*v, *_defaults[len(v) - {required}:]]")
    if names:
        lines.append(f"    {xs}, = v")
    for i, n in enumerate(names):
        check = _primitive_check_line(i, hints[n], env)
        if check is None:
            env[f"c{i}"] = _converter(hints[n])
            check = f"    x{i} = c{i}(x{i}, False)"
        lines.append(check)
    lines.append(f"    return cls({xs})")
    return _compile("\n".join(lines), "decode_record", env)


def _record_converter(cls: type) -> Callable[[Any, bool], Any]:
    hints = typing.get_type_hints(cls)
    names = _field_names(cls)
    convs: list[Callable[[Any, bool], Any]] = []
    fast: list[Callable[[Any], Any]] = []
    defaults: list[Any] = []

    def conv_record(v: Any, plain: bool) -> Any:
        if not convs:  # resolved lazily so records may refer to each other
            defaults.extend(_appended_defaults(cls))
            convs.extend(_converter(hints[n]) for n in names)
            fast.append(_compile_record_decoder(cls, names, hints))
        if not plain:
            return fast[0](v)
        if type(v) is not dict:
            _fail(f"object for {cls.__name__}", v)
        if set(v) != set(names):
            v = {**{n: to_plain(d) for n, d in zip(names[len(names) - len(defaults):], defaults, strict=True)}, **v}
        if set(v) != set(names):
            missing = sorted(set(names) - set(v))
            extra = sorted(set(v) - set(names))
            raise CodecError(f"{cls.__name__}: missing fields {missing}, unknown fields {extra}")
        return cls(*(c(v[n], True) for c, n in zip(convs, names, strict=True)))

    return conv_record


def _reject_ext(code: int, data: bytes) -> Any:
    raise CodecError("msgpack ext types are not allowed")


def _reject_timestamps(value: Any) -> None:
    # msgpack decodes ext type -1 (Timestamp) itself, without calling ext_hook.
    if isinstance(value, msgpack.Timestamp):
        raise CodecError("msgpack ext types are not allowed")
    if type(value) is list:
        for v in value:
            if type(v) in (list, dict, msgpack.Timestamp):
                _reject_timestamps(v)
    elif type(value) is dict:
        for v in value.values():
            _reject_timestamps(v)


def unpack_strict(data: bytes) -> Any:
    """Unpack msgpack without any type conversion; reject every ext type and invalid UTF-8."""
    if len(data) > MAX_RECORD_BYTES:
        raise CodecError("record too large")
    try:
        value = msgpack.unpackb(data, raw=False, use_list=True, strict_map_key=True, ext_hook=_reject_ext)
    except CodecError:
        raise
    except Exception as exc:  # msgpack raises a zoo of exception types on garbage
        raise CodecError(f"malformed msgpack: {exc}") from exc
    _reject_timestamps(value)
    return value


def decode(cls: type[T], data: bytes, trusted: bool = False) -> T:
    """Decode canonical bytes into `cls`; raise CodecError for anything else.

    `trusted=True` skips the canonical re-encoding check, for bytes this node wrote itself
    (its own store), which were produced by `encode` and so are canonical already.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise CodecError("expected bytes")
    data = bytes(data)
    try:
        value = _converter(cls)(unpack_strict(data), False)
    except (TypeError, ValueError) as exc:
        raise CodecError(str(exc)) from exc
    if not trusted and encode(value) != data:
        raise CodecError(f"non-canonical encoding of {getattr(cls, '__name__', cls)}")
    return typing.cast(T, value)


# --- plain (JSON) form -------------------------------------------------------------------------


def to_plain(value: Any) -> Any:
    """JSON-ready form: records become objects keyed by field name, bytes become hex."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {name: to_plain(getattr(value, name)) for name in _field_names(type(value))}
    if isinstance(value, bytes):
        return value.hex()
    if isinstance(value, tuple | list):
        return [to_plain(v) for v in value]
    if isinstance(value, dict):
        return {k: to_plain(v) for k, v in value.items()}
    return value


def from_plain(cls: type[T], value: Any) -> T:
    """Build a record from its JSON form, with the same type checks as `decode`."""
    try:
        return typing.cast(T, _converter(cls)(value, True))
    except (TypeError, ValueError) as exc:
        raise CodecError(str(exc)) from exc
