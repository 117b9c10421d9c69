"""IKE_FOLLOWUP_KE (RFC 9370 §2.2.4): ML-KEM-768 as an additional key exchange in IKE SA rekeys, Child SA
rekeys with PFS and new Child SAs, between two in-process engines (the harness checks after every message
that whatever one side sends the other can receive).

ML-KEM needs cryptography 47+; Debian 12's 38 lacks it, so those tests skip there with that reason and run
under the project's venv. The fallback tests need no ML-KEM and run everywhere.
"""

from __future__ import annotations

import ipaddress
import itertools
import struct

import pytest
from ike_harness import LEFT, RIGHT, pair
from pyike.crypto.keys import child_key_lengths, child_keymat, derive_ike_keys, rekey_skeyseed
from pyike.crypto.proposals import parse_proposals
from pyike.crypto.transforms import available_ke_groups
from pyike.esp import InboundSA, OutboundSA, make_cipher
from pyike.ids import DhId, ExchangeType, IntegId, NotifyType, PayloadType, ProtocolId
from pyike.ike.events import ChildSaUp, Failure, IkeSaUp
from pyike.ike.policy import ChildPolicy
from pyike.ike.sa import ESTABLISHED, INSTALLED
from pyike.ike.tasks.followup_ke import FOLLOWUP_TIMEOUT
from pyike.selectors import TrafficSelector
from pyike.wire.message import decode_message, find_payload

HAS_MLKEM = DhId.ML_KEM_768 in available_ke_groups()
needs_mlkem = pytest.mark.skipif(
    not HAS_MLKEM, reason="the installed cryptography has no ML-KEM-768 (needs 47+; Debian 12 ships 38)"
)

CLASSIC_IKE = "aes256gcm16-prfsha256-x25519"
HYBRID_IKE = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"
CLASSIC_ESP = "aes256gcm16-x25519"
HYBRID_ESP = "aes256gcm16-x25519-ke1_mlkem768"


class _Recorded:
    """A key exchange that notes every shared secret it computes, so tests can recompute the keys."""

    def __init__(self, inner, log):
        self.inner, self.log, self.group = inner, log, inner.group

    def public_bytes(self):
        return self.inner.public_bytes()

    def shared_secret(self, peer):
        secret = self.inner.shared_secret(peer)
        self.log.append((self.group, secret))
        return secret

    def respond(self, peer):
        public, secret = self.inner.respond(peer)
        self.log.append((self.group, secret))
        return public, secret


def record_secrets(engine):
    log, make = [], engine.new_ke
    engine.new_ke = lambda group: _Recorded(make(group), log)
    return log


def established(ike=CLASSIC_IKE, esp=CLASSIC_ESP, right_ike=None, right_esp=None, seed=1):
    net, left, right = pair(
        left_kw={"ike": ike, "esp": esp},
        right_kw={"ike": right_ike or ike, "esp": right_esp or esp},
        seed=seed,
    )
    left.initiate("s2s", None, now=0.0)
    net.run()
    assert len(net.of(LEFT, ChildSaUp)) == 1 and len(net.of(RIGHT, ChildSaUp)) == 1
    net.wire.clear()
    return net, left, right


def ike_sa(engine):
    (sa,) = [sa for sa in engine.sas.values() if sa.state == ESTABLISHED]
    return sa


def children(engine):
    return ike_sa(engine).children


def exchanges(net):
    """The exchange type of every message on the wire; an SKF-fragmented message counts once."""
    kinds = []
    for datagram in net.wire:
        message = decode_message(datagram.data)
        if getattr(message.encrypted, "fragment_number", 1) == 1:
            kinds.append(message.header.exchange)
    return kinds


def fragmented(net, exchange):
    return any(
        getattr(decode_message(d.data).encrypted, "total_fragments", 1) > 1
        for d in net.wire
        if decode_message(d.data).header.exchange == exchange
    )


def advance(net, until, step=None):
    """Run both engines' timers up to `until`, delivering what they send."""
    left, right = net.engines[LEFT], net.engines[RIGHT]
    now = None
    for _round in range(200):
        deadlines = [d for d in (left.next_deadline(), right.next_deadline()) if d is not None and d <= until]
        if not deadlines:
            break
        now = min(deadlines)
        left.tick(now)
        right.tick(now)
        net.run(now=now)
    return now


