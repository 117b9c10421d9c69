"""One IKE SA: keys, identities, negotiated algorithms and Child SAs, the states both go through, and
the protection of the SA's messages (RFC 7296 §2.14, §3.14; RFC 5282 for AEAD; RFC 7383 fragments).

What an exchange needs while it runs (nonces of a rekey, proposals offered, a key exchange's private
value) lives in its task (tasks/) and goes with it; the SA keeps what outlives exchanges. Every state
change goes through ``move_to``, which refuses a transition its table does not list.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field
from typing import Dict, FrozenSet, List, Optional, Tuple

from ..crypto.errors import CryptoError
from ..crypto.keys import IkeKeys
from ..crypto.selection import SelectedProposal
from ..crypto.sk import SkCipher
from ..crypto.transforms import transform_name
from ..ids import IKE_HEADER_LEN, IKE_PORT
from ..selectors import TrafficSelector
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
from .events import Address, VolumeLimits
from .fragments import Reassembler, datagram_overhead, fragment_message, must_fragment, sk_message_length
from .policy import ChildPolicy, Identity, IkePolicy


class StateError(RuntimeError):
    """A state change that the transition table does not allow: a bug, never the peer's doing."""


class IkeState(str, enum.Enum):
    CONNECTING = "CONNECTING"  # IKE_SA_INIT (and IKE_INTERMEDIATE) in flight, or answered (half-open)
    AUTHENTICATING = "AUTHENTICATING"  # initiator: IKE_AUTH in flight
    ESTABLISHED = "ESTABLISHED"
    DELETING = "DELETING"  # a DELETE is under way (ours, or the peer's after a rekey): no new exchanges
    DEAD = "DEAD"

    def __str__(self) -> str:
        return self.value


class ChildState(str, enum.Enum):
    INSTALLED = "INSTALLED"
    REKEYING = "REKEYING"  # a rekey of it (ours or the peer's) is under way
    REKEYED = "REKEYED"  # replaced; the peer deletes it (or we do, by its expiry)
    DELETING = "DELETING"  # our DELETE of it is out

    def __str__(self) -> str:
        return self.value


CONNECTING, AUTHENTICATING, ESTABLISHED, DELETING, DEAD = IkeState
INSTALLED, REKEYING, REKEYED, CHILD_DELETING = ChildState

IKE_TRANSITIONS: Dict[IkeState, FrozenSet[IkeState]] = {
    CONNECTING: frozenset({AUTHENTICATING, ESTABLISHED, DEAD}),  # a responder is up after IKE_AUTH
    AUTHENTICATING: frozenset({ESTABLISHED, DEAD}),
    ESTABLISHED: frozenset({DELETING, DEAD}),
    DELETING: frozenset({DEAD}),
    DEAD: frozenset(),
}
CHILD_TRANSITIONS: Dict[ChildState, FrozenSet[ChildState]] = {
    INSTALLED: frozenset({REKEYING, REKEYED, CHILD_DELETING}),
    REKEYING: frozenset({INSTALLED, REKEYED, CHILD_DELETING}),  # INSTALLED again: the rekey failed
    REKEYED: frozenset({CHILD_DELETING}),
    CHILD_DELETING: frozenset(),
}


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
    state: ChildState = INSTALLED
    policy: Optional[ChildPolicy] = None
    rekey_at: Optional[float] = None  # soft lifetime (with jitter)
    expire_at: Optional[float] = None  # hard lifetime; REKEYED or DELETING: when it goes in any case
    replaced_by: Optional[int] = None  # inbound SPI of the Child SA that rekeyed this one
    outbound_active: bool = True  # it carries the outbound traffic of its dataplane child
    limits: Optional[VolumeLimits] = None  # byte/packet lifetimes of its ESP SAs

    def move_to(self, state: ChildState) -> None:
        if state != self.state and state not in CHILD_TRANSITIONS[self.state]:
            raise StateError("CHILD_SA %s %08x_i: %s -> %s" % (self.name, self.spi_in, self.state, state))
        self.state = state

    @property
    def delete_sent(self) -> bool:
        """Our DELETE of it is out (§1.4.1: a crossing DELETE from the peer is answered without one)."""
        return self.state == CHILD_DELETING

    @property
    def going(self) -> bool:
        """Replaced or being deleted: nothing new starts on it."""
        return self.state in (REKEYED, CHILD_DELETING)


