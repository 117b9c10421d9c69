"""Hypothesis strategies that generate valid IKEv2 payloads and messages."""

from __future__ import annotations

from hypothesis import strategies as st
from pyike.ids import ExchangeType, IdType, PayloadType, ProtocolId, TransformAttr
from pyike.wire import (
    Attribute,
    AuthPayload,
    CertPayload,
    CertReqPayload,
    CfgAttribute,
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
    RawSelector,
    SaPayload,
    SkfPayload,
    SkPayload,
    TrafficSelector,
    Transform,
    TsiPayload,
    TsrPayload,
    UnknownPayload,
    VendorIdPayload,
)
from pyike.wire.message import PAYLOAD_CLASSES

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFFFFFF)
small_bytes = st.binary(max_size=48)

attributes = st.one_of(
    st.builds(Attribute, st.integers(0, 0x7FFF), u16),
    st.builds(Attribute, st.integers(0, 0x7FFF).filter(lambda t: t != TransformAttr.KEY_LENGTH), small_bytes),
)
transforms = st.builds(Transform, u8, u16, st.lists(attributes, max_size=3))


@st.composite
def proposals(draw, number=1):
    protocol = draw(st.sampled_from([ProtocolId.IKE, ProtocolId.AH, ProtocolId.ESP, 4, 200]))
    if protocol == ProtocolId.IKE:
        spi = draw(st.sampled_from([0, 8]).flatmap(lambda n: st.binary(min_size=n, max_size=n)))
    elif protocol in (ProtocolId.AH, ProtocolId.ESP):
        spi = draw(st.binary(min_size=4, max_size=4))
    else:
        spi = draw(st.binary(max_size=16))
    return Proposal(number, protocol, draw(st.lists(transforms, max_size=5)), spi)


@st.composite
def sa_payloads(draw):
    first = draw(st.integers(1, 250))
    count = draw(st.integers(1, 4))
    return SaPayload([draw(proposals(first + i)) for i in range(count)])


@st.composite
def id_payloads(draw):
    cls = draw(st.sampled_from([IdiPayload, IdrPayload]))
    id_type = draw(st.sampled_from([*IdType, 0, 250]))
    size = {IdType.ID_IPV4_ADDR: 4, IdType.ID_IPV6_ADDR: 16}.get(id_type)
    data = draw(st.binary(min_size=size, max_size=size) if size else small_bytes)
    return cls(id_type, data)


@st.composite
def notify_payloads(draw):
    spi = draw(st.binary(max_size=16))
    protocol = draw(st.integers(1, 255)) if spi else 0
    return NotifyPayload(draw(u16), draw(small_bytes), protocol, spi)


@st.composite
def delete_payloads(draw):
    protocol = draw(st.sampled_from([ProtocolId.IKE, ProtocolId.AH, ProtocolId.ESP, 9]))
    if protocol == ProtocolId.IKE:
        return DeletePayload(protocol, [])
    size = 4 if protocol != 9 else draw(st.integers(1, 12))
    return DeletePayload(protocol, draw(st.lists(st.binary(min_size=size, max_size=size), max_size=5)))


def _ports():
    ordered = st.tuples(u16, u16).map(sorted)
    return st.one_of(ordered, st.just((0xFFFF, 0)))


@st.composite
def address_selectors(draw):
    version = draw(st.sampled_from([4, 6]))
    bits = 32 if version == 4 else 128
    low, high = sorted(draw(st.tuples(st.integers(0, 2**bits - 1), st.integers(0, 2**bits - 1))))
    start_port, end_port = draw(_ports())
    return TrafficSelector(version, low, high, draw(u8), start_port, end_port)


raw_selectors = st.builds(RawSelector, u8.filter(lambda t: t not in (7, 8)), u8, small_bytes)
ts_payloads = st.builds(
    lambda cls, sel: cls(sel),
    st.sampled_from([TsiPayload, TsrPayload]),
    st.lists(st.one_of(address_selectors(), raw_selectors), max_size=4),
)


@st.composite
def skf_payloads(draw):
    total = draw(st.integers(1, 0xFFFF))
    number = draw(st.integers(1, total))
    return SkfPayload(number, total, draw(small_bytes), draw(u8) if number == 1 else 0)


@st.composite
def eap_payloads(draw):
    code = draw(u8)
    if code in (3, 4):
        return EapPayload(code, draw(u8))
    return EapPayload(code, draw(u8), draw(u8), draw(small_bytes))


UNKNOWN_TYPES = [t for t in range(1, 256) if t not in PAYLOAD_CLASSES]
unknown_payloads = st.builds(UnknownPayload, st.sampled_from(UNKNOWN_TYPES), small_bytes)

plain_payloads = st.one_of(
    sa_payloads(),
    st.builds(KePayload, u16, st.binary(max_size=300)),
    id_payloads(),
    st.builds(CertPayload, u8, small_bytes),
    st.builds(CertReqPayload, u8, small_bytes),
    st.builds(AuthPayload, u8, small_bytes),
    st.builds(NoncePayload, st.binary(min_size=16, max_size=256)),
    notify_payloads(),
    delete_payloads(),
    st.builds(VendorIdPayload, small_bytes),
    ts_payloads,
    st.builds(
        CpPayload, u8, st.lists(st.builds(CfgAttribute, st.integers(0, 0x7FFF), small_bytes), max_size=4)
    ),
    eap_payloads(),
    unknown_payloads,
)
encrypted_payloads = st.one_of(st.builds(SkPayload, small_bytes, u8), skf_payloads())
any_payload = st.one_of(plain_payloads, encrypted_payloads)

headers = st.builds(
    Header,
    spi_i=st.binary(min_size=8, max_size=8).filter(any),
    spi_r=st.binary(min_size=8, max_size=8),
    exchange=st.sampled_from([*ExchangeType, 0, 255]),
    message_id=u32,
    initiator=st.booleans(),
    response=st.booleans(),
)


@st.composite
def messages(draw):
    """(header, payloads): plain payloads optionally followed by one SK or SKF."""
    payloads = draw(st.lists(plain_payloads, max_size=5))
    if draw(st.booleans()):
        payloads.append(draw(encrypted_payloads))
    return draw(headers), payloads


KNOWN_TYPES = sorted(PAYLOAD_CLASSES)
FIRST_TYPES = st.sampled_from([PayloadType.NONE, *KNOWN_TYPES, *UNKNOWN_TYPES[:5]])
