"""Generated gRPC requests for the fuzz suite, built from the proto descriptors.

``payloads(descriptor, hints, seeds)`` draws the bytes of one request in one
of five shapes: a message with random field values (strings over all of
Unicode, including astral planes, oversized strings, extreme and negative
integers, NaN and infinities, unknown enum values, empty and oversized
repeated fields); a valid seed request with one or two fields (top-level or
one level down) replaced by such values; either of those truncated or with
one byte flipped; or random bytes. ``hints`` maps field names to real values
(a key id, a tier name) and seeds are requests that succeed, so many cases
reach past the first check into the domain code.

``raw_call`` sends bytes with identity serializers, so byte-level cases reach
the server exactly as drawn.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

import grpc
from google.protobuf.descriptor import Descriptor, FieldDescriptor, MethodDescriptor
from google.protobuf.message import Message
from google.protobuf.message_factory import GetMessageClass
from hypothesis import strategies as st

FD = FieldDescriptor
INT_RANGES: dict[int, tuple[int, int]] = {
    **dict.fromkeys((FD.TYPE_INT32, FD.TYPE_SINT32, FD.TYPE_SFIXED32), (-(2**31), 2**31 - 1)),
    **dict.fromkeys((FD.TYPE_INT64, FD.TYPE_SINT64, FD.TYPE_SFIXED64), (-(2**63), 2**63 - 1)),
    **dict.fromkeys((FD.TYPE_UINT32, FD.TYPE_FIXED32), (0, 2**32 - 1)),
    **dict.fromkeys((FD.TYPE_UINT64, FD.TYPE_FIXED64), (0, 2**64 - 1)),
}
# Sizes around the services' limits (64 KiB prompts and cache texts, 128-char
# tags) and far past them.
EDGE_STRINGS = ("", " ", "\x00", "a\x00b", "\u202e\u0301", "ꙮ𓀀𝔘" * 100, "x" * 129, "y" * 65_537, "z" * 300_000)
OVERSIZED_REPEATS = (129, 300, 383, 384, 385, 2_000)
# Elements of an oversized repeated field stay small, so a drawn request stays
# within a few MiB (the servers take 16 MiB).
SMALL_STRING_CHARS = 200

Tweak = Callable[[Message], None]


def integers(lo: int, hi: int) -> st.SearchStrategy[int]:
    edges = sorted({lo, lo + 1, -1 if lo < 0 else 0, 0, 1, hi - 1, hi})
    return st.one_of(st.sampled_from(edges), st.integers(max(lo, -10_000), min(hi, 1_000_000)), st.integers(lo, hi))


def strings(hints: Sequence[str] = (), small: bool = False) -> st.SearchStrategy[str]:
    # Drawn by index: the strategy's repr (in hypothesis reports) stays short.
    edges = [i for i, e in enumerate(EDGE_STRINGS) if not small or len(e) <= SMALL_STRING_CHARS]
    options: list[st.SearchStrategy[str]] = [st.text(max_size=40), st.sampled_from(edges).map(EDGE_STRINGS.__getitem__)]
    if hints:
        options.insert(0, st.sampled_from(list(hints)))
    return st.one_of(*options)


def scalar(field: FieldDescriptor, hints: Mapping[str, Sequence[str]], small: bool) -> st.SearchStrategy[Any]:
    t = field.type
    if t in INT_RANGES:
        return integers(*INT_RANGES[t])
    if t == FD.TYPE_STRING:
        return strings(hints.get(field.name, ()), small)
    if t == FD.TYPE_BYTES:
        return st.binary(max_size=64)
    if t == FD.TYPE_BOOL:
        return st.booleans()
    if t in (FD.TYPE_FLOAT, FD.TYPE_DOUBLE):
        width = 32 if t == FD.TYPE_FLOAT else 64
        return st.one_of(st.sampled_from([0.0, -0.0, 1.0, -1.0, 0.5, 2.0]), st.floats(width=width))
    if t == FD.TYPE_ENUM:
        known = [v.number for v in field.enum_type.values]
        return st.one_of(st.sampled_from(known), integers(-(2**31), 2**31 - 1))  # unknown values too
    raise NotImplementedError(f"no strategy for field {field.full_name} of type {t}")


def field_values(field: FieldDescriptor, hints: Mapping[str, Sequence[str]], depth: int,
                 small: bool = False) -> st.SearchStrategy[Any]:  # fmt: skip
    def one(small: bool) -> st.SearchStrategy[Any]:
        if field.message_type is None:
            return scalar(field, hints, small)
        if field.message_type.GetOptions().map_entry:
            raise NotImplementedError(f"map field {field.full_name}: extend grpc_fuzz.field_values")
        return message(field.message_type, hints, depth + 1, small)

    if not field.is_repeated:
        return one(small)
    return st.one_of(
        st.just([]),
        st.lists(one(small), min_size=1, max_size=3),
        st.tuples(one(True), st.sampled_from(OVERSIZED_REPEATS)).map(lambda pair: [pair[0]] * pair[1]),
    )


def _set(msg: Message, field: FieldDescriptor, value: Any) -> None:
    if field.is_repeated:
        getattr(msg, field.name).extend(value)
    elif field.message_type is not None:
        getattr(msg, field.name).CopyFrom(value)
    else:
        setattr(msg, field.name, value)


def _build(cls: type[Message], fields: Sequence[FieldDescriptor], values: Sequence[Any]) -> Message:
    msg = cls()
    for field, value in zip(fields, values, strict=True):
        if value is not None:
            _set(msg, field, value)
    return msg


def message(desc: Descriptor, hints: Mapping[str, Sequence[str]], depth: int = 0,
            small: bool = False) -> st.SearchStrategy[Message]:  # fmt: skip
    """A message of type ``desc``; each field is left unset or drawn."""
    if depth > 4:
        return st.just(GetMessageClass(desc)())
    fields = list(desc.fields)
    drawn = st.tuples(*(st.one_of(st.none(), field_values(f, hints, depth, small)) for f in fields))
    cls = GetMessageClass(desc)
    return drawn.map(lambda values: _build(cls, fields, values))


FieldPath = tuple[str | int, ...]


def _slots(seed: Message) -> list[tuple[FieldPath, FieldDescriptor]]:
    """Every field of the seed, and the fields of its set sub-messages."""
    out: list[tuple[FieldPath, FieldDescriptor]] = []
    for f in seed.DESCRIPTOR.fields:
        out.append(((), f))
        if f.message_type is None or f.message_type.GetOptions().map_entry:
            continue
        if f.is_repeated:
            for i in range(len(getattr(seed, f.name))):
                out += [((f.name, i), g) for g in f.message_type.fields]
        elif seed.HasField(f.name):
            out += [((f.name,), g) for g in f.message_type.fields]
    return out


def _at(msg: Any, path: FieldPath) -> Any:
    for step in path:
        msg = msg[step] if isinstance(step, int) else getattr(msg, step)
    return msg


def variants(seed: Message, hints: Mapping[str, Sequence[str]]) -> st.SearchStrategy[Message]:
    """The seed with one or two of its slots replaced by drawn values."""
    slots = _slots(seed)
    if not slots:
        return st.just(seed)

    def drawn(picks: list[tuple[FieldPath, FieldDescriptor]]) -> st.SearchStrategy[list[tuple[Any, ...]]]:
        return st.tuples(*(field_values(f, hints, len(path)).map(lambda v, p=path, f=f: (p, f, v))
                           for path, f in picks)).map(list)  # fmt: skip

    def apply(changes: list[tuple[Any, ...]]) -> Message:
        msg = type(seed)()
        msg.CopyFrom(seed)
        # Nested slots first: a top-level change may remove their parent.
        for path, field, value in sorted(changes, key=lambda c: -len(c[0])):
            target = _at(msg, path)
            target.ClearField(field.name)
            _set(target, field, value)
        return msg

    picks = st.lists(st.sampled_from(slots), min_size=1, max_size=2, unique_by=lambda s: (s[0], s[1].number))
    return picks.flatmap(drawn).map(apply)


def _flip(data: bytes, at: int, mask: int) -> bytes:
    if not data:
        return bytes([mask])
    i = at % len(data)
    return data[:i] + bytes([data[i] ^ mask]) + data[i + 1 :]


def payloads(desc: Descriptor, hints: Mapping[str, Sequence[str]], seeds: Sequence[Message] = (),
             tweak: Tweak | None = None) -> st.SearchStrategy[tuple[str, bytes]]:  # fmt: skip
    """(shape, request bytes): "fields", "seeded", "truncated", "flipped" or "random"."""

    def serialized(msg: Message) -> bytes:
        if tweak is not None:
            tweak(msg)
        return msg.SerializeToString()

    fields = message(desc, hints).map(serialized)
    seeded = st.one_of(*(variants(s, hints) for s in seeds)).map(serialized) if seeds else fields
    valid = st.one_of(fields, seeded)
    return st.one_of(
        fields.map(lambda b: ("fields", b)),
        seeded.map(lambda b: ("seeded", b)),
        st.tuples(valid, st.integers(0, 2**16)).map(lambda p: ("truncated", p[0][: p[1] % max(len(p[0]), 1)])),
        st.tuples(valid, st.integers(0, 2**16), st.integers(1, 255)).map(lambda p: ("flipped", _flip(*p))),
        st.binary(max_size=256).map(lambda b: ("random", b)),
    )


async def raw_call(channel: grpc.aio.Channel, method: MethodDescriptor, payload: bytes,
                   metadata: Sequence[tuple[str, str]], timeout_s: float) -> tuple[grpc.StatusCode, str]:  # fmt: skip
    """Send ``payload`` as is; the status and message the server answered with."""
    path = f"/{method.containing_service.full_name}/{method.name}"
    try:
        if method.server_streaming:
            call = channel.unary_stream(path)(payload, metadata=tuple(metadata), timeout=timeout_s)  # type: ignore[call-arg]
            async for _ in call:
                pass
        else:
            await channel.unary_unary(path)(payload, metadata=tuple(metadata), timeout=timeout_s)  # type: ignore[call-arg]
    except grpc.aio.AioRpcError as exc:
        return exc.code(), exc.details() or ""
    return grpc.StatusCode.OK, ""
