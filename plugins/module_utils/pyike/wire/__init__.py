"""IKEv2 wire codec: bytes <-> objects for the header and every payload (RFC 7296 §3, RFC 7383).

Pure: no keys, sockets or state.  Everything malformed raises :class:`WireError`.

    msg = decode_message(datagram)          # header + outer payloads, SK body opaque
    check_envelope(msg)                     # SK/SKF where required
    inner = decode_payload_chain(msg.encrypted.first_inner, plaintext)
    check_payloads(msg.header.exchange, msg.header.response, inner)
"""

from .codec import Struct
from .config import CfgAttribute, CpPayload
from .eap import EapPayload
from .encrypted import SkfPayload, SkPayload
from .errors import WireError
from .header import Header, decode_header
from .identity import AuthPayload, CertPayload, CertReqPayload, IdiPayload, IdPayload, IdrPayload
from .key_exchange import KePayload, NoncePayload
from .message import (
    PAYLOAD_CLASSES,
    Message,
    decode_message,
    decode_payload_chain,
    describe_payloads,
    encode_message,
    encode_payload_chain,
    encode_sk_prefix,
    find_notifies,
    find_payload,
    find_payloads,
)
from .notify import DeletePayload, NotifyPayload, VendorIdPayload
from .payload import Payload, UnknownPayload
from .rules import check_envelope, check_payloads
from .sa import Attribute, Proposal, SaPayload, Transform
from .selectors import RawSelector, TrafficSelector, TsiPayload, TsPayload, TsrPayload

__all__ = [
    "PAYLOAD_CLASSES",
    "Attribute",
    "AuthPayload",
    "CertPayload",
    "CertReqPayload",
    "CfgAttribute",
    "CpPayload",
    "DeletePayload",
    "EapPayload",
    "Header",
    "IdPayload",
    "IdiPayload",
    "IdrPayload",
    "KePayload",
    "Message",
    "NoncePayload",
    "NotifyPayload",
    "Payload",
    "Proposal",
    "RawSelector",
    "SaPayload",
    "SkPayload",
    "SkfPayload",
    "Struct",
    "TrafficSelector",
    "Transform",
    "TsPayload",
    "TsiPayload",
    "TsrPayload",
    "UnknownPayload",
    "VendorIdPayload",
    "WireError",
    "check_envelope",
    "check_payloads",
    "decode_header",
    "decode_message",
    "decode_payload_chain",
    "describe_payloads",
    "encode_message",
    "encode_payload_chain",
    "encode_sk_prefix",
    "find_notifies",
    "find_payload",
    "find_payloads",
]
