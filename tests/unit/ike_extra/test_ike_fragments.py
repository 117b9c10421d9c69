"""RFC 7383 IKE fragmentation: fragment_message and Reassembler for every SK cipher kind."""

from __future__ import annotations

import os
import random

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyike.crypto import SkCipher, features
from pyike.crypto.transforms import encr_transform, integ_transform
from pyike.ids import EncrId, ExchangeType, IntegId, NotifyType, PayloadType
from pyike.ike import fragments as frag
from pyike.ike.fragments import (
    COMPLETE,
    DUPLICATE,
    EVICTED,
    EXPIRED,
    INVALID,
    MISMATCH,
    OVER_BUDGET,
    RESTARTED,
    SKF_PREFIX_LEN,
    SMALLER_TOTAL,
    STORED,
    TOO_BIG,
    TOO_MANY,
    FragmentBudget,
    Reassembler,
    fragment_message,
)
from pyike.wire.encrypted import SkfPayload
from pyike.wire.header import Header
from pyike.wire.identity import CertPayload, IdiPayload
from pyike.wire.message import decode_message, encode_message, encode_payload_chain, encode_sk_prefix
from pyike.wire.notify import NotifyPayload
from pyike.wire.rules import check_envelope

KINDS = [
    ("aes256gcm16", EncrId.AES_GCM_16, 256, None),
    ("aes128gcm16", EncrId.AES_GCM_16, 128, None),
    ("aes256-sha256", EncrId.AES_CBC, 256, IntegId.HMAC_SHA2_256_128),
    ("aes128-sha1", EncrId.AES_CBC, 128, IntegId.HMAC_SHA1_96),
]
if features.has_chacha20_poly1305():
    KINDS.append(("chacha20poly1305", EncrId.CHACHA20_POLY1305, None, None))
IDS = [k[0] for k in KINDS]


def cipher_pair(kind, rng=None):
    """(sender, receiver) sharing keys for one direction."""
    rng = rng or random.Random(7)
    encr_id, key_length, integ_id = kind[1:]
    encr = encr_transform(encr_id, key_length)
    encr_key = bytes(rng.getrandbits(8) for n in range(encr.keymat_bytes))
    integ_key = b""
    if integ_id:
        integ_key = bytes(rng.getrandbits(8) for n in range(integ_transform(integ_id).key_bytes))
    return (
        SkCipher(encr_id, key_length, integ_id, encr_key, integ_key),
        SkCipher(encr_id, key_length, integ_id, encr_key, integ_key),
    )


def header(message_id=1, exchange=ExchangeType.IKE_AUTH, response=False):
    return Header(
        spi_i=bytes.fromhex("0102030405060708"),
        spi_r=bytes.fromhex("1112131415161718"),
        exchange=exchange,
        message_id=message_id,
        initiator=not response,
        response=response,
    )


def split(kind, plain, max_datagram=300, overhead=0, message_id=1, first=PayloadType.IDi, **kw):
    sender, receiver = cipher_pair(kind)
    datagrams = fragment_message(header(message_id, **kw), first, plain, sender, max_datagram, overhead)
    return datagrams, receiver


def feed(reassembler, datagrams, now=0.0):
    results = [reassembler.add(decode_message(d), now) for d in datagrams]
    done = [r for r in results if r is not None]
    return done[0] if done else None


