"""One generic parser/generator for every IKEv2 structure (the strongSwan field-table style).

A structure is a dataclass deriving from :class:`Struct` whose ``LAYOUT`` lists field
descriptors in wire order; :meth:`Struct.decode_from` and :meth:`Struct.encode_struct` walk
that table, so a payload class only states its layout and its semantic checks (``validate``).

Reserved fields are written as zero and ignored on receipt (RFC 7296 §3.2); so are the reserved
bits of a field declared with a ``mask``.  Decoding never trusts a count or a length: every
read is bounds-checked against the enclosing structure and reports where it failed.
"""

from __future__ import annotations

import dataclasses
import ipaddress
import struct
from types import MappingProxyType
from typing import Any, Callable, ClassVar, Dict, List, Mapping, Optional, Tuple

from .errors import WireError

_UINT = {1: struct.Struct("!B"), 2: struct.Struct("!H"), 4: struct.Struct("!I")}

Values = Dict[str, Any]
FailFn = Callable[[str, str], WireError]


class Cursor:
    """Bounds-checked reader over one structure's bytes.

    ``base`` is the absolute offset of ``data[0]`` in the message and ``where`` names the
    structure ("SA payload > proposal 2"), so errors say what and where.
    """

    __slots__ = ("base", "data", "payload_type", "pos", "where")

    def __init__(self, data: bytes, base: int = 0, where: str = "", payload_type: Optional[int] = None):
        self.data = data
        self.pos = 0
        self.base = base
        self.where = where
        self.payload_type = payload_type

    @property
    def remaining(self) -> int:
        return len(self.data) - self.pos

    def error(self, field: str, message: str, at: Optional[int] = None) -> WireError:
        offset = self.base + (self.pos if at is None else at)
        return WireError(
            f"{self.where}: field '{field}' at byte {offset}: {message}",
            payload_type=self.payload_type,
            offset=offset,
            field=field,
        )

    def take(self, size: int, field: str) -> bytes:
        if size > self.remaining:
            raise self.error(field, f"needs {size} bytes but only {self.remaining} remain")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def uint(self, size: int, field: str) -> int:
        return _UINT[size].unpack(self.take(size, field))[0]

    def peek_uint(self, at: int, size: int, field: str) -> int:
        if self.pos + at + size > len(self.data):
            raise self.error(field, f"structure truncated: {self.remaining} bytes remain")
        return _UINT[size].unpack_from(self.data, self.pos + at)[0]

    def sub(self, size: int, where: str) -> Cursor:
        """A cursor over the next ``size`` bytes (already bounds-checked by the caller)."""
        child = Cursor(self.data[self.pos : self.pos + size], self.base + self.pos, where, self.payload_type)
        self.pos += size
        return child


class _ObjectView:
    """Lets write-side field code read attributes (or properties) of the object being encoded."""

    __slots__ = ("obj",)

    def __init__(self, obj: Any):
        self.obj = obj

    def __getitem__(self, name: str) -> Any:
        return getattr(self.obj, name)


def encode_error(struct_name: str, field: str, message: str) -> WireError:
    return WireError(f"cannot encode {struct_name}: field '{field}': {message}", notify=None, field=field)


# --- field descriptors -------------------------------------------------------------------------


class Field:
    """One entry of a LAYOUT: reads into a values dict, writes from the object being encoded."""

    name = ""

    def read(self, cur: Cursor, values: Values) -> None:
        raise NotImplementedError

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        raise NotImplementedError


def _put_uint(out: bytearray, size: int, value: Any, limit: int, owner: str, field: str) -> None:
    if isinstance(value, bool) or not isinstance(value, int) or not 0 <= value <= limit:
        raise encode_error(owner, field, f"{value!r} is not an integer in 0..{limit}")
    out += _UINT[size].pack(value)


class Int(Field):
    """Unsigned big-endian integer of 1, 2 or 4 bytes; ``mask`` keeps only the defined bits."""

    def __init__(self, name: str, size: int, mask: Optional[int] = None):
        self.name = name
        self.size = size
        self.mask = mask

    def read(self, cur: Cursor, values: Values) -> None:
        value = cur.uint(self.size, self.name)
        values[self.name] = value & self.mask if self.mask is not None else value

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        limit = self.mask if self.mask is not None else (1 << (8 * self.size)) - 1
        _put_uint(out, self.size, view[self.name], limit, owner, self.name)


