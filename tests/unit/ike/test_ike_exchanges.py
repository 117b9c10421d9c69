"""IKE_SA_INIT + IKE_AUTH + INFORMATIONAL between two in-process engines (deterministic)."""

from __future__ import annotations

import pytest
from ike_harness import LEFT, RIGHT, pair
from pyike.ids import NATT_PORT, EncrId, ExchangeType
from pyike.ike.events import ChildSaDown, ChildSaUp, Failure, IkeSaDown, IkeSaUp
from pyike.selectors import TrafficSelector
from pyike.wire.message import decode_message


def test_initiator_and_responder_agree_on_keys_and_selectors():
    net, left, _right = pair()
    left.initiate("s2s", None, now=0.0)
    net.run()
    (up_l,), (up_r,) = net.of(LEFT, ChildSaUp), net.of(RIGHT, ChildSaUp)
    assert len(net.of(LEFT, IkeSaUp)) == len(net.of(RIGHT, IkeSaUp)) == 1
    assert (up_l.spi_in, up_l.spi_out) == (up_r.spi_out, up_r.spi_in)
    assert up_l.encr_key_out == up_r.encr_key_in and up_l.encr_key_in == up_r.encr_key_out
    assert up_l.encr_key_out != up_l.encr_key_in
    assert len(up_l.encr_key_out) == 36  # AES-256 key + 4-byte salt (RFC 4106)
    assert up_l.encr_id == EncrId.AES_GCM_16 and up_l.integ_id is None
    assert [str(t.start_address) for t in up_l.local_ts] == ["10.1.0.0"]
    assert [str(t.start_address) for t in up_r.local_ts] == ["10.2.0.0"]
    exchanges = [decode_message(d.data).header.exchange for d in net.wire]
    assert exchanges == [ExchangeType.IKE_SA_INIT] * 2 + [ExchangeType.IKE_AUTH] * 2
    assert up_l.encap is False and up_l.remote == (RIGHT, 500)


def test_the_same_seed_gives_the_same_messages():
    runs = []
    for _attempt in range(2):
        net, left, _right = pair(seed=7)
        left.initiate("s2s", None, now=0.0)
        net.run()
        runs.append([d.data for d in net.wire[:2]])
    assert runs[0] == runs[1]


def test_wrong_psk_fails_on_both_sides_and_installs_nothing():
    net, left, right = pair(right_kw={"psk": b"another-psk"})
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert not net.of(LEFT, ChildSaUp) and not net.of(RIGHT, ChildSaUp)
    assert any("AUTHENTICATION_FAILED" in f.reason for f in net.of(LEFT, Failure))
    assert any("AUTHENTICATION_FAILED" in f.reason for f in net.of(RIGHT, Failure))
    assert left.sas == {} and right.sas == {}


def test_disjoint_selectors_give_ts_unacceptable_but_keep_the_ike_sa():
    net, left, right = pair()
    right.policies["s2s"].children["net"].local_ts[:] = [TrafficSelector.from_network("10.9.0.0/24")]
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert not net.of(LEFT, ChildSaUp)
    assert any("TS_UNACCEPTABLE" in f.reason for f in net.of(LEFT, Failure))
    assert any("TS_UNACCEPTABLE" in f.reason for f in net.of(RIGHT, Failure))
    assert len(net.of(LEFT, IkeSaUp)) == 1


def test_no_common_ike_proposal():
    net, left, right = pair(right_kw={"ike": "aes128-sha256-modp2048"})
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert any("NO_PROPOSAL_CHOSEN" in f.reason for f in net.of(LEFT, Failure))
    assert any("NO_PROPOSAL_CHOSEN" in f.reason for f in net.of(RIGHT, Failure))
    assert left.sas == {} and right.sas == {}


def test_no_common_esp_proposal_fails_only_the_child():
    net, left, _right = pair(right_kw={"esp": "aes128-sha256"})
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert not net.of(LEFT, ChildSaUp)
    assert any("NO_PROPOSAL_CHOSEN" in f.reason for f in net.of(LEFT, Failure))
    assert len(net.of(RIGHT, IkeSaUp)) == 1


def test_invalid_ke_payload_retry_with_the_group_the_responder_wants():
    net, left, _right = pair(
        left_kw={"ike": "aes256gcm16-prfsha256-x25519-ecp256"},
        right_kw={"ike": "aes256gcm16-prfsha256-ecp256"},
    )
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert len(net.of(LEFT, ChildSaUp)) == 1
    inits = [
        decode_message(d.data)
        for d in net.wire
        if decode_message(d.data).header.exchange == ExchangeType.IKE_SA_INIT
    ]
    assert len(inits) == 4  # request, INVALID_KE_PAYLOAD, request with ECP-256, response