def _packet(src, dst, payload=b"hello through ML-KEM keys"):
    header = struct.pack(
        "!BBHHHBBH4s4s", 0x45, 0, 20 + len(payload), 1, 0, 64, 17, 0,
        ipaddress.ip_address(src).packed, ipaddress.ip_address(dst).packed,
    )  # fmt: skip
    return header + payload


def esp_pair(sender: ChildSaUp, receiver: ChildSaUp):
    integ = sender.integ_id or IntegId.NONE
    out = OutboundSA(
        sender.spi_out, make_cipher(sender.encr_id, sender.encr_key_out, integ, sender.integ_key_out)
    )
    inbound = InboundSA(
        receiver.spi_in, make_cipher(receiver.encr_id, receiver.encr_key_in, integ, receiver.integ_key_in)
    )
    return out, inbound


def assert_esp_interoperates(left_up: ChildSaUp, right_up: ChildSaUp):
    """ESP SAs built from each side's event carry packets both ways: the two ends derived the same keys."""
    for sender, receiver, src, dst in ((left_up, right_up, "10.1.0.10", "10.2.0.10"),
                                       (right_up, left_up, "10.2.0.10", "10.1.0.10")):  # fmt: skip
        out, inbound = esp_pair(sender, receiver)
        inner = _packet(src, dst)
        assert inbound.decapsulate(out.encapsulate(inner)) == inner


# --- IKE SA rekey ------------------------------------------------------------------------------


@needs_mlkem
@pytest.mark.parametrize("starter", [LEFT, RIGHT])
def test_ike_rekey_keeps_ml_kem_through_ike_followup_ke(starter):
    net, left, right = established(ike=HYBRID_IKE)
    old = ike_sa(left)
    old_sk_d, prf_id = old.keys.sk_d, old.selected.prf
    (child_before,) = children(left)
    engine = net.engines[starter]
    secrets = record_secrets(engine)
    assert engine.rekey_ike("s2s", now=10.0) == 1
    net.run(now=10.0)
    assert (
        exchanges(net)
        == [ExchangeType.CREATE_CHILD_SA] * 2
        + [ExchangeType.IKE_FOLLOWUP_KE] * 2
        + [ExchangeType.INFORMATIONAL] * 2
    )
    assert len(left.sas) == len(right.sas) == 1
    new_left, new_right = ike_sa(left), ike_sa(right)
    assert new_left.spi_i == new_right.spi_i and new_left.spi_r == new_right.spi_r
    assert new_left.keys == new_right.keys  # both ends derived the same seven keys
    assert "ke1_mlkem768" in new_left.proposal_text
    # RFC 9370 §2.2.4: SKEYSEED = prf(SK_d (old), SK(0) | Ni | Nr | SK(1)), SK(1) from ML-KEM.
    assert [group for group, _secret in secrets] == [DhId.CURVE25519, DhId.ML_KEM_768]
    (_group0, sk0), (_group1, sk1) = secrets
    ni, nr = new_left.nonce_i, new_left.nonce_r

    def keys_from(seed):
        return derive_ike_keys(new_left.selected, seed, ni, nr, new_left.spi_i, new_left.spi_r)

    assert new_left.keys == keys_from(rekey_skeyseed(prf_id, old_sk_d, sk0, ni, nr, [sk1]))
    assert new_left.keys != keys_from(rekey_skeyseed(prf_id, old_sk_d, sk0, ni, nr))  # ML-KEM is mixed in
    assert children(left) == [child_before] and engine.counters["followup_ke_completed"] == 1
    assert fragmented(net, ExchangeType.IKE_FOLLOWUP_KE)  # RFC 7383: ML-KEM's 1184-octet key needs SKF
    # The rekeyed IKE SA keeps fragmentation and rekeys with ML-KEM again.
    net.wire.clear()
    engine.rekey_ike("s2s", now=15.0)
    net.run(now=15.0)
    assert ExchangeType.IKE_FOLLOWUP_KE in exchanges(net) and fragmented(net, ExchangeType.IKE_FOLLOWUP_KE)
    assert ike_sa(left).keys == ike_sa(right).keys and ike_sa(left) is not new_left
    # The new IKE SA works: a Child SA rekey over it, with traffic on the result.
    left.rekey_child("s2s", None, now=20.0)
    net.run(now=20.0)
    (up_left,) = [e for e in net.of(LEFT, ChildSaUp) if e.rekey_of is not None]
    (up_right,) = [e for e in net.of(RIGHT, ChildSaUp) if e.rekey_of is not None]
    assert_esp_interoperates(up_left, up_right)


