"""State of one IKE SA and its Child SAs, and the protection of its messages (RFC 7296 §2.1, §3.14)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..crypto.errors import CryptoError
from ..crypto.keys import IkeKeys
from ..crypto.selection import SelectedProposal
from ..crypto.sk import SkCipher
from ..crypto.transforms import transform_name
from ..ids import IKE_HEADER_LEN, IKE_PORT
from ..wire.encrypted import SkPayload
from ..wire.header import Header
from ..wire.message import (
    Message,
    decode_payload_chain,
    encode_message,
    encode_payload_chain,
    encode_sk_prefix,
)
from ..wire.payload import Payload
from ..wire.selectors import TrafficSelector
from .events import Address
from .fragments import datagram_overhead, fragment_message, must_fragment, sk_message_length
from .policy import ChildPolicy, Identity, IkePolicy

# IKE SA states
CONNECTING = "CONNECTING"  # IKE_SA_INIT in flight (initiator) or answered (responder, half-open)
AUTHENTICATING = "AUTHENTICATING"  # IKE_AUTH in flight
ESTABLISHED = "ESTABLISHED"
DELETING = "DELETING"
DEAD = "DEAD"

INSTALLED = "INSTALLED"
REKEYING = "REKEYING"  # our CREATE_CHILD_SA with REKEY_SA is in flight
REKEYED = "REKEYED"  # replaced; waiting for the DELETE exchange to finish


@dataclass
class Pending:
    """Our outstanding request (window size 1, §2.3) and its retransmission schedule (§2.1)."""

    message_id: int
    exchange: int
    data: List[bytes] = field(repr=False)  # the datagram, or its fragments
    on_response: Callable[[Message, List[Payload], float], None]
    sent_at: float
    next_at: float
    tries: int = 0


@dataclass
class CachedResponse:
    """Our answer to the peer's last request (§2.1), sent again only for an exact copy of that request
    (its first fragment when fragmented, RFC 7383 §2.6.1) from the address it came from."""

    message_id: int
    datagrams: List[bytes] = field(repr=False)
    request_digest: bytes = b""  # SHA-256 of the request datagram; empty: never replayed
    request_from: Optional[Address] = None


@dataclass
class ChildSa:
    name: str
    spi_in: int
    spi_out: int
    proposal: str
    local_ts: List[TrafficSelector]
    remote_ts: List[TrafficSelector]
    encap: bool
    established_at: float
    state: str = INSTALLED
    policy: Optional[ChildPolicy] = None
    rekey_at: Optional[float] = None  # soft lifetime (with jitter)
    expire_at: Optional[float] = None  # hard lifetime; REKEYED: when it goes, DELETE answered or not
    replaced_by: Optional[int] = None  # inbound SPI of the Child SA that rekeyed this one
    rekey_exchange: Optional[Any] = None  # our CREATE_CHILD_SA rekeying it, while in flight
    collision: Optional[Any] = None  # the peer's simultaneous rekey of it (§2.8.1)
    outbound_active: bool = True
    limits: Optional[Any] = None  # events.VolumeLimits of its ESP SAs (byte/packet lifetimes)
    delete_sent: bool = False  # our INFORMATIONAL deleting it is out (§1.4.1 crossing deletes)


@dataclass(repr=False)
class IkeSa:
    key: str
    policy: IkePolicy
    initiator: bool
    spi_i: bytes
    spi_r: bytes
    local: Address
    remote: Address
    created_at: float
    state: str = CONNECTING
    nonce_i: bytes = b""
    nonce_r: bytes = b""
    key_exchange: Any = None
    selected: Optional[SelectedProposal] = None
    keys: Optional[IkeKeys] = None
    cipher_out: Optional[SkCipher] = None
    cipher_in: Optional[SkCipher] = None
    init_request: bytes = b""  # IKE_SA_INIT request as sent: signed by the initiator (§2.15)
    init_response: bytes = b""  # IKE_SA_INIT response as sent: signed by the responder
    offered_ike: List[Any] = field(default_factory=list)  # (number, ProposalSpec) we proposed
    cookie: bytes = b""
    cookie_tries: int = 0
    ke_tries: int = 0  # IKE_SA_INIT retries after INVALID_KE_PAYLOAD (§1.3)
    additional_kes: List[Any] = field(default_factory=list)  # RFC 9370 key exchanges still to run
    intermediate_done: int = 0
    int_auth_i: bytes = field(default=b"", repr=False)  # RFC 9242 §3.3.2 IntAuth chains
    int_auth_r: bytes = field(default=b"", repr=False)
    ike_auth_mid: int = 1
    local_behind_nat: bool = False
    remote_behind_nat: bool = False
    peer_id: Optional[Identity] = None
    peer_hashes: Optional[List[int]] = None  # the peer's SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4)
    peer_certreq: List[bytes] = field(default_factory=list)  # CA key hashes it asked for (§3.7)
    peer_cert: str = ""  # the peer's verified certificate, for status
    peer_auth: str = ""  # how the peer authenticated: AUTH method (and signature scheme)
    established_at: Optional[float] = None
    next_request_id: int = 0
    pending: Optional[Pending] = None
    queued: List[Callable[[float], None]] = field(default_factory=list)
    next_peer_request_id: int = 0
    last_response: Optional[CachedResponse] = None  # replayed for a retransmitted request (§2.1)
    # (message id, SHA-256 of the datagram or of its first fragment, source) of the request being answered
    request_seen: Optional[Tuple[int, bytes, Address]] = None
    first_fragment: Optional[Tuple[int, bytes]] = None  # (message id, SHA-256) of a request's fragment 1
    fragmentation: bool = False  # both ends sent IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 §2.3)
    max_datagram: int = 1280
    reassembler: Optional[Any] = None
    last_plain: Optional[Tuple[Any, int, bytes]] = (
        None  # header, first inner type, plaintext of the last SK message
    )
    last_received_at: float = 0.0
    next_keepalive_at: Optional[float] = None  # set while we are behind a NAT (RFC 3948 §2.3)
    rekey_at: Optional[float] = None  # IKE SA soft lifetime (with jitter)
    delete_by: Optional[float] = None  # DELETING: dropped then, even if the peer's DELETE never comes
    ike_rekey: Optional[Any] = None  # our IKE SA rekey exchange in flight
    reauth_at: Optional[float] = None  # reauthentication (§2.8.3), with jitter; survives IKE rekeys
    reauth: Optional[Any] = None  # on a new IKE SA: the reauthentication it carries out (reauth.py)
    reauth_by: Optional[IkeSa] = None  # on the old IKE SA: the new one being built
    duplicate_at: Optional[float] = None  # when to resolve a duplicate of this IKE SA (duplicates.py)
    retiring: Optional[Tuple[float, str]] = None  # (when, why) our DELETE goes (duplicates.py)
    children: List[ChildSa] = field(default_factory=list)
    # The first Child SA, negotiated inside IKE_AUTH.
    auth_child: Optional[ChildPolicy] = None
    auth_child_spi: int = 0
    auth_child_offer: List[Any] = field(default_factory=list)
    auth_child_ts: Tuple[List[TrafficSelector], List[TrafficSelector]] = ([], [])
    # RFC 9370 §2.2.4 IKE_FOLLOWUP_KE: ours in flight, and those we await by link data.
    followup_out: Optional[Any] = None
    followups_in: Dict[bytes, Any] = field(default_factory=dict)

    def __repr__(self) -> str:
        return "IkeSa(%s %s %s)" % (self.key, "initiator" if self.initiator else "responder", self.state)

    @property
    def our_spi(self) -> bytes:
        return self.spi_i if self.initiator else self.spi_r

    @property
    def encap(self) -> bool:
        return self.local_behind_nat or self.remote_behind_nat or self.policy.force_encap

    @property
    def proposal_text(self) -> str:
        if self.selected is None:
            return ""
        return "/".join(transform_name(t, i, k) for t, i, k in self.selected.transforms)

    def header(self, exchange: int, message_id: int, response: bool) -> Header:
        return Header(
            spi_i=self.spi_i,
            spi_r=self.spi_r,
            exchange=exchange,
            message_id=message_id,
            initiator=self.initiator,
            response=response,
        )

    def protect(self, exchange: int, message_id: int, response: bool, payloads: List[Payload]) -> List[bytes]:
        """An SK-protected message (RFC 7296 §3.14; RFC 5282 for AEAD) as one datagram, or as SKF
        fragments (RFC 7383) when both ends support them and it would exceed `max_datagram`."""
        header = self.header(exchange, message_id, response)
        first_inner, plain = encode_payload_chain(payloads)
        self.last_plain = (header, first_inner, plain)
        overhead = datagram_overhead(":" in self.remote[0], self.remote[1] != IKE_PORT)
        length = sk_message_length(self.cipher_out, len(plain))
        if must_fragment(self.fragmentation, exchange, length, self.max_datagram, overhead):
            return fragment_message(header, first_inner, plain, self.cipher_out, self.max_datagram, overhead)
        body_len = self.cipher_out.body_length(len(plain))
        prefix = encode_sk_prefix(header, first_inner, body_len)
        return [prefix + self.cipher_out.seal(plain, prefix)]

    def unprotect(self, message: Message) -> List[Payload]:
        """The inner payloads of an SK message; raises CryptoError (integrity) or WireError (syntax)."""
        encrypted = message.encrypted
        if not isinstance(encrypted, SkPayload):
            raise CryptoError("fragmented messages (SKF) are not supported on this IKE SA")
        aad_end = message.aad_end
        plain = self.cipher_in.open(message.raw[:aad_end], message.raw[aad_end:])
        self.last_plain = (message.header, encrypted.first_inner, plain)
        return decode_payload_chain(encrypted.first_inner, plain, IKE_HEADER_LEN)

    def plain(self, exchange: int, message_id: int, response: bool, payloads: List[Payload]) -> bytes:
        """An unprotected message (IKE_SA_INIT)."""
        return encode_message(self.header(exchange, message_id, response), payloads)