# --- round trips ------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
@settings(max_examples=15, deadline=None)
@given(
    size=st.integers(0, 4000),
    max_datagram=st.integers(160, 1500),
    overhead=st.sampled_from([0, 28, 32, 48, 52]),
    seed=st.integers(0, 2**32),
)
def test_round_trip_any_size_and_order(kind, size, max_datagram, overhead, seed):
    rng = random.Random(seed)
    plain = bytes(rng.getrandbits(8) for n in range(size))
    sender, receiver = cipher_pair(kind)
    hdr = header(7)
    datagrams = fragment_message(hdr, PayloadType.IDi, plain, sender, max_datagram, overhead)
    total = len(datagrams)
    chunk = frag.max_fragment_plain(sender, max_datagram, overhead)
    assert total == max(1, -(-size // chunk))
    for number, data in enumerate(datagrams, start=1):
        assert len(data) + overhead <= max_datagram
        message = decode_message(data)
        assert check_envelope(message) == "fragment"
        skf = message.encrypted
        assert isinstance(skf, SkfPayload)
        assert (skf.fragment_number, skf.total_fragments) == (number, total)
        assert skf.first_inner == (PayloadType.IDi if number == 1 else 0)
        assert message.header.length == len(data)
        assert data[:16] == hdr.encode()[:16] and data[17:24] == hdr.encode()[17:24]  # all but NP/length
        assert message.header.next_payload == PayloadType.SKF
    # every fragment but the last is filled as far as the cipher's block allows
    block = 16 if kind[1] == EncrId.AES_CBC else 1
    for data in datagrams[:-1]:
        assert len(data) + overhead > max_datagram - block
    order = list(datagrams) + [datagrams[rng.randrange(total)] for n in range(3)]  # some duplicates
    rng.shuffle(order)
    reassembler = Reassembler(receiver, max_fragments=2000, max_bytes=1 << 20)
    assert feed(reassembler, order) == (PayloadType.IDi, plain)
    assert reassembler.in_progress == 0 and reassembler.budget.used == 0


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_real_payloads_round_trip(kind):
    payloads = [
        IdiPayload(2, b"left.example"),
        CertPayload(4, os.urandom(3000)),
        NotifyPayload(NotifyType.INITIAL_CONTACT),
    ]
    first, plain = encode_payload_chain(payloads)
    sender, receiver = cipher_pair(kind)
    datagrams = fragment_message(header(), first, plain, sender, 1280, frag.datagram_overhead(False, True))
    assert len(datagrams) == 3
    reassembler = Reassembler(receiver)
    results = [reassembler.add_payloads(decode_message(d), 0.0) for d in reversed(datagrams)]
    assert results[:2] == [None, None]
    assert [p.payload_type for p in results[2]] == [PayloadType.IDi, PayloadType.CERT, PayloadType.NOTIFY]
    assert results[2][1].data == payloads[1].data


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_aad_layout_matches_encode_sk_prefix(kind):
    sender, receiver = cipher_pair(kind)
    plain = bytes(range(256)) * 4
    hdr = header(3, response=True)
    ivs = [bytes([n]) * sender.iv_length for n in range(1, 6)]
    chunk = frag.max_fragment_plain(sender, 300)
    total = -(-len(plain) // chunk)
    datagrams = fragment_message(hdr, PayloadType.IDr, plain, sender, 300, ivs=ivs[:total])
    assert len(datagrams) == total
    for number, data in enumerate(datagrams, start=1):
        piece = plain[(number - 1) * chunk : number * chunk]
        message = decode_message(data)
        assert message.aad_end == SKF_PREFIX_LEN
        body_len = len(data) - SKF_PREFIX_LEN
        prefix = encode_sk_prefix(
            hdr, PayloadType.IDr if number == 1 else 0, body_len, fragment=(number, total)
        )
        assert data[:SKF_PREFIX_LEN] == prefix
        assert prefix[-4:] == number.to_bytes(2, "big") + total.to_bytes(2, "big")
        # known answer: the fragment is exactly prefix | seal(piece, aad=prefix)
        assert data[SKF_PREFIX_LEN:] == sender.seal(piece, prefix, ivs[number - 1])
        assert receiver.open(prefix, data[SKF_PREFIX_LEN:]) == piece
        # The AAD covers the fragment fields: renumbering a fragment breaks its ICV.
        renumbered = bytearray(data)
        renumbered[35] ^= 0x40  # Total Fragments low octet -> still a valid SKF on the wire
        tampered = decode_message(bytes(renumbered))
        checker = Reassembler(receiver, max_fragments=1000)
        assert checker.add(tampered, 0.0) is None and checker.last_status == INVALID


def test_single_fragment_and_empty_message():
    kind = KINDS[0]
    datagrams, receiver = split(kind, b"", first=PayloadType.NONE)
    assert len(datagrams) == 1
    assert Reassembler(receiver).add(decode_message(datagrams[0]), 0.0) == (0, b"")


def test_datagram_too_small_and_sizes():
    sender = cipher_pair(KINDS[2])[0]
    with pytest.raises(ValueError):
        fragment_message(header(), PayloadType.IDi, b"x" * 100, sender, 60)
    assert frag.datagram_overhead(False, False) == 28
    assert frag.datagram_overhead(True, True) == 52
    assert frag.sk_message_length(sender, 100) == len(
        encode_sk_prefix(header(), PayloadType.IDi, sender.body_length(100))
    ) + sender.body_length(100)


def test_must_fragment_and_negotiation():
    assert frag.must_fragment(True, ExchangeType.IKE_AUTH, 1253, 1280, 28)
    assert not frag.must_fragment(True, ExchangeType.IKE_AUTH, 1252, 1280, 28)
    assert not frag.must_fragment(False, ExchangeType.IKE_AUTH, 5000, 1280, 28)
    assert not frag.must_fragment(True, ExchangeType.IKE_SA_INIT, 5000, 1280, 28)
    assert frag.must_fragment(True, ExchangeType.CREATE_CHILD_SA, 700, 576, 28)
    notify = frag.fragmentation_notify()
    assert notify.notify_type == NotifyType.IKEV2_FRAGMENTATION_SUPPORTED and notify.data == b""
    init = decode_message(encode_message(header(0, ExchangeType.IKE_SA_INIT), [notify]))
    assert frag.offers_fragmentation(init.payloads)
    assert not frag.offers_fragmentation([NotifyPayload(NotifyType.COOKIE, b"c")])


# --- loss, tampering, ordering ----------------------------------------------------------------


@pytest.mark.parametrize("kind", KINDS, ids=IDS)
def test_tampered_fragment_is_dropped_before_storing(kind):
    plain = os.urandom(700)
    datagrams, receiver = split(kind, plain)
    assert len(datagrams) >= 3
    reassembler = Reassembler(receiver)
    assert reassembler.add(decode_message(datagrams[0]), 0.0) is None
    held = reassembler.held_bytes
    bad = bytearray(datagrams[1])
    bad[-1] ^= 1
    assert reassembler.add(decode_message(bytes(bad)), 0.0) is None
    assert reassembler.last_status == INVALID and reassembler.held_bytes == held
    # a forged fragment does not take the place of the genuine one
    assert feed(reassembler, datagrams[1:]) == (PayloadType.IDi, plain)
    assert reassembler.last_status == COMPLETE and reassembler.counters[INVALID] == 1


def test_forged_first_fragment_neither_stores_nor_blocks():
    kind = KINDS[2]
    plain = os.urandom(500)
    datagrams, receiver = split(kind, plain)
    reassembler = Reassembler(receiver)
    forged = bytearray(datagrams[0])
    forged[SKF_PREFIX_LEN + 3] ^= 0xFF
    assert reassembler.add(decode_message(bytes(forged)), 0.0) is None
    assert reassembler.last_status == INVALID and reassembler.in_progress == 0
    assert feed(reassembler, datagrams) == (PayloadType.IDi, plain)


def test_duplicates_are_ignored_and_missing_never_completes():
    plain = os.urandom(900)
    datagrams, receiver = split(KINDS[0], plain)
    reassembler = Reassembler(receiver)
    reassembler.add(decode_message(datagrams[0]), 0.0)
    assert reassembler.add(decode_message(datagrams[0]), 0.0) is None
    assert reassembler.last_status == DUPLICATE and reassembler.counters[DUPLICATE] == 1
    assert feed(reassembler, datagrams[1:-1]) is None
    assert reassembler.last_status == STORED and reassembler.in_progress == 1
    assert reassembler.add(decode_message(datagrams[-1]), 1.0) == (PayloadType.IDi, plain)


def test_larger_total_restarts_smaller_total_is_dropped():
    kind = KINDS[2]
    plain = os.urandom(600)
    sender, receiver = cipher_pair(kind)
    coarse = fragment_message(header(), PayloadType.IDi, plain, sender, 400)
    fine = fragment_message(header(), PayloadType.IDi, plain, sender, 200)
    assert len(fine) > len(coarse) >= 2
    reassembler = Reassembler(receiver)
    reassembler.add(decode_message(coarse[0]), 0.0)
    # a forged fragment with a larger total does not throw the genuine ones away
    forged = bytearray(fine[1])
    forged[-3] ^= 0x10
    assert reassembler.add(decode_message(bytes(forged)), 0.0) is None
    assert reassembler.last_status == INVALID and reassembler.held_bytes > 0
    assert reassembler.add(decode_message(fine[1]), 0.0) is None
    assert reassembler.last_status == RESTARTED
    assert reassembler.add(decode_message(coarse[1]), 0.0) is None
    assert reassembler.last_status == SMALLER_TOTAL
    assert feed(reassembler, fine) == (PayloadType.IDi, plain)
    assert reassembler.budget.used == 0


def test_request_and_response_reassemble_side_by_side_and_new_id_replaces():
    kind = KINDS[0]
    sender, receiver = cipher_pair(kind)
    request = fragment_message(header(5), PayloadType.IDi, b"q" * 500, sender, 250)
    response = fragment_message(header(2, response=True), PayloadType.IDr, b"r" * 500, sender, 250)
    later = fragment_message(header(6), PayloadType.NOTIFY, b"n" * 500, sender, 250)
    reassembler = Reassembler(receiver)
    reassembler.add(decode_message(request[0]), 0.0)
    reassembler.add(decode_message(response[0]), 0.0)
    assert reassembler.in_progress == 2
    held = reassembler.held_bytes
    reassembler.add(decode_message(later[0]), 0.0)  # the peer moved on: Message ID 5 is obsolete
    assert reassembler.in_progress == 2 and reassembler.held_bytes == held  # same-sized first pieces
    assert feed(reassembler, response[1:]) == (PayloadType.IDr, b"r" * 500)
    assert feed(reassembler, later[1:]) == (PayloadType.NOTIFY, b"n" * 500)
    assert reassembler.budget.used == 0 and reassembler.in_progress == 0


def test_exchange_mismatch_under_one_message_id():
    sender, receiver = cipher_pair(KINDS[0])
    auth = fragment_message(header(1), PayloadType.IDi, b"a" * 400, sender, 200)
    info = fragment_message(
        header(1, ExchangeType.INFORMATIONAL), PayloadType.NOTIFY, b"b" * 400, sender, 200
    )
    reassembler = Reassembler(receiver)
    reassembler.add(decode_message(auth[0]), 0.0)
    assert reassembler.add(decode_message(info[1]), 0.0) is None
    assert reassembler.last_status == MISMATCH


def test_not_a_fragment_is_invalid():
    receiver = cipher_pair(KINDS[0])[1]
    plain_message = decode_message(encode_message(header(), [NotifyPayload(NotifyType.COOKIE, b"x")]))
    reassembler = Reassembler(receiver)
    assert reassembler.add(plain_message, 0.0) is None and reassembler.last_status == INVALID


# --- limits -----------------------------------------------------------------------------------


def test_too_many_fragments_dropped_before_decryption():
    plain = os.urandom(3000)
    datagrams, receiver = split(KINDS[0], plain, max_datagram=120)
    assert len(datagrams) > 32
    reassembler = Reassembler(receiver)  # default max_fragments = 32

    class Exploding:
        def open(self, aad, body):
            raise AssertionError("must not decrypt")

    reassembler.cipher = Exploding()
    for data in datagrams:
        assert reassembler.add(decode_message(data), 0.0) is None
        assert reassembler.last_status == TOO_MANY
    assert reassembler.in_progress == 0 and reassembler.counters[TOO_MANY] == len(datagrams)


def test_too_big_discards_the_whole_message():
    datagrams, receiver = split(KINDS[0], os.urandom(2000), max_datagram=400)
    reassembler = Reassembler(receiver, max_bytes=1000)
    statuses = []
    for data in datagrams:
        reassembler.add(decode_message(data), 0.0)
        statuses.append(reassembler.last_status)
    assert TOO_BIG in statuses
    assert reassembler.last_status != COMPLETE
    assert reassembler.held_bytes < 1000 and reassembler.budget.used == reassembler.held_bytes


def test_stale_partial_messages_expire_and_return_memory():
    datagrams, receiver = split(KINDS[0], os.urandom(900))
    budget = FragmentBudget()
    reassembler = Reassembler(receiver, budget=budget, timeout=30.0)
    reassembler.add(decode_message(datagrams[0]), 100.0)
    assert budget.used > 0 and reassembler.next_deadline() == 130.0
    assert reassembler.expire(129.9) == 0
    assert reassembler.expire(130.0) == 1
    assert budget.used == 0 and reassembler.in_progress == 0 and reassembler.counters[EXPIRED] == 1
    # expiry also happens lazily on the next fragment: stale pieces never combine with fresh ones
    reassembler.add(decode_message(datagrams[0]), 200.0)
    assert feed(reassembler, datagrams[1:-1], now=231.0) is None
    assert reassembler.counters[EXPIRED] == 2 and reassembler.next_deadline() == 261.0


def test_global_budget_bounds_all_sas_and_clear_releases():
    budget = FragmentBudget(max_bytes=1500)
    holders = []
    while len(holders) < 4:
        datagrams, receiver = split(KINDS[0], os.urandom(1000), max_datagram=300)
        reassembler = Reassembler(receiver, budget=budget)
        for data in datagrams[:-1]:
            reassembler.add(decode_message(data), 0.0)
        holders.append((reassembler, datagrams))
    assert budget.used <= 1500
    assert any(r.counters.get(OVER_BUDGET) for r, d in holders)
    assert sum(r.held_bytes for r, d in holders) == budget.used
    for holder in holders:
        holder[0].clear()
    assert budget.used == 0
    reassembler, datagrams = holders[-1]
    assert feed(reassembler, datagrams) is not None


def test_memory_per_sa_is_bounded_under_a_stream_of_message_ids():
    sender, receiver = cipher_pair(KINDS[0])
    reassembler = Reassembler(receiver)
    for message_id in range(200):
        datagrams = fragment_message(header(message_id), PayloadType.IDi, b"z" * 800, sender, 300)
        reassembler.add(decode_message(datagrams[0]), float(message_id) / 100)
        reassembler.add(decode_message(datagrams[1]), float(message_id) / 100)
    assert reassembler.in_progress == 1
    assert reassembler.held_bytes == reassembler.budget.used <= reassembler.max_bytes


def partial(budget, address, size=1000):
    """A Reassembler of a peer at `address` holding all but the last fragment of a `size`-octet message."""
    datagrams, receiver = split(KINDS[0], os.urandom(size), max_datagram=300)
    reassembler = Reassembler(receiver, budget=budget, address=address)
    for data in datagrams[:-1]:
        reassembler.add(decode_message(data), 0.0)
    return reassembler


def test_one_address_holds_at_most_its_share():
    budget = FragmentBudget(max_bytes=100_000, max_per_address=2500)
    greedy = [partial(budget, "203.0.113.9") for _n in range(5)]
    assert budget.held_by("203.0.113.9") <= 2500 < sum(r.held_bytes for r in greedy) + 2500
    assert any(r.counters.get(OVER_BUDGET) for r in greedy)
    datagrams, receiver = split(KINDS[0], b"x" * 1000, max_datagram=300)
    other = Reassembler(receiver, budget=budget, address="198.51.100.7")
    assert feed(other, datagrams) is not None


def test_a_full_budget_makes_the_address_holding_most_give_way():
    """Issue 10 item 5: peers that never finish their messages must not keep a legitimate one out."""
    budget = FragmentBudget(max_bytes=3000, max_per_address=3000)
    hoarders = [partial(budget, "203.0.113.%d" % n) for n in range(1, 5)]
    assert budget.max_bytes - budget.used < 300  # full
    datagrams, receiver = split(KINDS[0], b"x" * 600, max_datagram=300)
    legitimate = Reassembler(receiver, budget=budget, address="198.51.100.7")
    assert feed(legitimate, datagrams) is not None
    assert sum(r.counters.get(EVICTED, 0) for r in hoarders) >= 1
    assert budget.used == sum(r.held_bytes for r in hoarders) <= budget.max_bytes
    # A newcomer takes room only down to an even share: it never ends up holding more than the others.
    late = partial(budget, "203.0.113.99", size=2000)
    assert late.held_bytes <= max(r.held_bytes for r in hoarders)
