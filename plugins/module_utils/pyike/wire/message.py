"""IKE messages: the header plus a chain of payloads (RFC 7296 §3.1, §3.2).

The generic payload header is "Next Payload | C + RESERVED | Payload Length".  The seven
reserved bits are sent as zero and ignored on receipt (§3.2).  A payload type we do not know is
skipped, unless its critical bit is set: then the message is rejected with
UNSUPPORTED_CRITICAL_PAYLOAD carrying the one-octet type (§2.5).  SK and SKF end the chain: their
Next Payload names the first payload inside them (§3.14, RFC 7383 §2.5).
"""

from __future__ import annotations

import dataclasses
import struct
from typing import Iterable, List, Optional, Sequence, Tuple

from ..ids import IKE_HEADER_LEN, NotifyType, PayloadType
from .codec import encode_error
from .config import CpPayload
from .eap import EapPayload
from .encrypted import SKF_FIELDS_LEN, SkfPayload, SkPayload
from .errors import WireError
from .header import Header
from .identity import AuthPayload, CertPayload, CertReqPayload, IdiPayload, IdrPayload
from .key_exchange import KePayload, NoncePayload
from .notify import DeletePayload, NotifyPayload, VendorIdPayload
from .payload import Payload, UnknownPayload, payload_name
from .sa import SaPayload
from .selectors import TsiPayload, TsrPayload

PAYLOAD_CLASSES = {
    cls.payload_type: cls
    for cls in (
        SaPayload,
        KePayload,
        IdiPayload,
        IdrPayload,
        CertPayload,
        CertReqPayload,
        AuthPayload,
        NoncePayload,
        NotifyPayload,
        DeletePayload,
        VendorIdPayload,
        TsiPayload,
        TsrPayload,
        SkPayload,
        CpPayload,
        EapPayload,
        SkfPayload,
    )
}
ENCRYPTED_TYPES = (PayloadType.SK, PayloadType.SKF)
GENERIC_HEADER_LEN = 4
_GENERIC = struct.Struct("!BBH")
_CRITICAL = 0x80


@dataclasses.dataclass(repr=False)
class Message:
    """A decoded message.  ``raw`` is the datagram; ``sk_offset`` is where the SK or SKF generic
    payload header starts in it (``None`` without one), for AAD and integrity ranges."""

    header: Header
    payloads: List[Payload]
    raw: bytes = b""
    sk_offset: Optional[int] = None

    @property
    def encrypted(self) -> Optional[Payload]:
        """The SK or SKF payload, if the message has one (it is always the last)."""
        return self.payloads[-1] if self.sk_offset is not None else None

    @property
    def aad_end(self) -> Optional[int]:
        """Length of the AEAD associated data at the start of ``raw``: the header, any
        unencrypted payloads and the SK generic header (RFC 5282 §5.1), plus Fragment Number
        and Total Fragments for SKF (RFC 7383 §2.5.3)."""
        if self.sk_offset is None:
            return None
        extra = SKF_FIELDS_LEN if isinstance(self.encrypted, SkfPayload) else 0
        return self.sk_offset + GENERIC_HEADER_LEN + extra

    def describe(self) -> str:
        return f"{self.header.describe()} {describe_payloads(self.payloads)}"

    def __repr__(self) -> str:
        return f"Message({self.header!r}, {self.payloads!r}, sk_offset={self.sk_offset})"


def describe_payloads(payloads: Iterable[Payload]) -> str:
    """``[ SA KE No N(COOKIE) ]`` -- the strongSwan log style, without key material."""
    return "[ " + " ".join(p.describe() for p in payloads) + " ]"


def find_payload(payloads: Iterable[Payload], payload_type: int) -> Optional[Payload]:
    return next((p for p in payloads if p.payload_type == payload_type), None)


def find_payloads(payloads: Iterable[Payload], payload_type: int) -> List[Payload]:
    return [p for p in payloads if p.payload_type == payload_type]


def find_notifies(payloads: Iterable[Payload], notify_type: int) -> List[NotifyPayload]:
    return [p for p in payloads if isinstance(p, NotifyPayload) and p.notify_type == notify_type]


# --- decoding ---------------------------------------------------------------------------------


def _chain_error(payload_type: int, at: int, field: str, message: str) -> WireError:
    return WireError(
        f"{payload_name(payload_type)} payload: field '{field}' at byte {at}: {message}",
        payload_type=payload_type,
        offset=at,
        field=field,
    )


def _decode_chain(
    first_type: int, data: bytes, base: int, allow_encrypted: bool
) -> Tuple[List[Payload], Optional[int]]:
    payloads: List[Payload] = []
    sk_offset = None
    pos = 0
    next_type = first_type
    while next_type != PayloadType.NONE:
        at = base + pos
        left = len(data) - pos
        if left < GENERIC_HEADER_LEN:
            raise _chain_error(next_type, at, "payload header", f"needs 4 bytes but only {left} remain")
        following, flags, length = _GENERIC.unpack_from(data, pos)
        if length < GENERIC_HEADER_LEN or length > left:
            raise _chain_error(
                next_type, at + 2, "payload length", f"{length} is not in 4..{left} (bytes remaining)"
            )
        body = data[pos + GENERIC_HEADER_LEN : pos + length]
        cls = PAYLOAD_CLASSES.get(next_type)
        if cls is None:
            if flags & _CRITICAL:
                raise WireError(
                    f"{payload_name(next_type)} payload at byte {at}: unsupported and marked critical (§2.5)",
                    notify=NotifyType.UNSUPPORTED_CRITICAL_PAYLOAD,
                    notify_data=bytes([next_type]),
                    payload_type=next_type,
                    offset=at,
                    field="critical",
                )
            payload: Payload = UnknownPayload(next_type, body)
            payload.raw_body = body
        else:
            payload = cls.decode_body(body, at + GENERIC_HEADER_LEN)
        payloads.append(payload)
        pos += length
        if next_type in ENCRYPTED_TYPES:
            if not allow_encrypted:
                raise _chain_error(next_type, at, "payload type", "not allowed inside an encrypted payload")
            if pos != len(data):
                raise _chain_error(
                    next_type,
                    at,
                    "payload length",
                    f"must be the last payload, {len(data) - pos} bytes follow",
                )
            payload.first_inner = following  # type: ignore[attr-defined]
            sk_offset = at
            break
        next_type = following
    if pos != len(data):
        raise WireError(
            f"payload chain: {len(data) - pos} bytes at byte {base + pos} follow the last payload",
            offset=base + pos,
            field="next payload",
        )
    return payloads, sk_offset