class Reserved(Field):
    """RESERVED octets: sent as zero, ignored on receipt (RFC 7296 §3.2)."""

    def __init__(self, size: int):
        self.size = size

    def read(self, cur: Cursor, values: Values) -> None:
        cur.take(self.size, "reserved")

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        out += bytes(self.size)


class More(Field):
    """The "Last Substruc" octet of proposals and transforms (RFC 7296 §3.3.1, §3.3.2)."""

    def __init__(self, marker: int):
        self.marker = marker

    def read(self, cur: Cursor, values: Values) -> None:
        value = cur.uint(1, "last substruc")
        if value not in (0, self.marker):
            raise cur.error("last substruc", f"must be 0 (last) or {self.marker} (more), not {value}", at=0)
        values["_more"] = value == self.marker

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        out.append(0 if last else self.marker)


class Length(Field):
    """Two-octet length of the whole structure; patched in after the structure is written."""

    name = "length"

    def read(self, cur: Cursor, values: Values) -> None:
        value = cur.uint(2, self.name)
        if value != len(cur.data):
            raise cur.error(self.name, f"says {value} bytes but the structure has {len(cur.data)}", at=0)

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        out += b"\x00\x00"


class SizeOf(Field):
    """Byte length of the bytes field ``target`` (e.g. SPI Size)."""

    def __init__(self, target: str, size: int):
        self.target = target
        self.size = size
        self.name = f"{target} size"

    def read(self, cur: Cursor, values: Values) -> None:
        values["_size_" + self.target] = cur.uint(self.size, self.name)

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        _put_uint(out, self.size, len(view[self.target]), (1 << (8 * self.size)) - 1, owner, self.name)


class CountOf(Field):
    """Number of items of the list field ``target`` (e.g. Num Transforms)."""

    def __init__(self, target: str, size: int):
        self.target = target
        self.size = size
        self.name = f"number of {target}"

    def read(self, cur: Cursor, values: Values) -> None:
        values["_count_" + self.target] = cur.uint(self.size, self.name)

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        _put_uint(out, self.size, len(view[self.target]), (1 << (8 * self.size)) - 1, owner, self.name)


def _put_bytes(out: bytearray, value: Any, owner: str, field: str) -> None:
    if not isinstance(value, (bytes, bytearray)):
        raise encode_error(owner, field, f"expected bytes, got {type(value).__name__}")
    out += value


class Bytes(Field):
    """Octets whose length a preceding :class:`SizeOf` gave."""

    def __init__(self, name: str):
        self.name = name

    def read(self, cur: Cursor, values: Values) -> None:
        values[self.name] = cur.take(values["_size_" + self.name], self.name)

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        _put_bytes(out, view[self.name], owner, self.name)


class Rest(Field):
    """All remaining octets of the structure."""

    def __init__(self, name: str):
        self.name = name

    def read(self, cur: Cursor, values: Values) -> None:
        values[self.name] = cur.take(cur.remaining, self.name)

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        _put_bytes(out, view[self.name], owner, self.name)


class Chunks(Field):
    """Equal-sized octet strings: size (1 octet), count (2 octets), then the strings.

    The Delete payload's "SPI Size | Num of SPIs | SPIs" (RFC 7296 §3.11).
    """

    def __init__(self, name: str):
        self.name = name

    def read(self, cur: Cursor, values: Values) -> None:
        size = cur.uint(1, f"{self.name} size")
        count = cur.uint(2, f"number of {self.name}")
        if size == 0 and count:
            raise cur.error(f"{self.name} size", f"is 0 but {count} entries are declared")
        blob = cur.take(size * count, self.name)
        values[self.name] = [blob[i : i + size] for i in range(0, size * count, size)] if size else []

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        chunks = view[self.name]
        if not isinstance(chunks, (list, tuple)) or not all(
            isinstance(c, (bytes, bytearray)) for c in chunks
        ):
            raise encode_error(owner, self.name, "expected a list of bytes")
        sizes = {len(c) for c in chunks}
        if len(sizes) > 1 or 0 in sizes:
            raise encode_error(owner, self.name, f"entries must share one non-zero size, got {sorted(sizes)}")
        _put_uint(out, 1, sizes.pop() if sizes else 0, 0xFF, owner, f"{self.name} size")
        _put_uint(out, 2, len(chunks), 0xFFFF, owner, f"number of {self.name}")
        for chunk in chunks:
            out += chunk


