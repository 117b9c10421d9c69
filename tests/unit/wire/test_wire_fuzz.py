"""Arbitrary and mutated input never raises anything but WireError."""

from __future__ import annotations

import os
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from pyike.ids import ExchangeType
from pyike.wire import (
    WireError,
    check_envelope,
    check_payloads,
    decode_message,
    decode_payload_chain,
    encode_message,
)
from pyike.wire.message import PAYLOAD_CLASSES
from wire_strategies import FIRST_TYPES, KNOWN_TYPES, headers, messages

# PYIKE_FUZZ_EXAMPLES=20000 for a deep run; the default keeps the unit suite fast.
FUZZ = settings(
    max_examples=int(os.environ.get("PYIKE_FUZZ_EXAMPLES", "400")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)


def exercise(data: bytes) -> None:
    """Decode and run everything that looks at a decoded message; only WireError may escape."""
    try:
        message = decode_message(data)
    except WireError as error:
        assert str(error)
        assert error.drop or error.notify is not None
        return
    message.describe()
    repr(message)
    for step in (
        lambda: check_envelope(message),
        lambda: check_payloads(message.header.exchange, message.header.response, message.payloads),
    ):
        try:
            step()
        except WireError:
            pass


@FUZZ
@given(st.binary(max_size=600))
def test_arbitrary_bytes(data):
    exercise(data)


@FUZZ
@given(headers, st.sampled_from(KNOWN_TYPES), st.binary(max_size=400))
def test_valid_header_with_arbitrary_payload_bytes(header, first_type, body):
    raw = bytearray(encode_message(header, []) + body)
    raw[16] = first_type
    struct.pack_into("!I", raw, 24, len(raw))
    exercise(bytes(raw))


@st.composite
def mutations(draw):
    header, payloads = draw(messages())
    raw = bytearray(encode_message(header, payloads))
    for _index in range(draw(st.integers(1, 4))):
        kind = draw(st.sampled_from(["flip", "set", "truncate", "insert", "delete"]))
        position = draw(st.integers(0, len(raw) - 1))
        if kind == "flip":
            raw[position] ^= 1 << draw(st.integers(0, 7))
        elif kind == "set":
            raw[position] = draw(st.sampled_from([0x00, 0x01, 0x03, 0x80, 0xFF]))
        elif kind == "truncate":
            del raw[position:]
        elif kind == "insert":
            raw[position:position] = draw(st.binary(min_size=1, max_size=8))
        elif len(raw) > position:
            del raw[position : position + draw(st.integers(1, 8))]
        if not raw:
            break
    if len(raw) >= 28 and draw(st.booleans()):
        struct.pack_into("!I", raw, 24, len(raw))  # keep the header consistent to reach the payloads
    return bytes(raw)


@FUZZ
@given(mutations())
def test_mutated_valid_messages(data):
    exercise(data)


@FUZZ
@given(FIRST_TYPES, st.binary(max_size=400))
def test_arbitrary_inner_chain(first_type, data):
    try:
        payloads = decode_payload_chain(first_type, data)
    except WireError:
        return
    for exchange in (ExchangeType.IKE_AUTH, ExchangeType.CREATE_CHILD_SA, ExchangeType.INFORMATIONAL):
        for is_response in (False, True):
            try:
                check_payloads(exchange, is_response, payloads)
            except WireError:
                pass


@FUZZ
@given(
    st.sampled_from(sorted(PAYLOAD_CLASSES.values(), key=lambda c: c.payload_type)), st.binary(max_size=200)
)
def test_arbitrary_payload_bodies(cls, body):
    try:
        payload = cls.decode_body(body, offset=100)
    except WireError as error:
        assert error.offset is None or error.offset >= 100
        return
    payload.describe()
    repr(payload)