@dataclass(repr=False)
class IkeSa:
    key: str  # "conn#serial", for logs and events
    policy: IkePolicy
    initiator: bool
    spi_i: bytes
    spi_r: bytes
    local: Address
    remote: Address
    created_at: float
    state: IkeState = CONNECTING
    # negotiated and derived (IKE_SA_INIT, IKE_INTERMEDIATE, or the rekey that created it)
    nonce_i: bytes = field(default=b"", repr=False)
    nonce_r: bytes = field(default=b"", repr=False)
    selected: Optional[SelectedProposal] = None
    keys: Optional[IkeKeys] = None
    cipher_out: Optional[SkCipher] = None
    cipher_in: Optional[SkCipher] = None
    additional_kes: List[Tuple[int, int]] = field(default_factory=list)  # RFC 9370 ones still to run
    # what IKE_AUTH signs (§2.15, RFC 9242 §3.3.2)
    init_request: bytes = field(default=b"", repr=False)
    init_response: bytes = field(default=b"", repr=False)
    intermediate_done: int = 0
    int_auth_i: bytes = field(default=b"", repr=False)
    int_auth_r: bytes = field(default=b"", repr=False)
    ike_auth_mid: int = 1
    # the peer
    local_behind_nat: bool = False
    remote_behind_nat: bool = False
    peer_id: Optional[Identity] = None
    peer_hashes: Optional[List[int]] = None  # its SIGNATURE_HASH_ALGORITHMS (RFC 7427 §4)
    peer_certreq: List[bytes] = field(default_factory=list)  # CA key hashes it asked for (§3.7)
    peer_cert: str = ""  # its verified certificate, for status
    peer_auth: str = ""  # how it authenticated
    # messages
    fragmentation: bool = False  # both ends sent IKEV2_FRAGMENTATION_SUPPORTED (RFC 7383 §2.3)
    max_datagram: int = 1280
    reassembler: Optional[Reassembler] = None
    last_plain: Optional[Tuple[Header, int, bytes]] = field(default=None, repr=False)
    last_received_at: float = 0.0
    # times (timers.py)
    established_at: Optional[float] = None
    next_keepalive_at: Optional[float] = None  # while we are behind a NAT (RFC 3948 §2.3)
    rekey_at: Optional[float] = None  # IKE SA soft lifetime (with jitter)
    reauth_at: Optional[float] = None  # reauthentication (§2.8.3), with jitter; survives IKE rekeys
    delete_by: Optional[float] = None  # DELETING: dropped then, whatever the peer does
    duplicate_at: Optional[float] = None  # when to resolve a duplicate of this IKE SA (duplicates.py)
    retiring: Optional[Tuple[float, str]] = None  # (when, why) our DELETE goes (duplicates.py)
    # a reauthentication (tasks/ike_reauth.py): the new IKE SA and the old one it replaces
    reauth_by: Optional[IkeSa] = None
    reauth_of: Optional[IkeSa] = None
    children: List[ChildSa] = field(default_factory=list)
    tasks: object = None  # its manager.TaskManager (message IDs, the window, tasks)

    def __repr__(self) -> str:
        return "IkeSa(%s %s %s)" % (self.key, "initiator" if self.initiator else "responder", self.state)

    def move_to(self, state: IkeState) -> None:
        if state != self.state and state not in IKE_TRANSITIONS[self.state]:
            raise StateError("IKE_SA %s: %s -> %s" % (self.key, self.state, state))
        self.state = state

    @property
    def up(self) -> bool:
        return self.state in (ESTABLISHED, DELETING)

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

    # --- protection of messages ----------------------------------------------------------
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
        """An SK-protected message (§3.14; RFC 5282 for AEAD) as one datagram, or as SKF fragments
        (RFC 7383) when both ends support them and it would exceed `max_datagram`."""
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
        if self.cipher_in is None:
            raise CryptoError("no keys yet: IKE_SA_INIT is not complete")
        aad_end = message.aad_end
        plain = self.cipher_in.open(message.raw[:aad_end], message.raw[aad_end:])
        self.last_plain = (message.header, encrypted.first_inner, plain)
        return decode_payload_chain(encrypted.first_inner, plain, IKE_HEADER_LEN)

    def plain(self, exchange: int, message_id: int, response: bool, payloads: List[Payload]) -> bytes:
        """An unprotected message (IKE_SA_INIT, and its stateless error answers)."""
        return encode_message(self.header(exchange, message_id, response), payloads)
