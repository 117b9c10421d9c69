"""IKE fragmentation (RFC 7383) and COOKIE / half-open limits (RFC 7296 §2.6) in the engine."""

from __future__ import annotations

import random
import tracemalloc

import pytest
from ike_harness import LEFT, RIGHT, pair
from pyike.ids import ExchangeType, NotifyType, PayloadType
from pyike.ike.cookies import HalfOpenGuard
from pyike.ike.events import ChildSaUp, Failure
from pyike.ike.negotiate import to_wire
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
    assert right.counters["cookies_sent"] == 1 and right.counters["cookies_accepted"] == 1
    assert right.guard.describe()["peak"] == 1 and right.guard.describe()["current"] == 0


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
    assert right.counters["cookies_accepted"] == 1  # the real peer came in through a cookie
    assert right.guard.peak == right.guard.cookie_threshold + 1  # the spoofed ones, then the real one


def _mlkem_available():
    from pyike.crypto.transforms import available_ke_groups
    from pyike.ids import DhId

    return DhId.ML_KEM_768 in available_ke_groups()


@pytest.mark.skipif(not _mlkem_available(), reason="the installed cryptography has no ML-KEM (needs 47+)")
def test_hybrid_x25519_plus_ml_kem_768_with_ike_intermediate():
    ike = ["aes256gcm16-prfsha256-x25519-ke1_mlkem768"]
    net, left, _right = pair(left_kw={"ike": ike}, right_kw={"ike": ike})
    left.initiate("s2s", None, now=0.0)
    net.run()
    (up_l,), (up_r,) = net.of(LEFT, ChildSaUp), net.of(RIGHT, ChildSaUp)
    assert up_l.encr_key_out == up_r.encr_key_in
    kinds = [decode_message(d.data).header.exchange for d in net.wire]
    assert (
        kinds
        == [ExchangeType.IKE_SA_INIT] * 2 + [ExchangeType.IKE_INTERMEDIATE] * 2 + [ExchangeType.IKE_AUTH] * 2
    )
    (sa,) = left.sas.values()
    assert sa.intermediate_done == 1 and "mlkem768" in sa.proposal_text
    # The IKE SA keys changed after the ML-KEM exchange: they differ from a run without it.
    classic_net, classic_left, _classic_right = pair(left_kw={"ike": "aes256gcm16-prfsha256-x25519"},
                                                     right_kw={"ike": "aes256gcm16-prfsha256-x25519"})  # fmt: skip
    classic_left.initiate("s2s", None, now=0.0)
    classic_net.run()
    assert next(iter(classic_left.sas.values())).keys.sk_d != sa.keys.sk_d


@pytest.mark.skipif(not _mlkem_available(), reason="the installed cryptography has no ML-KEM (needs 47+)")
def test_ml_kem_offered_as_an_optional_extra_falls_back_for_a_classic_peer():
    net, left, _right = pair(
        left_kw={"ike": ["aes256gcm16-prfsha256-x25519-ke1_mlkem768", "aes256gcm16-prfsha256-x25519"]},
        right_kw={"ike": "aes256gcm16-prfsha256-x25519"},
    )
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert len(net.of(LEFT, ChildSaUp)) == 1
    assert ExchangeType.IKE_INTERMEDIATE not in [decode_message(d.data).header.exchange for d in net.wire]


@pytest.mark.skipif(not _mlkem_available(), reason="the installed cryptography has no ML-KEM (needs 47+)")
def test_tampered_intermediate_exchange_fails_authentication():
    ike = ["aes256gcm16-prfsha256-x25519-ke1_mlkem768"]
    net, left, right = pair(left_kw={"ike": ike}, right_kw={"ike": ike})
    right.impair.add("corrupt name=int_auth")  # as if it had seen another IKE_INTERMEDIATE message
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert not net.of(LEFT, ChildSaUp)
    assert any("AUTHENTICATION_FAILED" in f.reason for f in net.of(RIGHT, Failure))