@needs_mlkem
def test_ike_rekey_with_a_peer_that_lacks_ml_kem_falls_back_to_the_classic_proposal():
    net, left, right = established(ike=[HYBRID_IKE, CLASSIC_IKE], right_ike=CLASSIC_IKE)
    for engine in (left, right):
        net.wire.clear()
        engine.rekey_ike("s2s", now=10.0)
        net.run(now=10.0)
        assert ExchangeType.IKE_FOLLOWUP_KE not in exchanges(net)
        assert len(left.sas) == len(right.sas) == 1
        assert ike_sa(left).keys == ike_sa(right).keys
        assert "mlkem" not in ike_sa(left).proposal_text


# --- Child SAs -----------------------------------------------------------------------------------


@needs_mlkem
@pytest.mark.parametrize("starter", [LEFT, RIGHT])
def test_child_rekey_with_pfs_keeps_ml_kem(starter):
    net, left, right = established(esp=HYBRID_ESP)
    (old,) = children(left)
    assert "mlkem" not in old.proposal  # the Child SA of IKE_AUTH has no key exchange at all
    engine = net.engines[starter]
    secrets = record_secrets(engine)
    sk_d, prf_id = ike_sa(left).keys.sk_d, ike_sa(left).selected.prf
    assert engine.rekey_child("s2s", None, now=10.0) == 1
    net.run(now=10.0)
    assert (
        exchanges(net)
        == [ExchangeType.CREATE_CHILD_SA] * 2
        + [ExchangeType.IKE_FOLLOWUP_KE] * 2
        + [ExchangeType.INFORMATIONAL] * 2
    )
    (new_left,), (new_right,) = children(left), children(right)
    assert (new_left.spi_in, new_left.spi_out) == (new_right.spi_out, new_right.spi_in)
    assert new_left.spi_in != old.spi_in and "ke1_mlkem768" in new_left.proposal
    (up_left,) = [e for e in net.of(LEFT, ChildSaUp) if e.rekey_of is not None]
    (up_right,) = [e for e in net.of(RIGHT, ChildSaUp) if e.rekey_of is not None]
    assert_esp_interoperates(up_left, up_right)
    # RFC 9370 §2.2.4: KEYMAT = prf+(SK_d, SK(0) | Ni | Nr | SK(1)).
    assert [group for group, _secret in secrets] == [DhId.CURVE25519, DhId.ML_KEM_768]
    (_group0, sk0), (_group1, sk1) = secrets
    up = up_left if starter == LEFT else up_right
    initiator_encr_key = up.encr_key_out
    lengths = child_key_lengths(up.encr_id, up.key_length, up.integ_id)
    nonces = _create_child_nonces(net, starter)
    hybrid = child_keymat(prf_id, sk_d, *nonces, *lengths, dh_secret=sk0, additional_secrets=[sk1])
    classic = child_keymat(prf_id, sk_d, *nonces, *lengths, dh_secret=sk0)
    assert initiator_encr_key == hybrid.encr_i and hybrid.encr_i != classic.encr_i


def _create_child_nonces(net, starter):
    """[Ni, Nr] of the CREATE_CHILD_SA exchange, decrypted by the end that received each message."""
    other = RIGHT if starter == LEFT else LEFT
    nonces = []
    for datagram in net.wire:
        message = decode_message(datagram.data)
        if message.header.exchange == ExchangeType.CREATE_CHILD_SA:
            reader = ike_sa(net.engines[starter if message.header.response else other])
            nonces.append(find_payload(reader.unprotect(message), PayloadType.NONCE).data)
    return nonces


@needs_mlkem
def test_new_child_sa_with_ml_kem():
    net, left, right = established(esp=HYBRID_ESP)
    for engine, local, remote in (
        (left, "10.1.5.0/24", "10.2.5.0/24"),
        (right, "10.2.5.0/24", "10.1.5.0/24"),
    ):
        engine.policies["s2s"].children["voice"] = ChildPolicy(
            "voice",
            [TrafficSelector.from_network(local)],
            [TrafficSelector.from_network(remote)],
            parse_proposals(HYBRID_ESP, ProtocolId.ESP),
        )
    left.initiate("s2s", "voice", now=1.0)
    net.run(now=1.0)
    assert exchanges(net) == [ExchangeType.CREATE_CHILD_SA] * 2 + [ExchangeType.IKE_FOLLOWUP_KE] * 2
    (up_left,) = [e for e in net.of(LEFT, ChildSaUp) if e.child == "voice"]
    (up_right,) = [e for e in net.of(RIGHT, ChildSaUp) if e.child == "voice"]
    assert "ke1_mlkem768" in up_left.proposal and up_left.outbound and up_right.outbound
    assert_esp_interoperates(up_left, up_right)


