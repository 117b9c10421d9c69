"""Every payload and whole messages survive encode -> decode unchanged."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyike.ids import PayloadType
from pyike.wire import (
    Message,
    SkfPayload,
    SkPayload,
    decode_message,
    decode_payload_chain,
    encode_message,
    encode_payload_chain,
    encode_sk_prefix,
)
from pyike.wire.message import PAYLOAD_CLASSES
from wire_strategies import encrypted_payloads, messages, plain_payloads

SETTINGS = settings(max_examples=300, deadline=None)


@SETTINGS
@given(plain_payloads)
def test_payload_body_round_trip(payload):
    body = payload.encode_body()
    cls = PAYLOAD_CLASSES.get(payload.payload_type)
    if cls is None:  # UnknownPayload: only the chain decoder builds those
        return
    decoded = cls.decode_body(body)
    assert decoded == payload
    assert decoded.raw_body == body
    assert decoded.encode_body() == body


@SETTINGS
@given(encrypted_payloads)
def test_encrypted_body_round_trip(payload):
    decoded = type(payload).decode_body(payload.encode_body())
    decoded.first_inner = payload.first_inner  # lives in the generic header, not the body
    assert decoded == payload


@SETTINGS
@given(messages())
def test_message_round_trip(header_and_payloads):
    header, payloads = header_and_payloads
    raw = encode_message(header, payloads)
    message = decode_message(raw)
    assert isinstance(message, Message)
    assert message.payloads == payloads
    assert message.raw == raw
    assert message.header.spi_i == header.spi_i
    assert message.header.spi_r == header.spi_r
    assert (message.header.exchange, message.header.message_id) == (header.exchange, header.message_id)
    assert (message.header.initiator, message.header.response) == (header.initiator, header.response)
    assert message.header.length == len(raw)
    assert encode_message(message.header, message.payloads) == raw
    message.describe()  # never fails on valid input
    repr(message)


@SETTINGS
@given(st.lists(plain_payloads, max_size=6))
def test_inner_chain_round_trip(payloads):
    first, data = encode_payload_chain(payloads)
    assert first == (payloads[0].payload_type if payloads else PayloadType.NONE)
    assert decode_payload_chain(first, data) == payloads


@SETTINGS
@given(messages())
def test_sk_offset_and_prefix_match_the_encoded_message(header_and_payloads):
    header, payloads = header_and_payloads
    if not payloads or not isinstance(payloads[-1], (SkPayload, SkfPayload)):
        payloads = [*payloads, SkPayload(b"\x01" * 40, PayloadType.IDi)]
    encrypted = payloads[-1]
    raw = encode_message(header, payloads)
    message = decode_message(raw)
    fragment = None
    if isinstance(encrypted, SkfPayload):
        fragment = (encrypted.fragment_number, encrypted.total_fragments)
    prefix = encode_sk_prefix(header, encrypted.first_inner, len(encrypted.body), payloads[:-1], fragment)
    assert raw.startswith(prefix)
    assert message.aad_end == len(prefix)
    assert raw[message.sk_offset] == encrypted.first_inner
    assert raw[message.aad_end :] == encrypted.body


@pytest.mark.parametrize("payload", [SkPayload(b"abc"), SkfPayload(1, 1, b"abc")])
def test_encrypted_payload_is_last_and_keeps_its_inner_type(payload):
    from pyike.wire import Header

    payload.first_inner = PayloadType.IDi
    raw = encode_message(Header(b"\x11" * 8, b"\x22" * 8, 35, 1, initiator=True), [payload])
    message = decode_message(raw)
    assert message.sk_offset == 28
    assert message.encrypted.first_inner == PayloadType.IDi
    assert message.encrypted.body == b"abc"