def decode_message(data: bytes) -> Message:
    """Decode a whole datagram (without the non-ESP marker).  Raises only WireError."""
    data = bytes(data)
    header = Header.decode(data)
    payloads, sk_offset = _decode_chain(header.next_payload, data[IKE_HEADER_LEN:], IKE_HEADER_LEN, True)
    return Message(header, payloads, data, sk_offset)


def decode_payload_chain(first_type: int, data: bytes, offset: int = 0) -> List[Payload]:
    """Decode a decrypted inner chain; ``offset`` only shifts byte positions in errors."""
    payloads, _sk_offset = _decode_chain(first_type, bytes(data), offset, False)
    return payloads


# --- encoding ---------------------------------------------------------------------------------


def _encode_chain(
    payloads: Sequence[Payload], allow_encrypted: bool, tail_type: int = PayloadType.NONE
) -> Tuple[int, bytes]:
    out = bytearray()
    for index, payload in enumerate(payloads):
        if not isinstance(payload, Payload):
            raise encode_error(
                "payload chain", f"payload {index + 1}", f"{type(payload).__name__} is no payload"
            )
        last = index == len(payloads) - 1
        if isinstance(payload, (SkPayload, SkfPayload)):
            if not allow_encrypted:
                raise encode_error("payload chain", f"payload {index + 1}", "SK/SKF cannot be nested")
            if not last:
                raise encode_error("payload chain", f"payload {index + 1}", "SK/SKF must be the last payload")
            following = payload.first_inner
        else:
            following = payloads[index + 1].payload_type if not last else tail_type
        body = payload.encode_body()
        length = GENERIC_HEADER_LEN + len(body)
        if length > 0xFFFF:
            raise encode_error(type(payload).__name__, "payload length", f"{length} bytes exceed 65535")
        critical = _CRITICAL if isinstance(payload, UnknownPayload) and payload.critical else 0
        out += _GENERIC.pack(following, critical, length)
        out += body
    first = payloads[0].payload_type if payloads else tail_type
    return first, bytes(out)


def encode_payload_chain(payloads: Sequence[Payload]) -> Tuple[int, bytes]:
    """Encode an inner chain (no SK/SKF); returns the first payload type and the octets."""
    return _encode_chain(list(payloads), allow_encrypted=False)


def encode_message(header: Header, payloads: Sequence[Payload]) -> bytes:
    """Encode a message; the header's Next Payload and Length are filled in."""
    first, chain = _encode_chain(list(payloads), allow_encrypted=True)
    filled = dataclasses.replace(header, next_payload=first, length=IKE_HEADER_LEN + len(chain))
    return filled.encode() + chain


def encode_sk_prefix(
    header: Header,
    first_inner_type: int,
    sk_body_len: int,
    unencrypted_payloads: Sequence[Payload] = (),
    fragment: Optional[Tuple[int, int]] = None,
) -> bytes:
    """Everything before the SK (or SKF) body, with final lengths: the AEAD AAD.

    ``sk_body_len`` is the length of IV | ciphertext | ICV.  For SKF pass
    ``fragment=(number, total)``; the prefix then ends with those two fields
    (RFC 5282 §5.1, RFC 7383 §2.5.3).  The bytes equal the start of
    ``encode_message(header, [*unencrypted_payloads, SkPayload(body, first_inner_type)])``.
    """
    if isinstance(sk_body_len, bool) or not isinstance(sk_body_len, int) or sk_body_len < 0:
        raise encode_error("SK prefix", "sk_body_len", f"{sk_body_len!r} is not a length")
    if fragment is None:
        encrypted: Payload = SkPayload(b"", first_inner_type)
        sk_len = GENERIC_HEADER_LEN + sk_body_len
    else:
        encrypted = SkfPayload(fragment[0], fragment[1], b"", first_inner_type)
        sk_len = GENERIC_HEADER_LEN + SKF_FIELDS_LEN + sk_body_len
    if sk_len > 0xFFFF:
        raise encode_error("SK prefix", "sk_body_len", f"payload of {sk_len} bytes exceeds 65535")
    first, chain = _encode_chain(list(unencrypted_payloads), False, tail_type=encrypted.payload_type)
    filled = dataclasses.replace(header, next_payload=first, length=IKE_HEADER_LEN + len(chain) + sk_len)
    fields = encrypted.encode_body()  # validates; empty for SK, the fragment fields for SKF
    return filled.encode() + chain + _GENERIC.pack(first_inner_type, 0, sk_len) + fields
