"""Exact bytes against the field layouts drawn in RFC 7296 §3 and RFC 7383 §2.5."""

from __future__ import annotations

from pyike.ids import (
    DhId,
    EncrId,
    ExchangeType,
    IdType,
    IntegId,
    NotifyType,
    PayloadType,
    PrfId,
    ProtocolId,
    TransformType,
)
from pyike.wire import (
    CfgAttribute,
    CpPayload,
    DeletePayload,
    EapPayload,
    Header,
    IdiPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    SkPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    decode_message,
    encode_message,
    encode_sk_prefix,
)

SPI_I = bytes.fromhex("0102030405060708")
KE_DATA = bytes(range(64))
NONCE = bytes(range(100, 132))
NATD = bytes(range(200, 220))


def _init_request_payloads():
    proposal = Proposal(
        1,
        ProtocolId.IKE,
        [
            Transform.make(TransformType.ENCR, EncrId.AES_CBC, key_length=256),
            Transform(TransformType.PRF, PrfId.HMAC_SHA2_256),
            Transform(TransformType.INTEG, IntegId.HMAC_SHA2_256_128),
            Transform(TransformType.DH, DhId.ECP_256),
        ],
    )
    return [
        SaPayload([proposal]),
        KePayload(DhId.ECP_256, KE_DATA),
        NoncePayload(NONCE),
        NotifyPayload(NotifyType.NAT_DETECTION_SOURCE_IP, NATD),
    ]


def _hex(*parts: str) -> bytes:
    return bytes.fromhex("".join(parts))


EXPECTED_INIT_REQUEST = (
    _hex(
        # §3.1 header: SPIi, SPIr, next=SA(33), version 2.0, IKE_SA_INIT(34), flags I, msg id 0, length 212
        "0102030405060708",
        "0000000000000000",
        "21",
        "20",
        "22",
        "08",
        "00000000",
        "000000d4",
        # §3.2 generic header of SA: next=KE(34), C=0, length 48
        "22 00 0030",
        # §3.3.1 proposal: last(0), reserved, length 44, #1, IKE, SPI size 0, 4 transforms
        "00 00 002c 01 01 00 04",
        # §3.3.2 transforms: more(3), reserved, length, type, reserved, id [+ §3.3.5 TV KEY_LENGTH=256]
        "03 00 000c 01 00 000c 800e 0100",
        "03 00 0008 02 00 0005",
        "03 00 0008 03 00 000c",
        "00 00 0008 04 00 0013",
        # §3.4 KE: next=Nonce(40), length 72, group 19, reserved
        "28 00 0048 0013 0000",
    )
    + KE_DATA
    # §3.9 Nonce: next=N(41), length 36
    + _hex("29 00 0024")
    + NONCE
    # §3.10 Notify: last, length 28, protocol 0, SPI size 0, type 16388
    + _hex("00 00 001c 00 00 4004")
    + NATD
)


def test_ike_sa_init_request_bytes():
    header = Header(SPI_I, bytes(8), ExchangeType.IKE_SA_INIT, 0, initiator=True)
    raw = encode_message(header, _init_request_payloads())
    assert raw == EXPECTED_INIT_REQUEST


def test_ike_sa_init_request_decodes_from_rfc_layout():
    message = decode_message(EXPECTED_INIT_REQUEST)
    assert message.payloads == _init_request_payloads()
    assert message.sk_offset is None
    assert message.header.initiator and not message.header.response
    transform = message.payloads[0].proposals[0].transforms[0]
    assert transform.key_length == 256
    assert message.describe().startswith("IKE_SA_INIT request 0 ")
    assert "KE(ECP_256)" in message.describe()


def test_reserved_bits_are_ignored_on_receipt():
    raw = bytearray(EXPECTED_INIT_REQUEST)
    raw[19] |= 0xD7  # header flags: V (0x10) and the reserved bits set; I kept, R (0x20) clear
    raw[17] = 0x2F  # minor version 15
    raw[28 + 1] = 0x7F  # reserved bits of the SA generic header
    raw[32 + 1] = 0xFF  # proposal reserved octet
    raw[40 + 5] = 0xFF  # transform reserved octet
    raw[76 + 6] = 0xFF  # KE reserved octets
    message = decode_message(bytes(raw))
    assert message.payloads == _init_request_payloads()
    assert message.header.initiator and not message.header.response
    assert message.payloads[1].raw_body[2] == 0xFF  # received bytes kept for AUTH (§2.15)


def test_id_ts_delete_cp_eap_layouts():
    assert IdiPayload(IdType.ID_FQDN, b"gw").encode_body() == _hex("02 000000") + b"gw"
    ts = TrafficSelector.from_range("10.0.0.0", "10.0.0.255", 6, 1, 1024)
    assert TsiPayload([ts]).encode_body() == _hex("01 000000", "07 06 0010 0001 0400", "0a000000", "0a0000ff")
    assert DeletePayload(ProtocolId.ESP, [b"\x00\x00\x10\x01"]).encode_body() == _hex("03 04 0001 00001001")
    assert DeletePayload(ProtocolId.IKE).encode_body() == _hex("01 00 0000")
    assert CpPayload(1, [CfgAttribute(1)]).encode_body() == _hex("01 000000 0001 0000")
    assert EapPayload(1, 7, 1, b"me").encode_body() == _hex("01 07 0007 01") + b"me"
    assert EapPayload(3, 7).encode_body() == _hex("03 07 0004")
    spi_notify = NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, b"\xaa\xbb\xcc\xdd")
    assert spi_notify.encode_body() == _hex("03 04 4009 aabbccdd")


def test_sk_prefix_is_the_aead_aad():
    header = Header(SPI_I, bytes.fromhex("1112131415161718"), ExchangeType.IKE_AUTH, 1, initiator=True)
    body = bytes(range(50))
    prefix = encode_sk_prefix(header, PayloadType.IDi, len(body))
    # header with next=SK(46), length 28+4+50=82; SK generic header next=IDi(35), length 54
    assert prefix == header.encode()[:16] + _hex("2e 20 23 08 00000001 00000052", "23 00 0036")
    assert encode_message(header, [SkPayload(body, PayloadType.IDi)]) == prefix + body


def test_skf_prefix_includes_fragment_fields():
    header = Header(SPI_I, bytes(8), ExchangeType.IKE_AUTH, 1, initiator=True)
    prefix = encode_sk_prefix(header, PayloadType.NONE, 10, fragment=(2, 3))
    # next=SKF(53), length 28+8+10=46; SKF header: next=0, length 18, fragment 2 of 3
    assert prefix[16:] == _hex("35 20 23 08 00000001 0000002e", "00 00 0012 0002 0003")


def test_secret_fields_stay_out_of_reprs():
    ke = KePayload(19, b"\x42" * 64)
    assert "42" not in repr(ke)
    assert "<64 bytes>" in repr(ke)
    from pyike.wire import AuthPayload

    auth = AuthPayload(2, b"\x99" * 32)
    assert "99" not in repr(auth)
    assert "99" not in auth.describe()