@pytest.mark.parametrize("ours", [[HYBRID_ESP, CLASSIC_ESP], HYBRID_ESP + "," + CLASSIC_ESP])
def test_child_rekey_with_a_peer_that_lacks_ml_kem_falls_back(ours):
    """Runs without ML-KEM too: then our hybrid proposal is simply not available on either side."""
    net, left, right = established(esp=ours, right_esp=CLASSIC_ESP)
    for engine in (left, right):
        net.wire.clear()
        engine.rekey_child("s2s", None, now=10.0)
        net.run(now=10.0)
        assert ExchangeType.IKE_FOLLOWUP_KE not in exchanges(net)
        (new_left,), (new_right,) = children(left), children(right)
        assert (new_left.spi_in, new_left.spi_out) == (new_right.spi_out, new_right.spi_in)
        assert "mlkem" not in new_left.proposal and "x25519" in new_left.proposal


# --- errors, timeouts, collisions ----------------------------------------------------------------


@needs_mlkem
def test_unknown_link_gets_state_not_found_and_the_old_child_stays():
    net, left, right = established(esp=HYBRID_ESP)
    (old_left,), (old_right,) = children(left), children(right)

    def forget_link(datagram):
        message = decode_message(datagram.data)
        if message.header.exchange == ExchangeType.IKE_FOLLOWUP_KE and not message.header.response:
            ike_sa(right).tasks.waiting.clear()  # as if the responder had restarted its state
        return False

    net.drop = forget_link
    left.rekey_child("s2s", None, now=10.0)
    net.run(now=10.0)
    assert any("STATE_NOT_FOUND" in f.reason for f in net.of(LEFT, Failure))
    assert right.counters["followup_ke_state_not_found"] == 1
    assert children(left) == [old_left] and children(right) == [old_right]
    assert old_left.state == INSTALLED and old_left.rekey_at is not None  # retried soon
    assert not [e for e in net.of(LEFT, ChildSaUp) + net.of(RIGHT, ChildSaUp) if e.rekey_of is not None]
    net.drop = None
    advance(net, old_left.rekey_at)  # the retry completes
    (new_left,), (new_right,) = children(left), children(right)
    assert new_left.spi_in != old_left.spi_in and (new_left.spi_in, new_left.spi_out) == (
        new_right.spi_out,
        new_right.spi_in,
    )


@needs_mlkem
def test_responder_forgets_a_pending_rekey_that_never_continues():
    net, left, right = established(esp=HYBRID_ESP)
    (old_left,), (old_right,) = children(left), children(right)
    net.drop = lambda d: decode_message(d.data).header.exchange == ExchangeType.IKE_FOLLOWUP_KE
    left.rekey_child("s2s", None, now=10.0)
    net.run(now=10.0)
    assert len(ike_sa(right).tasks.waiting) == 1 and old_right.rekey_at is None  # the peer is rekeying it
    advance(net, 10.0 + FOLLOWUP_TIMEOUT + 0.5)
    assert right.counters["followup_ke_timeouts"] == 1 and not ike_sa(right).tasks.waiting
    assert old_right.state == INSTALLED and old_right.rekey_at is not None  # re-armed on the responder
    net.drop = None
    advance(net, 40.0)  # the initiator's retransmission now meets STATE_NOT_FOUND, then a rekey succeeds
    assert any("STATE_NOT_FOUND" in f.reason for f in net.of(LEFT, Failure))
    (new_left,), (new_right,) = children(left), children(right)
    assert (new_left.spi_in, new_left.spi_out) == (new_right.spi_out, new_right.spi_in)
    assert new_left.spi_in != old_left.spi_in
    assert len(left.sas) == len(right.sas) == 1


