"""Issue 10 item 1: a peer's malformed certificate, whatever `cryptography` raises on it, fails IKE_AUTH
as AUTHENTICATION_FAILED with a reason, on both ends, and leaves no SA and no half-open slot behind."""

from __future__ import annotations

import logging

import pytest
from certs_pki import der, key, make_cert, name
from cryptography import x509
from hostile import datagrams, deliver, forge, only_sa, open_request, protected
from pyike.crypto.certs import LocalCredential
from pyike.crypto.proposals import parse_proposals
from pyike.ids import CertEncoding, ExchangeType, NotifyType, ProtocolId
from pyike.ike.events import Failure
from pyike.ike.policy import IkePolicy
from pyike.ike.sa import CONNECTING, ESTABLISHED
from pyike.wire.identity import CertPayload
from pyike.wire.message import decode_message
from pyike.wire.notify import NotifyPayload, VendorIdPayload
from test_engine_certs import LEFT, RIGHT, engine, fqdn, policy, sides


def spoiled(certificate, how):
    """The certificate's DER with one field made invalid, as a peer could send it."""
    data = der(certificate)
    if how == "version":  # v5: cryptography raises InvalidVersion, not a ValueError
        at = data.index(bytes.fromhex("a003020102"))
        return data[:at] + bytes.fromhex("a003020105") + data[at + 5 :]
    if how == "key algorithm":  # an unknown public key algorithm: UnsupportedAlgorithm (or ValueError)
        for oid in ("2a8648ce3d0201", "2a864886f70d010101"):  # id-ecPublicKey, rsaEncryption
            at = data.find(bytes.fromhex(oid))
            if at >= 0:
                return data[:at] + bytes.fromhex(oid)[:-1] + b"\x63" + data[at + len(oid) // 2 :]
    if how == "garbage":
        return data[: len(data) // 2]
    raise AssertionError(how)


def pair(left_side, right_side):
    left = engine([policy(left_side, right_side, right_side, LEFT, RIGHT, ("10.1.0.0/24", "10.2.0.0/24"))], 1)
    right = engine(
        [policy(right_side, left_side, left_side, RIGHT, LEFT, ("10.2.0.0/24", "10.1.0.0/24"))], 101
    )
    for each in (left, right):
        each.fragment_size = 65000  # whole IKE_AUTH messages, which the test opens and forges
    return left, right


def with_certificate(payloads, data):
    cert = next(p for p in payloads if isinstance(p, CertPayload))
    payloads[payloads.index(cert)] = CertPayload(CertEncoding.X509_SIGNATURE, data)
    return payloads


def reasons(engine_):
    return [e.reason for e in engine_.events if isinstance(e, Failure)]


@pytest.mark.parametrize("how", ["version", "key algorithm", "garbage"])
def test_responder_refuses_a_spoiled_certificate_and_frees_the_half_open_slot(how):
    left_side, right_side = sides("p256", "rsa2048")
    left, right = pair(left_side, right_side)
    for attempt in range(8):  # more than the 5 half-open SAs one address may hold
        left.initiate("s2s", None, float(attempt))
        deliver(right, datagrams(left), float(attempt))
        deliver(left, datagrams(right), float(attempt))
        (auth,) = datagrams(left)
        lsa, rsa = only_sa(left), only_sa(right)
        message, inner = open_request(rsa, auth)
        deliver(
            right, forge(lsa, message, with_certificate(inner, spoiled(left_side.leaf, how))), float(attempt)
        )
        answer = datagrams(right)
        (response,) = answer
        assert [
            p.notify_type
            for p in lsa.unprotect(decode_message(response.data))
            if isinstance(p, NotifyPayload)
        ] == [NotifyType.AUTHENTICATION_FAILED]
        assert right.sas == {} and right.half_open == {} and right.guard.total == 0
        (reason,) = reasons(right)[-1:]
        assert reason.startswith("AUTHENTICATION_FAILED: certificate of peer left.example.org rejected"), (
            reason
        )
        left.terminate("s2s", float(attempt))
        datagrams(left)
        left.pop_events()
    assert "handler_errors" not in right.counters


@pytest.mark.parametrize("how", ["version", "key algorithm"])
def test_initiator_refuses_a_spoiled_certificate_instead_of_waiting_forever(how):
    left_side, right_side = sides("rsa2048", "p256")
    left, right = pair(left_side, right_side)
    left.initiate("s2s", None, 0.0)
    deliver(right, datagrams(left))
    deliver(left, datagrams(right))
    deliver(right, datagrams(left))
    (response,) = datagrams(right)
    lsa, rsa = only_sa(left), only_sa(right)
    message = decode_message(response.data)
    inner = lsa.unprotect(message)
    deliver(left, forge(rsa, message, with_certificate(inner, spoiled(right_side.leaf, how))))
    assert left.sas == {}  # it stayed AUTHENTICATING for good, without retransmits or timeout
    assert any(
        r.startswith("AUTHENTICATION_FAILED: certificate of peer right.example.org") for r in reasons(left)
    )


def attacker(number):
    """A peer from its own address that completes IKE_SA_INIT with a wildcard connection of the responder."""
    address = "203.0.%d.%d" % (113 + number // 200, 1 + number % 200)
    pol = IkePolicy(
        name="any",
        local_address=address,
        remote_address=RIGHT,
        local_id=fqdn("a%d.example" % number),
        remote_id=None,
        psk=b"an attacker's pre-shared key",
        ike_proposals=parse_proposals("aes256gcm16-prfsha256-x25519", ProtocolId.IKE),
        children={},
    )
    return engine([pol], 1000 + number)


def test_half_open_peers_holding_fragments_cannot_keep_out_a_legitimate_fragmented_ike_auth():
    """Attackers complete IKE_SA_INIT (from many addresses, cookies included) and send all but the last of
    32 fragments of an IKE_AUTH that never completes, until the responder's reassembly budget is full. A
    legitimate IKE_AUTH, fragmented because of its RSA-3072 certificate chain, still gets through: it used
    to be dropped once their fragments had filled the engine's 2 MB."""
    left_side, right_side = sides("rsa3072", "rsa3072")
    left = engine([policy(left_side, right_side, right_side, LEFT, RIGHT, ("10.1.0.0/24", "10.2.0.0/24"))], 1)
    wildcard = IkePolicy(
        name="any",
        local_address=RIGHT,
        remote_address=None,
        local_id=fqdn("right.example.org"),
        remote_id=None,
        psk=b"an attacker's pre-shared key",
        ike_proposals=parse_proposals("aes256gcm16-prfsha256-x25519", ProtocolId.IKE),
        children={},
    )
    right = engine(
        [policy(right_side, left_side, left_side, RIGHT, LEFT, ("10.2.0.0/24", "10.1.0.0/24")), wildcard], 101
    )
    budget = right.fragment_budget
    for number in range(70):  # 70 x 31 fragments of 1.2 kB: more than the 2 MB budget
        peer = attacker(number)
        peer.initiate("any", None, 1.0)
        sa = only_sa(peer)
        while sa.state == CONNECTING:  # IKE_SA_INIT, with a COOKIE round trip once cookies are demanded
            deliver(right, datagrams(peer), 1.0)
            deliver(peer, datagrams(right), 1.0)
        datagrams(peer)  # its real IKE_AUTH request is never sent
        fragments = protected(
            sa, ExchangeType.IKE_AUTH, 1, [VendorIdPayload(bytes(1100)) for _n in range(34)]
        )
        assert len(fragments) == 32
        deliver(right, fragments[:-1], 1.0)
    assert budget.max_bytes - budget.used < 40_000  # full: what one more attacker would hold
    left.initiate("s2s", None, 2.0)
    while only_sa(left).state == CONNECTING:
        deliver(right, datagrams(left), 2.0)
        deliver(left, datagrams(right), 2.0)
    auth = datagrams(left)
    assert len(auth) >= 3  # fragmented (RFC 7383)
    deliver(right, auth, 2.0)
    deliver(left, datagrams(right), 2.0)
    assert only_sa(left).state == ESTABLISHED
    assert budget.used <= budget.max_bytes


def test_names_in_a_peer_certificate_are_escaped_in_reasons(caplog):
    """The issuer of an untrusted certificate went into the failure reason and the log as RFC 4514 text,
    which keeps newlines: a forged log line (found by `make fuzz`)."""
    left_side, right_side = sides("p256", "p256")
    rogue_key = key("p256", 3)
    rogue_ca = make_cert(name("Rogue\n2026-01-01 pyike.ike WARNING forged", "x"), rogue_key, ca=True)
    left_side.credential = LocalCredential(
        make_cert(
            name("left.example.org", "left org"),
            left_side.pki.leaf_key,
            rogue_ca,
            rogue_key,
            san=[x509.DNSName("left.example.org")],
        ),
        left_side.pki.leaf_key,
        [rogue_ca],
    )
    left, right = pair(left_side, right_side)
    with caplog.at_level(logging.INFO, logger="pyike"):
        left.initiate("s2s", None, 0.0)
        for _round in range(3):
            deliver(right, datagrams(left))
            deliver(left, datagrams(right))
    (reason,) = [r for r in reasons(right) if "untrusted" in r]
    assert "Rogue\\x0a2026" in reason and "\n" not in reason
    assert all("\n" not in record.getMessage() for record in caplog.records)
