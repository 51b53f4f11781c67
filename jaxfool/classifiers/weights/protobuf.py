"""A minimal reader for the protobuf wire format, enough to decode Caffe files without protobuf.

A message is a sequence of fields `key value`, where `key = field_number << 3 | wire_type`.
Wire types: 0 varint, 1 fixed 64-bit, 2 length-delimited (bytes, strings, nested messages and
packed repeated scalars), 5 fixed 32-bit. Groups (3 and 4) are deprecated and rejected. Every
malformed input raises `ProtobufDecodeError`, whose message gives the byte offset.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import NamedTuple

import numpy as np

VARINT, I64, LEN, I32 = 0, 1, 2, 5
_MAX_VARINT_BYTES = 10  # a 64-bit value takes at most 10 groups of 7 bits


class ProtobufDecodeError(ValueError):
    """Malformed protobuf wire data (truncated, overlong varint, bad wire type, ...)."""


class Field(NamedTuple):
    """One decoded field: `value` is an int for varints, raw bytes (a memoryview) otherwise."""

    number: int
    wire_type: int
    value: int | memoryview
    offset: int  # byte offset of the value in the outermost buffer, for error messages


def read_varint(buf: memoryview, pos: int, base: int = 0) -> tuple[int, int]:
    """Decodes the varint at `buf[pos]`; returns (value as unsigned 64-bit, next position)."""
    result = 0
    for i in range(_MAX_VARINT_BYTES):
        if pos + i >= len(buf):
            raise ProtobufDecodeError(f"truncated varint at byte {base + pos}")
        byte = buf[pos + i]
        result |= (byte & 0x7F) << (7 * i)
        if not byte & 0x80:
            return result & 0xFFFF_FFFF_FFFF_FFFF, pos + i + 1
    raise ProtobufDecodeError(f"varint longer than {_MAX_VARINT_BYTES} bytes at byte {base + pos}")


def iter_fields(data: bytes | memoryview, base: int = 0) -> Iterator[Field]:
    """Yields the fields of one message in file order. `base` is `data`'s offset in the file."""
    buf = memoryview(data)
    pos = 0
    while pos < len(buf):
        key_pos = pos
        key, pos = read_varint(buf, pos, base)
        number, wire_type = key >> 3, key & 7
        if number == 0:
            raise ProtobufDecodeError(f"invalid field number 0 at byte {base + key_pos}")
        if wire_type == VARINT:
            value, end = read_varint(buf, pos, base)
            yield Field(number, wire_type, value, base + pos)
            pos = end
            continue
        if wire_type in (I64, I32):
            size = 8 if wire_type == I64 else 4
        elif wire_type == LEN:
            size, pos = read_varint(buf, pos, base)
        elif wire_type in (3, 4):
            raise ProtobufDecodeError(
                f"field {number} at byte {base + key_pos} is a group (wire type {wire_type}), "
                "which is not supported"
            )
        else:
            raise ProtobufDecodeError(f"invalid wire type {wire_type} at byte {base + key_pos}")
        if size > len(buf) - pos:
            raise ProtobufDecodeError(
                f"truncated field {number} at byte {base + key_pos}: needs {size} bytes, "
                f"{len(buf) - pos} left"
            )
        yield Field(number, wire_type, buf[pos : pos + size], base + pos)
        pos += size


def expect_wire_type(field: Field, wire_type: int) -> Field:
    """Returns `field` if it has `wire_type`; a schema mismatch is reported as a decode error."""
    if field.wire_type != wire_type:
        raise ProtobufDecodeError(
            f"field {field.number} at byte {field.offset} has wire type {field.wire_type}, "
            f"expected {wire_type}"
        )
    return field


def as_signed(value: int, bits: int = 64) -> int:
    """Two's-complement reinterpretation of an unsigned varint (int32/int64 fields)."""
    value &= (1 << bits) - 1
    return value - (1 << bits) if value >> (bits - 1) else value


def as_string(field: Field) -> str:
    """Decodes a `string` field as UTF-8."""
    raw = bytes(expect_wire_type(field, LEN).value)
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtobufDecodeError(f"string at byte {field.offset} is not UTF-8") from None


def _packed(data: memoryview | bytes, dtype: str, offset: int) -> np.ndarray:
    itemsize = np.dtype(dtype).itemsize
    if len(data) % itemsize:
        raise ProtobufDecodeError(
            f"packed field at byte {offset} has {len(data)} bytes, not a multiple of {itemsize}"
        )
    return np.frombuffer(data, dtype)


def packed_float32(data: memoryview | bytes, offset: int = 0) -> np.ndarray:
    """Packed repeated `float` payload -> read-only little-endian float32 view (no copy)."""
    return _packed(data, "<f4", offset)


def packed_float64(data: memoryview | bytes, offset: int = 0) -> np.ndarray:
    """Packed repeated `double` payload -> read-only little-endian float64 view (no copy)."""
    return _packed(data, "<f8", offset)


def repeated_floats(fields: Iterable[Field], dtype: type = np.float32) -> np.ndarray:
    """All occurrences of one repeated float (or double) field, packed or not, as a new array.

    A writer may split a repeated field into several packed chunks or write each element as its
    own fixed-size field; the parser must accept both, so the raw bytes are joined and decoded once.
    """
    itemsize = np.dtype(dtype).itemsize
    scalar_wire = I32 if itemsize == 4 else I64
    chunks = []
    for f in fields:
        if f.wire_type == LEN:
            _packed(f.value, f"<f{itemsize}", f.offset)  # checks the length
        else:
            expect_wire_type(f, scalar_wire)
        chunks.append(f.value)
    raw = chunks[0] if len(chunks) == 1 else b"".join(chunks)  # one chunk: no extra copy
    return np.frombuffer(raw, f"<f{itemsize}").astype(dtype)


def repeated_varints(fields: Iterable[Field]) -> list[int]:
    """All occurrences of one repeated integer field, packed or not, as unsigned values."""
    values = []
    for f in fields:
        if f.wire_type == VARINT:
            values.append(f.value)
            continue
        buf, pos = expect_wire_type(f, LEN).value, 0
        while pos < len(buf):
            value, pos = read_varint(buf, pos, f.offset)
            values.append(value)
    return values
