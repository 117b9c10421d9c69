"""Per-exchange payload rules (RFC 7296 §1.2-§1.5, §2.6, §2.16; RFC 9242)."""

from __future__ import annotations

import pytest
from pyike.ids import ExchangeType, IdType, NotifyType, PayloadType, ProtocolId
from pyike.wire import (
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CpPayload,
    DeletePayload,
    EapPayload,
    Header,
    IdiPayload,
    IdrPayload,
    KePayload,
    NoncePayload,
    NotifyPayload,
    Proposal,
    SaPayload,
    SkfPayload,
    SkPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsrPayload,
    UnknownPayload,
    VendorIdPayload,
    WireError,
    check_envelope,
    check_payloads,
    decode_message,
    encode_message,
)

INIT = ExchangeType.IKE_SA_INIT
AUTH = ExchangeType.IKE_AUTH
CHILD = ExchangeType.CREATE_CHILD_SA
INFO = ExchangeType.INFORMATIONAL
INTER = ExchangeType.IKE_INTERMEDIATE
FOLLOW = ExchangeType.IKE_FOLLOWUP_KE


def sa(protocol=ProtocolId.ESP, count=1, first=1, spi=None):
    if spi is None:
        spi = {ProtocolId.IKE: b"", ProtocolId.ESP: b"\x00\x00\x00\x07"}.get(protocol, b"\x00\x00\x00\x07")
    return SaPayload([Proposal(first + i, protocol, [Transform(1, 20, [])], spi) for i in range(count)])


IKE_SA = sa(ProtocolId.IKE)
IKE_REKEY_SA = sa(ProtocolId.IKE, spi=b"\x01" * 8)
KE = KePayload(19, b"k" * 64)
NONCE = NoncePayload(b"n" * 32)
TS = TrafficSelector.from_network("10.0.0.0/24")
TSI, TSR = TsiPayload([TS]), TsrPayload([TS])
IDI, IDR = IdiPayload(IdType.ID_FQDN, b"a"), IdrPayload(IdType.ID_FQDN, b"b")
PSK_AUTH = AuthPayload(2, b"a" * 32)
REKEY = NotifyPayload(NotifyType.REKEY_SA, b"", ProtocolId.ESP, b"\x00\x00\x00\x07")


def N(notify_type, data=b""):
    return NotifyPayload(notify_type, data)


VID = VendorIdPayload(b"pyike")
UNKNOWN = UnknownPayload(200, b"skip me")

ACCEPTED = [
    (INIT, False, [IKE_SA, KE, NONCE, N(NotifyType.NAT_DETECTION_SOURCE_IP), VID, UNKNOWN], "IKE_SA_INIT"),
    (INIT, False, [N(NotifyType.COOKIE, b"c" * 16), sa(ProtocolId.IKE, 3), KE, NONCE], "IKE_SA_INIT"),
    (
        INIT,
        True,
        [IKE_SA, KE, NONCE, CertReqPayload(4, b"h" * 20), N(NotifyType.MULTIPLE_AUTH_SUPPORTED)],
        "IKE_SA_INIT",
    ),
    (INIT, True, [N(NotifyType.INVALID_KE_PAYLOAD, b"\x00\x13")], "error notify"),
    (INIT, True, [N(NotifyType.COOKIE, b"c" * 16)], "error notify"),
    (INIT, True, [N(NotifyType.NO_PROPOSAL_CHOSEN), VID], "error notify"),
    (
        AUTH,
        False,
        [IDI, CertPayload(4, b"x"), CertReqPayload(4), IDR, PSK_AUTH, sa(), TSI, TSR, CpPayload(1)],
        "IKE_AUTH",
    ),
    (AUTH, False, [IDI, PSK_AUTH, N(NotifyType.INITIAL_CONTACT)], "IKE_AUTH"),
    (AUTH, False, [IDI, sa(count=2), TSI, TSR], "IKE_AUTH"),
    (AUTH, False, [EapPayload(2, 1, 1, b"me")], "EAP"),
    (AUTH, False, [PSK_AUTH], "EAP AUTH"),
    (AUTH, True, [IDR, PSK_AUTH, sa(first=2), TSI, TSR, CpPayload(2)], "IKE_AUTH"),
    (AUTH, True, [IDR, PSK_AUTH, N(NotifyType.TS_UNACCEPTABLE)], "IKE_AUTH"),
    (AUTH, True, [N(NotifyType.AUTHENTICATION_FAILED)], "IKE_AUTH"),
    (AUTH, True, [IDR, PSK_AUTH, EapPayload(1, 1, 1, b"who")], "IKE_AUTH"),
    (CHILD, False, [sa(count=2), NONCE, TSI, TSR], "new Child SA"),
    (CHILD, False, [sa(), NONCE, KE, TSI, TSR, N(NotifyType.USE_TRANSPORT_MODE)], "new Child SA"),
    (CHILD, False, [REKEY, sa(), NONCE, TSI, TSR], "Child SA rekey"),
    (CHILD, False, [IKE_REKEY_SA, NONCE, KE], "IKE SA rekey"),
    (CHILD, True, [sa(first=2), NONCE, TSI, TSR], "Child SA"),
    (CHILD, True, [IKE_REKEY_SA, NONCE, KE], "IKE SA rekey"),
    (CHILD, True, [N(NotifyType.NO_PROPOSAL_CHOSEN)], "error notify"),
    (CHILD, True, [N(NotifyType.TEMPORARY_FAILURE)], "error notify"),
    (INFO, False, [], "INFORMATIONAL"),
    (
        INFO,
        False,
        [DeletePayload(ProtocolId.ESP, [b"\x00\x00\x00\x07"]), DeletePayload(ProtocolId.AH)],
        "INFORMATIONAL",
    ),
    (INFO, True, [N(NotifyType.INVALID_SYNTAX), CpPayload(2)], "INFORMATIONAL"),
    (INTER, False, [KE], "IKE_INTERMEDIATE"),
    (INTER, True, [], "IKE_INTERMEDIATE"),
    (FOLLOW, False, [KE, N(NotifyType.ADDITIONAL_KEY_EXCHANGE)], "IKE_FOLLOWUP_KE"),
    (FOLLOW, True, [KE, N(NotifyType.ADDITIONAL_KEY_EXCHANGE)], "IKE_FOLLOWUP_KE"),
    (FOLLOW, True, [KE], "IKE_FOLLOWUP_KE"),  # the last additional key exchange: no further link
    (FOLLOW, True, [N(NotifyType.STATE_NOT_FOUND)], "IKE_FOLLOWUP_KE"),
]