@needs_mlkem
@pytest.mark.parametrize("seed", range(6))
def test_simultaneous_child_rekeys_with_ml_kem_keep_exactly_one_pair(seed):
    net, left, right = established(esp=HYBRID_ESP, seed=seed)
    left.rekey_child("s2s", None, now=10.0)
    right.rekey_child("s2s", None, now=10.0)
    net.run(now=10.0)
    advance(net, 10.0 + FOLLOWUP_TIMEOUT + 1)  # the loser's abandoned exchange times out on its responder
    (new_left,), (new_right,) = children(left), children(right)
    assert (new_left.spi_in, new_left.spi_out) == (new_right.spi_out, new_right.spi_in)
    assert "ke1_mlkem768" in new_left.proposal
    assert net.tables[LEFT].outbound["net"] == new_left.spi_out
    assert net.tables[RIGHT].outbound["net"] == new_right.spi_out
    assert set(net.tables[LEFT].inbound) == {new_left.spi_in}
    assert set(net.tables[RIGHT].inbound) == {new_right.spi_in}
    lost = left.counters.get("child_rekey_collisions_lost", 0) + right.counters.get(
        "child_rekey_collisions_lost", 0
    )
    assert lost == 1  # exactly one side stopped before its IKE_FOLLOWUP_KE
    assert ExchangeType.IKE_FOLLOWUP_KE in exchanges(net)
    assert new_left.state == INSTALLED and new_right.state == INSTALLED


@needs_mlkem
def test_simultaneous_ike_rekeys_with_ml_kem_end_with_one_ike_sa():
    net, left, right = established(ike=HYBRID_IKE)
    left.rekey_ike("s2s", now=10.0)
    right.rekey_ike("s2s", now=10.0)
    net.run(now=10.0)
    advance(net, 100.0)
    assert len(left.sas) == len(right.sas) == 1
    assert ike_sa(left).keys == ike_sa(right).keys and "ke1_mlkem768" in ike_sa(left).proposal_text
    assert len(children(left)) == len(children(right)) == 1
    assert len(net.of(LEFT, IkeSaUp)) >= 2


@needs_mlkem
def test_ike_rekey_request_while_child_followups_are_pending_gets_temporary_failure():
    net, left, right = established(ike=HYBRID_IKE, esp=HYBRID_ESP)
    net.drop = lambda d: decode_message(d.data).header.exchange == ExchangeType.IKE_FOLLOWUP_KE
    left.rekey_child("s2s", None, now=10.0)
    net.run(now=10.0)  # right now waits for the IKE_FOLLOWUP_KE that we keep back
    net.drop = None
    net.wire.clear()
    right_sa = ike_sa(right)
    right.rekey_ike("s2s", now=10.5)  # right's own IKE rekey reaches left, whose followups are in flight
    net.run(now=10.5)
    (answer,) = [
        right_sa.unprotect(m)
        for m in map(decode_message, (d.data for d in net.wire))
        if m.header.response and m.header.exchange == ExchangeType.CREATE_CHILD_SA
    ]
    assert [n.notify_type for n in answer] == [NotifyType.TEMPORARY_FAILURE]  # RFC 7296 §2.25
    assert not right_sa.tasks.rekeying_ike() and right_sa.rekey_at is not None  # retried a little later
    assert len(left.sas) == 1 and len(right.sas) == 1
    advance(net, 60.0)  # retransmission finishes the Child SA rekey; the IKE rekey is retried
    assert len(left.sas) == len(right.sas) == 1
    assert ike_sa(left).keys == ike_sa(right).keys
    (new_left,), (new_right,) = children(left), children(right)
    assert (new_left.spi_in, new_left.spi_out) == (new_right.spi_out, new_right.spi_in)
    assert ike_sa(left) is not right_sa and right.counters["ike_rekeys"] == 1


@needs_mlkem
def test_ike_rekey_whose_link_is_unknown_keeps_the_old_ike_sa_and_retries():
    net, left, right = established(ike=HYBRID_IKE)
    old_left, old_right = ike_sa(left), ike_sa(right)

    def forget_link(datagram):
        message = decode_message(datagram.data)
        if message.header.exchange == ExchangeType.IKE_FOLLOWUP_KE and not message.header.response:
            old_right.tasks.waiting.clear()
        return False

    net.drop = forget_link
    left.rekey_ike("s2s", now=10.0)
    net.run(now=10.0)
    assert any("IKE SA rekey" in f.what and "STATE_NOT_FOUND" in f.reason for f in net.of(LEFT, Failure))
    assert left.sas == {old_left.spi_i: old_left} and len(right.sas) == 1  # no new IKE SA on either end
    assert (
        old_left.state == ESTABLISHED and not old_left.tasks.rekeying_ike() and old_left.rekey_at is not None
    )
    net.drop = None
    advance(net, old_left.rekey_at)  # the retry goes through
    assert ike_sa(left) is not old_left and ike_sa(left).keys == ike_sa(right).keys
    assert len(children(left)) == len(children(right)) == 1


