"""Malformed input is rejected with a WireError that says what, where and how to react."""

from __future__ import annotations

import struct

import pytest
from pyike.ids import ExchangeType, NotifyType, PayloadType, ProtocolId
from pyike.wire import (
    EapPayload,
    Header,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    SkfPayload,
    SkPayload,
    Transform,
    UnknownPayload,
    WireError,
    decode_message,
    decode_payload_chain,
    encode_message,
    encode_payload_chain,
)
from pyike.wire.sa import Attribute

HEADER = Header(b"\x01" * 8, bytes(8), ExchangeType.IKE_SA_INIT, 0, initiator=True)
NONCE = NoncePayload(b"n" * 32)


def raw_message(*payloads) -> bytes:
    return encode_message(HEADER, list(payloads))


def raw_payload(payload_type: int, body: bytes) -> UnknownPayload:
    """A payload of any type with a hand-made body (UnknownPayload encodes verbatim)."""
    return UnknownPayload(payload_type, body)


def reject(data: bytes) -> WireError:
    with pytest.raises(WireError) as info:
        decode_message(data)
    return info.value


# --- header (§3.1) ----------------------------------------------------------------------------


def test_short_datagram_is_dropped():
    error = reject(raw_message(NONCE)[:27])
    assert error.drop and error.notify is None


@pytest.mark.parametrize("delta", [-1, 1, 1000])
def test_length_must_match_the_datagram(delta):
    raw = bytearray(raw_message(NONCE))
    struct.pack_into("!I", raw, 24, len(raw) + delta)
    error = reject(bytes(raw))
    assert error.drop and error.field == "length" and error.offset == 24


def test_trailing_garbage_after_the_datagram_length_is_dropped():
    assert reject(raw_message(NONCE) + b"\x00").drop


def test_higher_major_version_answers_invalid_major_version():
    raw = bytearray(raw_message(NONCE))
    raw[17] = 0x30
    error = reject(bytes(raw))
    assert error.notify == NotifyType.INVALID_MAJOR_VERSION and not error.drop


def test_ikev1_major_version_is_dropped():
    raw = bytearray(raw_message(NONCE))
    raw[17] = 0x10
    assert reject(bytes(raw)).drop


def test_zero_initiator_spi_is_dropped():
    raw = bytearray(raw_message(NONCE))
    raw[0:8] = bytes(8)
    assert reject(bytes(raw)).drop


# --- generic payload header (§3.2, §2.5) ------------------------------------------------------


@pytest.mark.parametrize("length", [0, 3, 37, 0xFFFF])
def test_bad_generic_payload_length(length):
    raw = bytearray(raw_message(NONCE))
    struct.pack_into("!H", raw, 30, length)
    error = reject(bytes(raw))
    assert error.notify == NotifyType.INVALID_SYNTAX and not error.drop
    assert error.field == "payload length" and error.offset == 30
    assert "NONCE payload" in str(error)


def test_truncated_chain():
    raw = raw_message(NONCE, KePayload(19, b"k" * 8))
    raw = raw[:-12]
    raw = raw[:24] + struct.pack("!I", len(raw)) + raw[28:]
    error = reject(raw)
    assert error.payload_type == PayloadType.KE


def test_bytes_after_the_last_payload():
    raw = bytearray(raw_message(NONCE, NONCE))
    raw[28] = 0  # first payload now claims to be the last
    error = reject(bytes(raw))
    assert "follow the last payload" in str(error)


def test_unknown_critical_payload_is_rejected_with_its_type():
    critical = UnknownPayload(200, b"x", critical=True)
    error = reject(raw_message(NONCE, critical))
    assert error.notify == NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD
    assert error.notify_data == b"\xc8"
    assert error.offset == 28 + 36


def test_unknown_noncritical_payload_is_skipped():
    message = decode_message(raw_message(UnknownPayload(200, b"x"), NONCE))
    assert message.payloads == [UnknownPayload(200, b"x"), NONCE]


def test_critical_bit_of_a_known_payload_is_ignored():
    raw = bytearray(raw_message(NONCE))
    raw[29] = 0x80
    assert decode_message(bytes(raw)).payloads == [NONCE]


def test_sk_must_be_last():
    raw = bytearray(raw_message(SkPayload(b"c" * 20, PayloadType.IDi)))
    raw += NONCE.encode_body()
    struct.pack_into("!I", raw, 24, len(raw))
    error = reject(bytes(raw))
    assert error.payload_type == PayloadType.SK and "last payload" in str(error)


