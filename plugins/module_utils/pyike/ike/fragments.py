"""IKE message fragmentation (RFC 7383): split outgoing SK messages, reassemble incoming SKF.

Sans-I/O: nothing here reads a clock or touches a socket; the caller passes ``now``.

Sending (§2.5): the plaintext inner payload chain of a message is cut into chunks, and every
chunk is encrypted separately into its own message whose last (and only) payload is an
Encrypted Fragment (SKF) payload.  All fragments share the IKE header except its Length; fragment
1 names the first inner payload type in the SKF generic header, later fragments send 0.  The
associated data / ICV input of each fragment (§2.5.3) is its IKE header plus the SKF generic
header plus the Fragment Number and Total Fragments fields -- exactly
``wire.message.encode_sk_prefix(..., fragment=(number, total))``.  Messages with unencrypted
payloads before SK are not fragmented here (the engine never sends any).

Datagram size (§2.5.1): ``max_datagram`` bounds the IP datagram; ``overhead`` is what the IP
datagram adds to an IKE message (IP header, UDP header, and the 4-octet non-ESP marker on port
4500): :func:`datagram_overhead`.  RFC 7383 recommends 1280 octets for IPv6 and 576 for IPv4;
strongSwan sends 1280 for both by default (``charon.fragment_size``), which is also our default.

Receiving (§2.6): :class:`Reassembler` authenticates and decrypts each fragment as it arrives and
stores only the plaintext of fragments that verified.  Limits per message: ``max_fragments``
(Total Fragments above it is dropped at once -- such a message could never be accepted),
``max_bytes`` of plaintext (exceeding it discards the whole message) and ``timeout`` seconds
after its first fragment.  A fragment announcing a larger Total Fragments than the fragments in
hand (the sender re-fragmented smaller, e.g. after PMTU trouble) restarts the reassembly once it
has verified; a smaller Total is dropped.  Duplicates are ignored before any decryption.

Memory bounds: one Reassembler per IKE SA holds at most one request and one response in
reassembly (the engine feeds it only fragments whose Message ID it would accept: the next
request ID or the outstanding request's ID, window size 1), so an SA holds at most
``2 * max_bytes`` of plaintext plus ``2 * max_fragments`` small entries.  Across all SAs a shared
:class:`FragmentBudget` caps the plaintext held, in total and per peer address, fairly: once the
total is reached, a fragment from an address holding less than another one takes the room of
that address's partial messages, so peers that never finish their messages (half-open SAs of an
attacker, from as many addresses as it likes) cannot keep a legitimate peer's few fragments out.
Everything an SA holds goes back to the budget when a message completes, expires, is replaced or
evicted, and when the SA is dropped (:meth:`Reassembler.clear` -- the engine must call it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Dict, Iterable, List, Optional, Tuple

from ..crypto.errors import CryptoError
from ..crypto.sk import SkCipher
from ..ids import IKE_HEADER_LEN, ExchangeType, NotifyType
from ..wire.encrypted import SKF_FIELDS_LEN, SkfPayload
from ..wire.header import Header
from ..wire.message import GENERIC_HEADER_LEN, Message, decode_payload_chain, encode_sk_prefix
from ..wire.notify import NotifyPayload
from ..wire.payload import Payload

# RFC 7383 §2.5.1 recommendations; strongSwan's default fragment_size is 1280 for both families.
MAX_DATAGRAM_IPV6 = 1280
MAX_DATAGRAM_IPV4 = 576
DEFAULT_MAX_DATAGRAM = 1280

IPV4_HEADER_LEN = 20
IPV6_HEADER_LEN = 40
UDP_HEADER_LEN = 8
NON_ESP_MARKER_LEN = 4  # RFC 3948 §2.2, in front of IKE messages on port 4500

# Per-message reassembly limits (defaults).
MAX_FRAGMENTS = 32
MAX_MESSAGE_BYTES = 64 * 1024
REASSEMBLY_TIMEOUT = 30.0
# Plaintext held in reassembly across all IKE SAs of an engine, and by the SAs of one peer address.
GLOBAL_FRAGMENT_BYTES = 2 * 1024 * 1024
ADDRESS_FRAGMENT_BYTES = 512 * 1024

SKF_PREFIX_LEN = IKE_HEADER_LEN + GENERIC_HEADER_LEN + SKF_FIELDS_LEN  # 36 octets before IV
SK_PREFIX_LEN = IKE_HEADER_LEN + GENERIC_HEADER_LEN  # 32 octets before IV


# --- negotiation and decision ---------------------------------------------------------------


def fragmentation_notify() -> NotifyPayload:
    """N(IKEV2_FRAGMENTATION_SUPPORTED), empty, for the IKE_SA_INIT request and response (§2.3)."""
    return NotifyPayload(NotifyType.IKEV2_FRAGMENTATION_SUPPORTED)


def offers_fragmentation(payloads: Iterable[Payload]) -> bool:
    """Whether an IKE_SA_INIT message carries N(IKEV2_FRAGMENTATION_SUPPORTED) (§2.3).

    Its data is ignored (it is sent empty)."""
    return any(
        isinstance(p, NotifyPayload) and p.notify_type == NotifyType.IKEV2_FRAGMENTATION_SUPPORTED
        for p in payloads
    )


def datagram_overhead(ipv6: bool, natt: bool) -> int:
    """Octets an IP datagram adds to an IKE message: IP and UDP headers, the non-ESP marker on 4500."""
    return (
        (IPV6_HEADER_LEN if ipv6 else IPV4_HEADER_LEN) + UDP_HEADER_LEN + (NON_ESP_MARKER_LEN if natt else 0)
    )


def sk_message_length(cipher: SkCipher, plain_len: int) -> int:
    """Length of the unfragmented SK message for ``plain_len`` octets of inner payloads."""
    return SK_PREFIX_LEN + cipher.body_length(plain_len)


def must_fragment(
    negotiated: bool, exchange: int, message_length: int, max_datagram: int, overhead: int = 0
) -> bool:
    """Whether an SK message of ``message_length`` octets has to go out as SKF fragments.

    ``negotiated``: both IKE_SA_INIT messages carried N(IKEV2_FRAGMENTATION_SUPPORTED) (§2.3).
    IKE_SA_INIT itself is never fragmented (§2.5: only messages with an Encrypted payload are).
    """
    if not negotiated or exchange == ExchangeType.IKE_SA_INIT:
        return False
    return message_length + overhead > max_datagram


# --- sending ----------------------------------------------------------------------------------


def max_fragment_plain(cipher: SkCipher, max_datagram: int, overhead: int = 0) -> int:
    """Most plaintext octets one SKF fragment can carry within ``max_datagram``."""
    room = max_datagram - overhead - SKF_PREFIX_LEN  # for IV | ciphertext | ICV
    plain = room - cipher.iv_length - cipher.icv_length - 1  # at least the Pad Length octet
    while plain > 0 and cipher.body_length(plain) > room:
        plain -= 1  # CBC padding to the block size; at most a block of steps
    if plain <= 0:
        raise ValueError(
            "a datagram of %d octets (with %d octets of overhead) leaves no room for an IKE fragment"
            % (max_datagram, overhead)
        )
    return plain


def fragment_message(
    header: Header,
    first_inner_type: int,
    plain_inner: bytes,
    cipher: SkCipher,
    max_datagram: int = DEFAULT_MAX_DATAGRAM,
    overhead: int = 0,
    ivs: Optional[List[bytes]] = None,
) -> List[bytes]:
    """The SKF messages (without non-ESP marker) carrying ``plain_inner`` (RFC 7383 §2.5).

    ``header`` gives SPIs, exchange, Message ID and flags (Next Payload and Length are filled in
    per fragment); ``plain_inner`` is the encoded inner chain (``encode_payload_chain``) whose
    first payload type is ``first_inner_type``.  Each returned message plus ``overhead`` fits in
    ``max_datagram``.  ``ivs`` (one per fragment) is for known-answer tests only.
    """
    plain_inner = bytes(plain_inner)
    chunk = max_fragment_plain(cipher, max_datagram, overhead)
    total = max(1, -(-len(plain_inner) // chunk))
    if total > 0xFFFF:
        raise ValueError("a message of %d octets needs more than 65535 fragments" % len(plain_inner))
    if ivs is not None and len(ivs) != total:
        raise ValueError("%d IVs given for %d fragments" % (len(ivs), total))
    out = []
    for index in range(total):
        piece = plain_inner[index * chunk : (index + 1) * chunk]
        number = index + 1
        prefix = encode_sk_prefix(
            header,
            first_inner_type if number == 1 else 0,
            cipher.body_length(len(piece)),
            fragment=(number, total),
        )
        out.append(prefix + cipher.seal(piece, prefix, None if ivs is None else ivs[index]))
    return out


# --- receiving --------------------------------------------------------------------------------


class FragmentBudget:
    """Plaintext octets held in reassembly by the Reassemblers sharing it (one budget per engine).

    ``take`` refuses a fragment that would put its peer address over ``max_per_address``.  When the
    total would exceed ``max_bytes``, the address holding the most gives up partial messages (its
    largest first) as long as it holds more than the requesting address would after the fragment:
    max-min fairness between peer addresses, so a peer with a few fragments always gets in.
    """

    def __init__(self, max_bytes: int = GLOBAL_FRAGMENT_BYTES, max_per_address: int = ADDRESS_FRAGMENT_BYTES):
        self.max_bytes = max_bytes
        self.max_per_address = max_per_address
        self.used = 0
        self.evictions = 0
        self._by_address: Dict[str, int] = {}
        self._holders: Dict[str, Dict[int, Reassembler]] = {}  # address -> id -> Reassembler holding bytes

    def held_by(self, address: str) -> int:
        return self._by_address.get(address, 0)

    def take(self, size: int, holder: Optional[Reassembler] = None) -> bool:
        address = holder.address if holder is not None else ""
        mine = self._by_address.get(address, 0)
        if mine + size > self.max_per_address:
            return False
        while self.used + size > self.max_bytes:
            victim = max(self._by_address, key=self._by_address.__getitem__, default=None)
            if victim is None or victim == address or self._by_address[victim] <= mine + size:
                return False
            holders = self._holders.get(victim, {})
            largest = max(holders.values(), key=lambda reassembler: reassembler.held_bytes, default=None)
            if largest is None or not largest.evict_one():
                return False
            self.evictions += 1
        self.used += size
        self._by_address[address] = mine + size
        if holder is not None:
            self._holders.setdefault(address, {})[id(holder)] = holder
        return True

    def give(self, size: int, holder: Optional[Reassembler] = None) -> None:
        address = holder.address if holder is not None else ""
        self.used = max(0, self.used - size)
        left = self._by_address.get(address, 0) - size
        if left > 0:
            self._by_address[address] = left
        else:
            self._by_address.pop(address, None)
        if holder is not None and holder.held_bytes == 0:
            holders = self._holders.get(address, {})
            holders.pop(id(holder), None)
            if not holders:
                self._holders.pop(address, None)

    def __repr__(self) -> str:
        return "FragmentBudget(%d/%d, %d addresses)" % (self.used, self.max_bytes, len(self._by_address))


@dataclass
class _Partial:
    exchange: int
    total: int
    started_at: float
    first_inner: Optional[int] = None
    pieces: Dict[int, bytes] = field(default_factory=dict)
    size: int = 0


# Outcomes of Reassembler.add (``last_status``; each also counted in ``counters``).
STORED = "stored"
COMPLETE = "complete"
DUPLICATE = "duplicate"
INVALID = "invalid"  # failed integrity, or not an SKF message
TOO_MANY = "too_many"  # Total Fragments above max_fragments
TOO_BIG = "too_big"  # plaintext above max_bytes: the whole message is discarded
SMALLER_TOTAL = "smaller_total"  # Total Fragments below the one in hand (§2.6)
RESTARTED = "restarted"  # larger Total Fragments: reassembly started anew (§2.6)
MISMATCH = "mismatch"  # another exchange type under the same Message ID
OVER_BUDGET = "over_budget"  # the FragmentBudget (total, or this peer address's share) is exhausted
EVICTED = "evicted"  # a partial message given up for a peer address holding less (FragmentBudget)
EXPIRED = "expired"  # a partial message timed out (counted by expire())


class Reassembler:
    """Reassembly of incoming SKF messages for one IKE SA (RFC 7383 §2.6).

    ``cipher`` is the SA's inbound SkCipher, ``address`` the peer's address (its share of the
    budget).  Partial messages are keyed by (Message ID,
    response flag); a fragment of a new Message ID in the same direction replaces the partial one
    (the engine only passes fragments with acceptable Message IDs, so the old one is obsolete).
    Fragments of the message last completed in a direction count as duplicates.
    """

    def __init__(
        self,
        cipher: SkCipher,
        budget: Optional[FragmentBudget] = None,
        max_fragments: int = MAX_FRAGMENTS,
        max_bytes: int = MAX_MESSAGE_BYTES,
        timeout: float = REASSEMBLY_TIMEOUT,
        address: str = "",
    ) -> None:
        self.cipher = cipher
        self.address = address
        self.budget = budget if budget is not None else FragmentBudget()
        self.max_fragments = max_fragments
        self.max_bytes = max_bytes
        self.timeout = timeout
        self._partial: Dict[bool, Tuple[int, _Partial]] = {}  # response flag -> (Message ID, partial)
        self._completed: Dict[bool, int] = {}  # response flag -> last Message ID reassembled
        self.counters: Dict[str, int] = {}
        self.last_status = ""

    # --- bookkeeping -------------------------------------------------------------------------
    @property
    def held_bytes(self) -> int:
        return sum(partial.size for message_id, partial in self._partial.values())

    @property
    def in_progress(self) -> int:
        return len(self._partial)

    def next_deadline(self) -> Optional[float]:
        starts = [partial.started_at for message_id, partial in self._partial.values()]
        return min(starts) + self.timeout if starts else None

    def expire(self, now: float) -> int:
        """Discard partial messages older than ``timeout``; returns how many."""
        stale = [
            direction
            for direction, (message_id, partial) in self._partial.items()
            if now >= partial.started_at + self.timeout
        ]
        for direction in stale:
            self._discard(direction)
            self._status(EXPIRED)
        return len(stale)

    def clear(self) -> None:
        """Forget everything (the IKE SA is gone); returns the memory to the budget."""
        for direction in list(self._partial):
            self._discard(direction)
        self._completed.clear()

    def evict_one(self) -> bool:
        """Give the budget back the largest partial message (the budget needs room); False if none."""
        if not self._partial:
            return False
        direction = max(self._partial, key=lambda d: self._partial[d][1].size)
        self._discard(direction)
        self._status(EVICTED)
        return True

    def _discard(self, direction: bool) -> None:
        entry = self._partial.pop(direction, None)
        if entry is not None:
            self.budget.give(entry[1].size, self)

    def _status(self, status: str) -> None:
        self.last_status = status
        self.counters[status] = self.counters.get(status, 0) + 1

    # --- input -------------------------------------------------------------------------------
    def add(self, message: Message, now: float) -> Optional[Tuple[int, bytes]]:
        """Take one SKF message; ``(first_inner_type, plain_inner)`` once the message is complete.

        Returns None otherwise; ``last_status`` tells why (see the module constants).  A fragment
        that failed integrity changes nothing.
        """
        self.expire(now)
        fragment = message.encrypted
        if not isinstance(fragment, SkfPayload) or message.aad_end is None:
            self._status(INVALID)
            return None
        header = message.header
        number, total = fragment.fragment_number, fragment.total_fragments
        if total > self.max_fragments:
            self._status(TOO_MANY)
            return None
        direction = bool(header.response)
        if self._completed.get(direction) == header.message_id:
            self._status(DUPLICATE)  # a late or retransmitted fragment of a message already delivered
            return None
        entry = self._partial.get(direction)
        partial = None
        if entry is not None and entry[0] == header.message_id:
            partial = entry[1]
            if total < partial.total:
                self._status(SMALLER_TOTAL)
                return None
            if total == partial.total and number in partial.pieces:
                self._status(DUPLICATE)
                return None
        # §2.6: authenticate before the fragment may change anything.
        aad_end = message.aad_end
        try:
            plain = self.cipher.open(message.raw[:aad_end], message.raw[aad_end:])
        except CryptoError:
            self._status(INVALID)
            return None
        restarted = False
        if partial is not None and partial.exchange != header.exchange:
            self._status(MISMATCH)
            return None
        if partial is None or total > partial.total:
            restarted = partial is not None
            self._discard(direction)
            partial = _Partial(header.exchange, total, now)
            self._partial[direction] = (header.message_id, partial)
        if partial.size + len(plain) > self.max_bytes:
            self._discard(direction)
            self._status(TOO_BIG)
            return None
        if not self.budget.take(len(plain), self):
            if not partial.pieces:
                self._discard(direction)
            self._status(OVER_BUDGET)
            return None
        partial.pieces[number] = plain
        partial.size += len(plain)
        if number == 1:
            partial.first_inner = fragment.first_inner
        if len(partial.pieces) < partial.total:
            self._status(RESTARTED if restarted else STORED)
            return None
        self._discard(direction)
        self._completed[direction] = header.message_id
        self._status(COMPLETE)
        return partial.first_inner or 0, b"".join(partial.pieces[n] for n in range(1, partial.total + 1))

    def add_payloads(self, message: Message, now: float) -> Optional[List[Payload]]:
        """:meth:`add`, then the inner payloads decoded; WireError if their syntax is bad."""
        done = self.add(message, now)
        if done is None:
            return None
        return decode_payload_chain(done[0], done[1], IKE_HEADER_LEN)

    def __repr__(self) -> str:
        return "Reassembler(%d in progress, %d bytes)" % (len(self._partial), self.held_bytes)