@needs_mlkem
def test_a_followup_request_of_the_wrong_method_is_refused_and_both_ends_keep_the_old_child():
    net, left, right = established(esp=HYBRID_ESP)
    (old_left,) = children(left)
    left.impair.add("ke exchange=IKE_FOLLOWUP_KE name=CURVE25519")  # the responder refuses the wrong method
    left.rekey_child("s2s", None, now=10.0)
    net.run(now=10.0)
    assert any("INVALID_SYNTAX" in f.reason for f in net.of(LEFT, Failure))
    assert any("invalid IKE_FOLLOWUP_KE request" in f.reason for f in net.of(RIGHT, Failure))
    assert children(left) == [old_left] and old_left.state == INSTALLED and len(children(right)) == 1
    assert not ike_sa(right).tasks.waiting  # the responder dropped the half-made Child SA at once
    assert children(right)[0].state == INSTALLED and children(right)[0].rekey_at is not None


@needs_mlkem
@pytest.mark.parametrize("seed", range(4))
def test_an_ike_rekey_and_a_child_rekey_started_together_leave_nothing_stuck(seed):
    """Each end may have answered the other's CREATE_CHILD_SA before its own was answered; whatever
    IKE_FOLLOWUP_KE work the IKE SA rekey cuts short is dropped and the Child SA rekeyed again later."""
    net, left, right = established(ike=HYBRID_IKE, esp=HYBRID_ESP, seed=seed)
    left.rekey_ike("s2s", now=10.0)
    right.rekey_child("s2s", None, now=10.0)
    net.run(now=10.0)
    advance(net, 60.0)
    assert len(left.sas) == len(right.sas) == 1
    assert ike_sa(left).keys == ike_sa(right).keys and ike_sa(left).spi_i != b""
    (child_left,), (child_right,) = children(left), children(right)
    assert (child_left.spi_in, child_left.spi_out) == (child_right.spi_out, child_right.spi_in)
    assert child_left.state == child_right.state == INSTALLED
    assert "ke1_mlkem768" in child_left.proposal  # the Child SA rekey happened, before or after
    assert not ike_sa(left).tasks.waiting and not ike_sa(right).tasks.waiting


@pytest.mark.parametrize(
    ("ike", "esp"),
    [
        (CLASSIC_IKE, CLASSIC_ESP),
        pytest.param(HYBRID_IKE, HYBRID_ESP, marks=needs_mlkem),
        pytest.param(HYBRID_IKE, CLASSIC_ESP, marks=needs_mlkem),
        pytest.param(CLASSIC_IKE, HYBRID_ESP, marks=needs_mlkem),
    ],
)
def test_every_mix_of_simultaneous_ike_and_child_rekeys_settles_on_one_consistent_pair(ike, esp):
    """Either end starting an IKE SA rekey, a Child SA rekey, or both, at the same moment: collisions
    (§2.8.1, §2.25) and IKE_FOLLOWUP_KE interleavings must end with one IKE SA and one Child SA pair that
    both dataplanes agree on, nothing stuck half-rekeyed (the harness checks for loss after every message)."""
    operations = {
        "left IKE": lambda left, right: left.rekey_ike("s2s", now=10.0),
        "left child": lambda left, right: left.rekey_child("s2s", None, now=10.0),
        "right IKE": lambda left, right: right.rekey_ike("s2s", now=10.0),
        "right child": lambda left, right: right.rekey_child("s2s", None, now=10.0),
    }
    for seed in range(2):
        for size in range(1, 5):
            for chosen in itertools.combinations(operations, size):
                net, left, right = established(ike=ike, esp=esp, seed=seed)
                (old,) = children(left)
                for name in chosen:
                    operations[name](left, right)
                net.run(now=10.0)
                advance(net, 120.0)
                context = (seed, chosen)
                assert len(left.sas) == len(right.sas) == 1, context
                assert ike_sa(left).keys == ike_sa(right).keys, context
                (child_left,), (child_right,) = children(left), children(right)
                assert (child_left.spi_in, child_left.spi_out) == (child_right.spi_out, child_right.spi_in)
                assert child_left.state == child_right.state == INSTALLED, context
                assert net.tables[LEFT].outbound["net"] == child_left.spi_out, context
                assert set(net.tables[RIGHT].inbound) == {child_right.spi_in}, context
                if any("child" in name for name in chosen):
                    assert child_left.spi_in != old.spi_in, context  # the Child SA rekey did happen