class Address(Field):
    """An IPv4 or IPv6 address whose size (4 or 16) ``size_of(values)`` derives from earlier fields."""

    def __init__(self, name: str, size_of: Callable[[Any], int]):
        self.name = name
        self.size_of = size_of

    def read(self, cur: Cursor, values: Values) -> None:
        values[self.name] = ipaddress.ip_address(cur.take(self.size_of(values), self.name))

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        addr = view[self.name]
        if not isinstance(addr, (ipaddress.IPv4Address, ipaddress.IPv6Address)):
            raise encode_error(owner, self.name, f"expected an IP address, got {type(addr).__name__}")
        if len(addr.packed) != self.size_of(view):
            raise encode_error(owner, self.name, f"{addr} does not match the structure's address family")
        out += addr.packed


class When(Field):
    """Fields present only if ``condition(values)`` holds (e.g. the EAP Type octet)."""

    def __init__(self, condition: Callable[[Any], bool], *fields: Field):
        self.condition = condition
        self.fields = fields

    def read(self, cur: Cursor, values: Values) -> None:
        if self.condition(values):
            for field in self.fields:
                field.read(cur, values)

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        if self.condition(view):
            for field in self.fields:
                field.write(out, view, owner, last)


class Items(Field):
    """A list of substructures: ``counted`` by a preceding :class:`CountOf`, else up to the end.

    ``select`` picks the item class from the item's first octet (traffic selector type);
    items with a "Last Substruc" octet must mark every item but the last as "more".
    """

    def __init__(
        self,
        name: str,
        item: Optional[type] = None,
        counted: bool = False,
        select: Optional[Callable[[int], type]] = None,
    ):
        self.name = name
        self.item = item
        self.counted = counted
        self.select = select

    def read(self, cur: Cursor, values: Values) -> None:
        count = values["_count_" + self.name] if self.counted else None
        items: List[Any] = []
        while (len(items) < count) if count is not None else cur.remaining > 0:
            if cur.remaining == 0:
                raise cur.error(self.name, f"declares {count} items but only {len(items)} are present")
            start = cur.pos
            item_cls = self.select(cur.peek_uint(0, 1, self.name)) if self.select else self.item
            obj, item_values = item_cls.read_item(cur, len(items))
            items.append(obj)
            if "_more" in item_values:
                expect_more = len(items) < count if count is not None else cur.remaining > 0
                if item_values["_more"] != expect_more:
                    state = "more" if item_values["_more"] else "last"
                    raise cur.error(
                        "last substruc",
                        f"{item_cls.LABEL} {len(items)} is marked {state} but is "
                        + ("the last one" if not expect_more else "followed by another"),
                        at=start,
                    )
        values[self.name] = items

    def write(self, out: bytearray, view: Any, owner: str, last: bool) -> None:
        items = view[self.name]
        if not isinstance(items, (list, tuple)):
            raise encode_error(owner, self.name, f"expected a list, got {type(items).__name__}")
        for index, item in enumerate(items):
            if not isinstance(item, Struct):
                raise encode_error(owner, self.name, f"item {index + 1} is a {type(item).__name__}")
            out += item.encode_struct(last=index == len(items) - 1)


# --- structures --------------------------------------------------------------------------------

_INIT_FIELDS: Dict[type, Tuple[str, ...]] = {}


def _init_fields(cls: type) -> Tuple[str, ...]:
    names = _INIT_FIELDS.get(cls)
    if names is None:
        names = tuple(f.name for f in dataclasses.fields(cls) if f.init)
        _INIT_FIELDS[cls] = names
    return names


def hexdump(data: bytes, limit: int = 32) -> str:
    text = bytes(data[:limit]).hex()
    return text + ("..." if len(data) > limit else "")