def test_sk_cannot_appear_inside_an_inner_chain():
    payload = SkPayload(b"c" * 20)
    data = struct.pack("!BBH", 0, 0, 24) + payload.encode_body()
    with pytest.raises(WireError, match="inside an encrypted payload"):
        decode_payload_chain(PayloadType.SK, data)
    with pytest.raises(WireError):
        encode_payload_chain([payload])
    with pytest.raises(WireError):
        encode_message(HEADER, [payload, NONCE])


# --- SA (§3.3) ---------------------------------------------------------------------------------

ESP = ProtocolId.ESP


def esp(number: int, **kw) -> Proposal:
    return Proposal(
        number, ESP, [Transform(1, 20, [Attribute(14, 256)]), Transform(5, 0)], b"\x00\x00\x00\x01", **kw
    )


def sa_error(body: bytes) -> WireError:
    error = reject(raw_message(raw_payload(PayloadType.SA, body)))
    assert error.payload_type == PayloadType.SA and error.notify == NotifyType.INVALID_SYNTAX
    return error


def test_proposal_numbers_must_be_consecutive():
    body = esp(1).encode_struct(last=False) + esp(3).encode_struct()
    assert "proposal num" in str(sa_error(body))


def test_proposal_number_zero():
    body = bytearray(esp(1).encode_struct())
    body[4] = 0
    assert "start at 1" in str(sa_error(bytes(body)))


def test_last_proposal_marked_more():
    assert sa_error(esp(1).encode_struct(last=False)).field == "last substruc"


def test_proposal_marked_last_but_followed():
    body = esp(1).encode_struct() + esp(2).encode_struct()
    assert sa_error(body).field == "last substruc"


def test_transform_marker_must_match_the_count():
    body = bytearray(esp(1).encode_struct())
    body[8 + 4] = 0  # first transform claims to be the last of two
    assert sa_error(bytes(body)).field == "last substruc"


def test_transform_count_larger_than_present():
    body = bytearray(esp(1).encode_struct())
    body[7] = 3
    body[8 + 4 + 12] = 3  # transform 2 now says "more"
    assert "declares 3" in str(sa_error(bytes(body)))


def test_proposal_length_longer_than_the_payload():
    body = bytearray(esp(1).encode_struct())
    struct.pack_into("!H", body, 2, len(body) + 4)
    assert sa_error(bytes(body)).field == "proposal length"


@pytest.mark.parametrize(("protocol", "spi"), [(ProtocolId.ESP, b"12345678"), (ProtocolId.IKE, b"1234")])
def test_spi_size_must_fit_the_protocol(protocol, spi):
    body = Proposal(1, ProtocolId.ESP, [], b"\x00" * 4).encode_struct()
    body = body[:5] + bytes([protocol, len(spi)]) + body[7:8] + spi
    body = body[:2] + struct.pack("!H", len(body)) + body[4:]
    assert sa_error(body).field == "spi size"


def test_key_length_must_be_tv():
    transform = Transform(1, 12).encode_struct() + struct.pack("!HH", 14, 2) + b"\x01\x00"
    transform = transform[:2] + struct.pack("!H", len(transform)) + transform[4:]
    body = struct.pack("!BBHBBBB", 0, 0, 8 + len(transform), 1, ProtocolId.IKE, 0, 1) + transform
    assert "TV format" in str(sa_error(body))


def test_empty_sa_payload():
    assert "at least one proposal" in str(sa_error(b""))


# --- other payloads ----------------------------------------------------------------------------


@pytest.mark.parametrize("size", [0, 15, 257])
def test_nonce_size(size):
    error = reject(raw_message(raw_payload(PayloadType.NONCE, b"n" * size)))
    assert error.payload_type == PayloadType.NONCE and "16..256" in str(error)
    with pytest.raises(WireError):
        NoncePayload(b"n" * size).encode_body()


def ts_body(*selectors: bytes) -> bytes:
    return bytes([len(selectors), 0, 0, 0]) + b"".join(selectors)


def v4_selector(start_port, end_port, start, end, length=16) -> bytes:
    return struct.pack("!BBHHH4s4s", 7, 0, length, start_port, end_port, bytes(start), bytes(end))