@pytest.mark.parametrize(("exchange", "is_response", "payloads", "shape"), ACCEPTED)
def test_accepted(exchange, is_response, payloads, shape):
    assert check_payloads(exchange, is_response, payloads) == shape


REJECTED = [
    (INIT, False, [IKE_SA, NONCE], "KE payload is missing"),
    (INIT, False, [IKE_SA, IKE_SA, KE, NONCE], "SA payload appears 2 times"),
    (INIT, False, [IKE_SA, KE, NONCE, CertReqPayload(4)], "CERTREQ payload is not allowed"),
    (INIT, False, [IKE_SA, KE, NONCE, SkPayload(b"")], "SK payload is not allowed"),
    (INIT, False, [sa(ProtocolId.IKE, first=2), KE, NONCE], "numbered 2, not 1"),
    (INIT, False, [sa(), KE, NONCE], "is for ESP, expected IKE"),
    (INIT, False, [N(NotifyType.COOKIE), N(NotifyType.COOKIE), IKE_SA, KE, NONCE], "COOKIE appears 2 times"),
    (INIT, True, [sa(ProtocolId.IKE, 2), KE, NONCE], "a response selects one"),
    (INIT, True, [N(NotifyType.NAT_DETECTION_SOURCE_IP)], "SA payload is missing"),
    (INIT, True, [N(NotifyType.INVALID_KE_PAYLOAD), IKE_SA], "KE payload is missing"),
    (INIT, True, [N(NotifyType.COOKIE), KE], "SA payload is missing"),
    (AUTH, False, [], "IDi payload is missing"),
    (AUTH, False, [IDI, PSK_AUTH, sa(), TSI], "missing TSr"),
    (AUTH, False, [IDI, PSK_AUTH, KE], "KE payload is not allowed"),
    (AUTH, False, [IDI, IDI, PSK_AUTH], "IDi payload appears 2 times"),
    (AUTH, False, [IDI, PSK_AUTH, IKE_SA, TSI, TSR], "is for IKE"),
    (AUTH, False, [EapPayload(2, 1, 1, b""), IDR], "IDr payload is not allowed"),
    (AUTH, True, [], "needs one of"),
    (AUTH, True, [IDR, sa(), TSI, TSR], "IDr payload requires AUTH"),
    (AUTH, True, [IDI, PSK_AUTH], "IDi payload is not allowed"),
    (AUTH, True, [IDR, PSK_AUTH, sa(count=2), TSI, TSR], "a response selects one"),
    (CHILD, False, [sa(), NONCE, TSI], "TSr payload is missing"),
    (CHILD, False, [sa(), TSI, TSR], "NONCE payload is missing"),
    (CHILD, False, [REKEY, REKEY, sa(), NONCE, TSI, TSR], "REKEY_SA appears 2 times"),
    (CHILD, False, [NotifyPayload(NotifyType.REKEY_SA), sa(), NONCE, TSI, TSR], "REKEY_SA must name"),
    (CHILD, False, [IKE_REKEY_SA, NONCE], "(IKE SA rekey): KE payload is missing"),
    (CHILD, False, [sa(ProtocolId.IKE), NONCE, KE], "SPI of 0 bytes"),
    (CHILD, False, [IKE_REKEY_SA, NONCE, KE, TSI, TSR], "is for IKE"),
    (CHILD, False, [REKEY, IKE_REKEY_SA, NONCE, KE], "TSi payload is missing"),
    (CHILD, False, [sa(), NONCE, TSI, TSR, CpPayload(1)], "CP payload is not allowed"),
    (CHILD, True, [N(NotifyType.REKEY_SA)], "SA payload is missing"),
    (CHILD, True, [N(NotifyType.NO_PROPOSAL_CHOSEN), KE], "KE payload is not allowed"),
    (CHILD, True, [sa(count=2), NONCE, TSI, TSR], "a response selects one"),
    (INFO, False, [sa()], "SA payload is not allowed"),
    (INFO, True, [CpPayload(2), CpPayload(2)], "CP payload appears 2 times"),
    (INTER, False, [KE, KE], "KE payload appears 2 times"),
    (INTER, True, [NONCE], "NONCE payload is not allowed"),
    (FOLLOW, False, [KE], "ADDITIONAL_KEY_EXCHANGE appears 0 times"),
    (FOLLOW, False, [N(NotifyType.ADDITIONAL_KEY_EXCHANGE)], "KE payload is missing"),
    (FOLLOW, False, [KE, NONCE, N(NotifyType.ADDITIONAL_KEY_EXCHANGE)], "NONCE payload is not allowed"),
    (FOLLOW, True, [KE, KE], "KE payload appears 2 times"),
    (ExchangeType.IKE_SESSION_RESUME, False, [], "not supported"),
    (99, True, [], "not supported"),
]