def test_cbc_hmac_proposals_and_modp():
    cbc = {"ike": "aes256-sha256-modp2048", "esp": "aes256-sha256"}
    net, left, _right = pair(left_kw=cbc, right_kw=cbc)
    left.initiate("s2s", None, now=0.0)
    net.run()
    (up,) = net.of(LEFT, ChildSaUp)
    assert up.encr_id == EncrId.AES_CBC and up.integ_id is not None and len(up.integ_key_out) == 32


def test_forced_encapsulation_moves_to_port_4500():
    net, left, _right = pair(left_kw={"force_encap": True})
    left.initiate("s2s", None, now=0.0)
    net.run()
    auth = [d for d in net.wire if decode_message(d.data).header.exchange == ExchangeType.IKE_AUTH]
    assert all(d.local[1] == NATT_PORT and d.remote[1] == NATT_PORT for d in auth)
    (up_l,), (up_r,) = net.of(LEFT, ChildSaUp), net.of(RIGHT, ChildSaUp)
    assert up_l.encap and up_r.encap and up_r.remote == (LEFT, NATT_PORT)


def test_retransmission_and_cached_response():
    net, left, right = pair()
    lost = []

    def lose_first_auth_response(datagram):
        message = decode_message(datagram.data)
        if message.header.exchange == ExchangeType.IKE_AUTH and message.header.response and not lost:
            lost.append(datagram)
            return True
        return False

    net.drop = lose_first_auth_response
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert not net.of(LEFT, ChildSaUp) and len(net.of(RIGHT, ChildSaUp)) == 1
    deadline = left.next_deadline()
    assert deadline == pytest.approx(2.0)
    left.tick(deadline)
    net.run(now=deadline)
    assert len(net.of(LEFT, ChildSaUp)) == 1
    assert len(net.of(RIGHT, ChildSaUp)) == 1  # the retransmitted request was answered from the cache
    assert right.counters["replayed_responses"] == 1


def test_peer_that_never_answers_is_given_up_after_the_retransmits():
    net, left, _right = pair()
    net.drop = lambda datagram: True
    left.initiate("s2s", None, now=0.0)
    net.run()
    now = 0.0
    while left.next_deadline() is not None:
        now = left.next_deadline()
        left.tick(now)
        net.run(now=now)
    assert any("no answer after 5 retransmits" in f.reason for f in net.of(LEFT, Failure))
    assert net.of(LEFT, IkeSaDown) and left.sas == {}
    assert now == pytest.approx(sum(2.0 * 1.8**n for n in range(6)))


def test_terminate_deletes_on_both_sides():
    net, left, right = pair()
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert left.terminate("s2s", now=1.0) == 1
    net.run(now=1.0)
    assert len(net.of(LEFT, ChildSaDown)) == 1 and len(net.of(RIGHT, ChildSaDown)) == 1
    assert len(net.of(LEFT, IkeSaDown)) == 1 and len(net.of(RIGHT, IkeSaDown)) == 1
    assert left.sas == {} and right.sas == {}


def test_initiating_twice_keeps_one_ike_sa():
    net, left, _right = pair()
    first = left.initiate("s2s", None, now=0.0)
    second = left.initiate("s2s", None, now=0.0)
    net.run()
    assert first == second and len(left.sas) == 1


def test_garbage_and_truncated_messages_are_counted_not_fatal():
    net, left, right = pair()
    left.initiate("s2s", None, now=0.0)
    net.run()
    for junk in (b"", b"\x00" * 27, b"\xff" * 100, net.wire[2].data[:-5]):
        right.receive(junk, (RIGHT, 500), (LEFT, 500), 1.0)
    assert right.counters["invalid_messages"] >= 3
    assert len(right.sas) == 1


def test_nat_keepalives_only_from_the_side_behind_the_nat():
    from pyike.ike.events import SendKeepalive

    net, left, right = pair(left_kw={"force_encap": True})
    left.initiate("s2s", None, now=0.0)
    net.run()
    # force_encap fakes our own NAT detection hash: the *peer* believes we are behind a NAT, and we
    # send no keepalives; neither does the peer, which is not behind one.
    left.tick(25.0)
    right.tick(25.0)
    net.run(now=25.0)
    assert not net.of(LEFT, SendKeepalive) and not net.of(RIGHT, SendKeepalive)
    sa = next(iter(left.sas.values()))
    sa.local_behind_nat = True
    sa.next_keepalive_at = 30.0
    assert left.next_deadline() == 30.0
    left.tick(30.0)
    net.run(now=30.0)
    (keepalive,) = net.of(LEFT, SendKeepalive)
    assert keepalive.remote == (RIGHT, NATT_PORT) and left.next_deadline() == 50.0