@pytest.mark.parametrize(
    ("selector", "field"),
    [
        (v4_selector(0, 65535, [10, 0, 0, 9], [10, 0, 0, 1]), "end address"),
        (v4_selector(100, 99, [10, 0, 0, 1], [10, 0, 0, 9]), "end port"),
        (v4_selector(0, 65535, [10, 0, 0, 1], [10, 0, 0, 9], length=40), "traffic selector length"),
        (v4_selector(0, 65535, [10, 0, 0, 1], [10, 0, 0, 9], length=20) + bytes(4), "end"),
        (v4_selector(0, 65535, [10, 0, 0, 1], [10, 0, 0, 9], length=2), "traffic selector length"),
    ],
)
def test_bad_traffic_selectors(selector, field):
    error = reject(raw_message(raw_payload(PayloadType.TSi, ts_body(selector))))
    assert error.payload_type == PayloadType.TSi
    assert error.field == field
    assert str(error).startswith("TSi payload")
    assert "traffic selector" in str(error)
    assert f"at byte {error.offset}" in str(error)


def test_opaque_ports_are_accepted():
    message = decode_message(
        raw_message(raw_payload(PayloadType.TSr, ts_body(v4_selector(65535, 0, [1] * 4, [1] * 4))))
    )
    assert message.payloads[0].selectors[0].is_opaque


def test_ts_count_larger_than_present():
    body = ts_body(v4_selector(0, 65535, [1] * 4, [2] * 4))
    assert "declares 2" in str(reject(raw_message(raw_payload(PayloadType.TSi, b"\x02" + body[1:]))))


@pytest.mark.parametrize(("number", "total"), [(0, 3), (4, 3), (0, 0)])
def test_skf_numbering(number, total):
    body = struct.pack("!HH", number, total) + b"c" * 16
    error = reject(encode_message(HEADER, [raw_payload(PayloadType.SKF, body)]))
    assert error.payload_type == PayloadType.SKF and error.field == "fragment number"
    with pytest.raises(WireError):
        SkfPayload(number, total, b"").encode_body()


@pytest.mark.parametrize(
    "body",
    [
        bytes([1, 1, 0, 6, 1]),  # EAP length says 6, payload has 5
        bytes([1, 1, 0, 4]),  # request without a Type
        bytes([3, 1, 0, 5, 9]),  # Success with data
    ],
)
def test_bad_eap(body):
    assert reject(raw_message(raw_payload(PayloadType.EAP, body))).payload_type == PayloadType.EAP


@pytest.mark.parametrize(
    "body",
    [
        bytes([1, 4, 0, 1]) + b"abcd",  # IKE delete with an SPI
        bytes([3, 8, 0, 1]) + b"abcdefgh",  # ESP SPI of 8 bytes
        bytes([3, 0, 0, 5]),  # zero-size SPIs
        bytes([3, 4, 0, 2]) + b"abcd",  # 2 SPIs declared, 1 present
        bytes([0, 0, 0, 0]),  # protocol 0
    ],
)
def test_bad_delete(body):
    assert reject(raw_message(raw_payload(PayloadType.DELETE, body))).payload_type == PayloadType.DELETE


def test_ipv4_identity_needs_four_bytes():
    error = reject(raw_message(raw_payload(PayloadType.IDi, bytes([1, 0, 0, 0, 10, 0, 0, 1, 5]))))
    assert error.field == "identification data"


def test_ke_without_group():
    assert reject(raw_message(raw_payload(PayloadType.KE, b"\x00"))).field == "group"


def test_notify_protocol_without_spi_is_ignored_on_receipt():
    message = decode_message(raw_message(raw_payload(PayloadType.NOTIFY, bytes([3, 0, 0x40, 0x06]))))
    assert message.payloads == [NotifyPayload(NotifyType.COOKIE)]


def test_notify_spi_longer_than_the_payload():
    assert reject(raw_message(raw_payload(PayloadType.NOTIFY, bytes([3, 9, 0x40, 0x06, 1])))).field == "spi"


# --- encoding refuses what it could not decode ---------------------------------------------------


@pytest.mark.parametrize(
    "payload",
    [
        KePayload(70000, b""),
        NotifyPayload(1, b"", protocol=3),
        SaPayload([]),
        SaPayload([esp(1), esp(1)]),
        EapPayload(1, 1),
        UnknownPayload(0, b""),
        Proposal(1, ProtocolId.ESP, [], b"123456789"),
        Transform(1, 12, [Attribute(14, b"\x01\x00")]),
        Transform(1, 12, ["not an attribute"]),
        SkfPayload(2, 3, b"", first_inner=PayloadType.IDi),
    ],
)
def test_unencodable_objects(payload):
    with pytest.raises(WireError) as info:
        payload.encode_struct()
    assert info.value.notify is None


def test_header_encode_checks_fields():
    with pytest.raises(WireError):
        Header(b"short", bytes(8), 34).encode()
    with pytest.raises(WireError):
        Header(b"\x01" * 8, bytes(8), 34, message_id=-1).encode()
