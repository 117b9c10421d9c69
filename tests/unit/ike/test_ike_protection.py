"""IKE fragmentation (RFC 7383) and COOKIE / half-open limits (RFC 7296 §2.6) in the engine."""

from __future__ import annotations

import random
import tracemalloc

from ike_harness import LEFT, RIGHT, pair
from pyike.ids import ExchangeType, NotifyType, PayloadType
from pyike.ike.convert import to_wire
from pyike.ike.cookies import HalfOpenGuard
from pyike.ike.events import ChildSaUp
from pyike.wire.header import Header
from pyike.wire.key_exchange import KePayload, NoncePayload
from pyike.wire.message import decode_message, encode_message, find_notifies
from pyike.wire.sa import SaPayload


def test_large_ike_auth_messages_are_fragmented_and_reassembled():
    net, left, right = pair()
    left.fragment_size = right.fragment_size = 200  # forces SKF for IKE_AUTH both ways
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert len(net.of(LEFT, ChildSaUp)) == 1 and len(net.of(RIGHT, ChildSaUp)) == 1
    auth = [
        decode_message(d.data)
        for d in net.wire
        if decode_message(d.data).header.exchange == ExchangeType.IKE_AUTH
    ]
    assert len(auth) > 2 and all(m.payloads[-1].payload_type == PayloadType.SKF for m in auth)
    assert all(
        len(d.data) <= 200
        for d in net.wire
        if decode_message(d.data).header.exchange == ExchangeType.IKE_AUTH
    )


def test_fragments_are_not_sent_to_a_peer_that_did_not_offer_them():
    net, left, right = pair()
    left.fragment_size = 200
    right_receive = right.receive

    def strip_fragmentation_support(data, local, remote, now):
        message = decode_message(data)
        if message.header.exchange == ExchangeType.IKE_SA_INIT and not message.header.response:
            kept = [
                p
                for p in message.payloads
                if getattr(p, "notify_type", None) != NotifyType.IKEV2_FRAGMENTATION_SUPPORTED
            ]
            data = encode_message(message.header, kept)
        right_receive(data, local, remote, now)

    right.receive = strip_fragmentation_support
    left.initiate("s2s", None, now=0.0)
    net.run()
    auth = [
        decode_message(d.data)
        for d in net.wire
        if decode_message(d.data).header.exchange == ExchangeType.IKE_AUTH
    ]
    assert all(m.payloads[-1].payload_type == PayloadType.SK for m in auth)


def test_cookie_when_half_open_sas_pile_up():
    net, left, right = pair()
    right.guard = HalfOpenGuard(cookie_threshold=0, cookie_threshold_per_ip=0)
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert len(net.of(LEFT, ChildSaUp)) == 1
    first_response = decode_message(net.wire[1].data)
    assert find_notifies(first_response.payloads, NotifyType.COOKIE)
    retried = decode_message(net.wire[2].data)
    assert retried.payloads[0].notify_type == NotifyType.COOKIE
    assert right.counters["cookies_sent"] == 1


def _spoofed_init(rng, group=31, key_length=32):
    header = Header(spi_i=rng.randbytes(8), spi_r=bytes(8), exchange=ExchangeType.IKE_SA_INIT, initiator=True)
    from pyike.crypto.proposals import parse_proposals
    from pyike.ids import ProtocolId

    payloads = [
        SaPayload(to_wire(parse_proposals("aes256gcm16-prfsha256-x25519", ProtocolId.IKE))),
        KePayload(group, rng.randbytes(key_length)),
        NoncePayload(rng.randbytes(32)),
    ]
    return encode_message(header, payloads)


def test_a_flood_of_spoofed_ike_sa_init_keeps_memory_bounded_and_lets_a_real_peer_in():
    net, left, right = pair()
    right.policies["s2s"].remote_address = None  # a responder that accepts any peer address: flood target
    rng = random.Random(5)
    tracemalloc.start()
    before = tracemalloc.take_snapshot()
    for index in range(10_000):
        source = "100.%d.%d.%d" % ((index >> 16) & 255, (index >> 8) & 255, index & 255)
        right.receive(_spoofed_init(rng), (RIGHT, 500), (source, 500), 1.0)
        right.pop_events()
    after = tracemalloc.take_snapshot()
    tracemalloc.stop()
    grown = sum(stat.size_diff for stat in after.compare_to(before, "filename"))
    assert len(right.sas) <= right.guard.cookie_threshold + 1
    assert right.counters["cookies_sent"] >= 10_000 - len(right.sas) - 1
    assert grown < 2_000_000, grown  # the half-open SAs below the threshold, nothing per spoofed source
    left.initiate("s2s", None, now=2.0)
    net.run(now=2.0)
    assert len(net.of(LEFT, ChildSaUp)) == 1