@pytest.mark.parametrize(("exchange", "is_response", "payloads", "message"), REJECTED)
def test_rejected(exchange, is_response, payloads, message):
    with pytest.raises(WireError) as info:
        check_payloads(exchange, is_response, payloads)
    error = info.value
    assert message in str(error)
    assert error.notify == NotifyType.INVALID_SYNTAX
    exchange_name = (
        ExchangeType(exchange).name if exchange in ExchangeType._value2member_map_ else str(exchange)
    )
    assert str(error).startswith(f"{exchange_name} {'response' if is_response else 'request'}")


def test_violation_names_the_payload_type():
    with pytest.raises(WireError) as info:
        check_payloads(INIT, False, [IKE_SA, NONCE])
    assert info.value.payload_type == PayloadType.KE


HEADER = Header(b"\x01" * 8, b"\x02" * 8, AUTH, 1, initiator=True)


def envelope(exchange, payloads):
    header = Header(HEADER.spi_i, HEADER.spi_r, exchange, 1, initiator=True)
    return check_envelope(decode_message(encode_message(header, payloads)))


def test_envelope_shapes():
    assert envelope(INIT, [IKE_SA, KE, NONCE]) == "plain"
    assert envelope(AUTH, [SkPayload(b"x" * 32, PayloadType.IDi)]) == "encrypted"
    assert envelope(AUTH, [UNKNOWN, SkfPayload(1, 2, b"x" * 32, PayloadType.IDi)]) == "fragment"
    assert envelope(INFO, [N(NotifyType.INVALID_IKE_SPI)]) == "unprotected"


@pytest.mark.parametrize(
    ("exchange", "payloads", "message"),
    [
        (AUTH, [IDI, PSK_AUTH], "inside an encrypted payload"),
        (INFO, [], "inside an encrypted payload"),
        (INFO, [DeletePayload(ProtocolId.IKE)], "inside an encrypted payload"),
        (CHILD, [VID, SkPayload(b"x" * 32)], "VENDOR_ID payload outside the encrypted payload"),
        (INIT, [SkPayload(b"x" * 32)], "SK payload is not allowed"),
    ],
)
def test_envelope_violations(exchange, payloads, message):
    with pytest.raises(WireError, match=message):
        envelope(exchange, payloads)