class Struct:
    """Base of every wire structure; subclasses are dataclasses with a LAYOUT.

    ``LENGTH_AT`` is the offset of the structure's own two-octet length field when it is an
    item in a list (proposal, transform, traffic selector); ``LABEL`` names it in errors.
    Dataclass fields with ``metadata={"redact": True}`` show only their length in reprs.
    """

    LAYOUT: ClassVar[Tuple[Field, ...]] = ()
    LENGTH_AT: ClassVar[Optional[int]] = None
    LABEL: ClassVar[str] = "structure"

    def validate(self, fail: FailFn) -> None:
        """Semantic checks beyond the layout; raise ``fail(field, message)`` on a violation."""

    @classmethod
    def normalize(cls, values: Values) -> None:
        """Adjust decoded values before construction (fields to be ignored on receipt)."""

    @classmethod
    def decode_from(cls, cur: Cursor) -> Tuple[Any, Values]:
        """Decode a structure that fills the cursor exactly."""
        obj, values = cls._read_fields(cur, cur.pos)
        if cur.remaining:
            raise cur.error("end", f"{cur.remaining} unexpected bytes after the last field")
        return obj, values

    @classmethod
    def _read_fields(cls, cur: Cursor, start: int) -> Tuple[Any, Values]:
        values: Values = {}
        for field in cls.LAYOUT:
            field.read(cur, values)
        cls.normalize(values)
        obj = cls(**{name: values[name] for name in _init_fields(cls) if name in values})
        obj.validate(lambda field, message: cur.error(field, message, at=start))
        return obj, values

    @classmethod
    def read_item(cls, cur: Cursor, index: int) -> Tuple[Any, Values]:
        """Decode one list item at the cursor.

        Items with a total-length field (``LENGTH_AT``) get a cursor bounded by it; items
        without one are self-delimiting (their layout says how long they are).
        """
        if cls.LENGTH_AT is None:
            return cls._read_fields(cur, cur.pos)
        length = cur.peek_uint(cls.LENGTH_AT, 2, f"{cls.LABEL} length")
        if length < cls.LENGTH_AT + 2:
            raise cur.error(f"{cls.LABEL} length", f"{length} is shorter than the {cls.LABEL} header")
        if length > cur.remaining:
            raise cur.error(f"{cls.LABEL} length", f"{length} exceeds the {cur.remaining} bytes that remain")
        return cls.decode_from(cur.sub(length, f"{cur.where} > {cls.LABEL} {index + 1}"))

    def encode_struct(self, last: bool = True) -> bytes:
        owner = type(self).__name__
        self.validate(lambda field, message: encode_error(owner, field, message))
        view = _ObjectView(self)
        out = bytearray()
        length_at = None
        for field in self.LAYOUT:
            if isinstance(field, Length):
                length_at = len(out)
            field.write(out, view, owner, last)
        if length_at is not None:
            if len(out) > 0xFFFF:
                raise encode_error(owner, "length", f"{len(out)} bytes do not fit a 16-bit length")
            _UINT[2].pack_into(out, length_at, len(out))
        return bytes(out)

    def __repr__(self) -> str:
        parts = []
        for f in dataclasses.fields(self):  # type: ignore[arg-type]
            value = getattr(self, f.name)
            if f.metadata.get("redact"):
                parts.append(f"{f.name}=<{len(value)} bytes>")
            elif isinstance(value, (bytes, bytearray)):
                parts.append(f"{f.name}={hexdump(value) or '-'}")
            elif isinstance(value, list) and value and all(isinstance(v, bytes) for v in value):
                parts.append(f"{f.name}=[{', '.join(hexdump(v) for v in value)}]")
            else:
                parts.append(f"{f.name}={value!r}")
        return f"{type(self).__name__}({', '.join(parts)})"


# Metadata for dataclass fields kept out of reprs and logs (key exchange and AUTH data):
# ``data: bytes = field(metadata=REDACTED)``.
REDACTED: Mapping[str, Any] = MappingProxyType({"redact": True})


def enum_name(enum: Any, value: int) -> str:
    try:
        return enum(value).name
    except ValueError:
        return str(value)
