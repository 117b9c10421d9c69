"""Certificate authentication in IKE_AUTH between two in-process engines (fixed nonces and clocks).

RSA and ECDSA certificates in both roles, RFC 7427 and the classic methods, fragmentation of
large certificate chains (RFC 7383), and every way a peer's certificate can be refused, each with
AUTHENTICATION_FAILED on both ends and its own clear reason.
"""

from __future__ import annotations

import logging
import random

import pytest
from certs_pki import FUTURE, NOW, PAST, Pki, make_cert, name
from cryptography import x509
from hostile import datagrams, deliver, forge, half_open, only_sa, open_request
from pyike.crypto import features
from pyike.crypto.certs import LocalCredential, key_hash
from pyike.crypto.ke import new_key_exchange
from pyike.crypto.proposals import parse_proposals
from pyike.ids import IdType, NotifyType, PayloadType, ProtocolId
from pyike.ike.engine import Engine
from pyike.ike.events import ChildSaUp, Failure, IkeSaUp, SendDatagram
from pyike.ike.impair import Impair
from pyike.ike.policy import ChildPolicy, IkePolicy
from pyike.selectors import TrafficSelector
from pyike.wire.eap import EapPayload
from pyike.wire.encrypted import SkfPayload
from pyike.wire.message import decode_message, find_notifies

LEFT, RIGHT = "192.0.2.1", "198.51.100.1"
WALL = NOW.timestamp()
PRIVATE_SIZES = {31: 32, 19: 31, 14: 32}  # x25519, ecp256, modp2048: private values that are always valid


def fqdn(text):
    return (IdType.ID_FQDN, text.encode())


class Side:
    """One end's PKI: a root and an intermediate CA of its own, and a leaf for ``host``."""

    def __init__(self, family, host, org, **issue):
        self.pki = Pki(family, org=org)
        self.host = host
        san = issue.pop("san", [x509.DNSName(host)])
        self.leaf = make_cert(
            name(host, org), self.pki.leaf_key, self.pki.inter, self.pki.inter_key, san=san, **issue
        )
        self.credential = LocalCredential(self.leaf, self.pki.leaf_key, [self.pki.inter])


def policy(me, peer, trusted, local, remote, nets, *, auth="pubkey", psk=b"", method="signature",
           ike="aes256gcm16-prfsha256-x25519", local_id=None, remote_id=None, name_="s2s"):  # fmt: skip
    return IkePolicy(
        name=name_,
        local_address=local,
        remote_address=remote,
        local_id=local_id or fqdn(me.host),
        remote_id=remote_id if remote_id is not None else fqdn(peer.host),
        psk=psk,
        ike_proposals=parse_proposals(ike, ProtocolId.IKE),
        children={
            "net": ChildPolicy(
                "net",
                [TrafficSelector.from_network(nets[0])],
                [TrafficSelector.from_network(nets[1])],
                parse_proposals("aes256gcm16", ProtocolId.ESP),
            )
        },
        auth=auth,
        credential=me.credential if auth == "pubkey" else None,
        ca_certs=[trusted.pki.root] if auth == "pubkey" else [],
        auth_method=method,
    )


def engine(policies, seed, wall=WALL, impair=()):
    rng = random.Random(seed)

    def random_bytes(n):
        return rng.getrandbits(8 * n).to_bytes(n, "big")

    def key_exchange(group):
        size = PRIVATE_SIZES.get(group)
        return new_key_exchange(group, private_key=random_bytes(size) if size else None)

    return Engine(
        {p.name: p for p in policies},
        random_bytes=random_bytes,
        key_exchange_factory=key_exchange,
        wall_clock=lambda: wall,
        impair=Impair(impair),
    )


class Net:
    def __init__(self, left, right):
        self.engines = {LEFT: left, RIGHT: right}
        self.events = {LEFT: [], RIGHT: []}
        self.wire = []

    def run(self, now=0.0):
        for _round in range(200):
            moved = False
            for ip, eng in self.engines.items():
                for event in eng.pop_events():
                    if isinstance(event, SendDatagram):
                        self.wire.append(event)
                        self.engines[event.remote[0]].receive(event.data, event.remote, event.local, now)
                        moved = True
                    else:
                        self.events[ip].append(event)
            if not moved:
                return self
        raise AssertionError("exchange did not settle")

    def of(self, ip, kind):
        return [e for e in self.events[ip] if isinstance(e, kind)]

    def reasons(self, ip):
        return [f.reason for f in self.of(ip, Failure)]


def connect(left_side, right_side, left_kw=None, right_kw=None, left_impair=(), right_impair=(), wall=WALL):
    """Left initiates to right; each trusts the other's root CA unless told otherwise."""
    left_kw, right_kw = dict(left_kw or {}), dict(right_kw or {})
    left_trust = left_kw.pop("trust", right_side)
    right_trust = right_kw.pop("trust", left_side)
    left = engine(
        [policy(left_side, right_side, left_trust, LEFT, RIGHT, ("10.1.0.0/24", "10.2.0.0/24"), **left_kw)],
        1,
        wall,
        left_impair,
    )
    right = engine(
        [policy(right_side, left_side, right_trust, RIGHT, LEFT, ("10.2.0.0/24", "10.1.0.0/24"), **right_kw)],
        101,
        wall,
        right_impair,
    )
    left.initiate("s2s", None, now=0.0)
    return Net(left, right).run()


def assert_up(net):
    (up_l,), (up_r,) = net.of(LEFT, ChildSaUp), net.of(RIGHT, ChildSaUp)
    assert (up_l.spi_in, up_l.spi_out) == (up_r.spi_out, up_r.spi_in)
    assert up_l.encr_key_out == up_r.encr_key_in
    assert net.reasons(LEFT) == [] and net.reasons(RIGHT) == []
    (left_sa,) = net.engines[LEFT].describe_sas(0.0)
    (right_sa,) = net.engines[RIGHT].describe_sas(0.0)
    assert left_sa["state"] == right_sa["state"] == "ESTABLISHED"
    return left_sa, right_sa


def assert_failed_both_ways(net, where, reason_part):
    """No SA left anywhere; `where` has a Failure containing `reason_part`, the other end a failure too.

    When the initiator rejects the responder, the responder had already answered IKE_AUTH (its IKE
    SA came up) and removes it on the initiator's INFORMATIONAL with AUTHENTICATION_FAILED
    (RFC 7296 §2.21.2); the initiator never brings its SA up.
    """
    assert not net.of(LEFT, IkeSaUp)
    if where == RIGHT:
        assert not net.of(RIGHT, IkeSaUp)
    assert net.engines[LEFT].sas == {} and net.engines[RIGHT].sas == {}
    assert not net.of(LEFT, ChildSaUp)
    other = RIGHT if where == LEFT else LEFT
    reasons = net.reasons(where)
    assert any(reason_part in r and r.startswith("AUTHENTICATION_FAILED") for r in reasons), reasons
    assert any("AUTHENTICATION_FAILED" in r for r in net.reasons(other)), net.reasons(other)
    return next(r for r in reasons if reason_part in r)


def sides(left_family, right_family):
    return (
        Side(left_family, "left.example.org", "left org"),
        Side(right_family, "right.example.org", "right org"),
    )


# -- success -------------------------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("left_family", "right_family", "left_scheme", "right_scheme"),
    [
        ("rsa2048", "p256", "rsa-pss-sha256", "ecdsa-sha256"),
        ("p256", "rsa3072", "ecdsa-sha256", "rsa-pss-sha256"),
        ("p384", "p384", "ecdsa-sha384", "ecdsa-sha384"),
        ("rsa3072", "rsa2048", "rsa-pss-sha256", "rsa-pss-sha256"),
    ],
)
def test_rfc7427_signatures_both_roles(left_family, right_family, left_scheme, right_scheme):
    left_side, right_side = sides(left_family, right_family)
    net = connect(left_side, right_side)
    left_sa, right_sa = assert_up(net)
    # Each end reports how the other authenticated and which certificate it presented.
    assert right_sa["remote_auth"] == "DIGITAL_SIGNATURE " + left_scheme
    assert left_sa["remote_auth"] == "DIGITAL_SIGNATURE " + right_scheme
    assert left_sa["auth"] == right_sa["auth"] == "pubkey"
    assert right_sa["remote_cert"].startswith("CN=left.example.org,O=left org,C=CH")
    assert "Intermediate CA" in right_sa["remote_cert"] and "Root CA" in right_sa["remote_cert"]
    assert left_sa["remote_id"] == "right.example.org"
    # IKE_SA_INIT: both announce hash algorithms, the responder asks for certificates of its CA.
    request, response = (decode_message(d.data) for d in net.wire[:2])
    for message in (request, response):
        assert find_notifies(message.payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS)
    (certreq,) = [p for p in response.payloads if p.payload_type == PayloadType.CERTREQ]
    assert certreq.authority_hashes() == [key_hash(left_side.pki.root)]
    assert not [p for p in request.payloads if p.payload_type == PayloadType.CERTREQ]


def test_psk_connections_keep_their_messages():
    """A PSK connection sends neither the hash notify nor CERTREQ: its IKE_SA_INIT is unchanged."""
    left_side, right_side = sides("p256", "p256")
    net = connect(left_side, right_side, {"auth": "psk", "psk": b"k" * 20}, {"auth": "psk", "psk": b"k" * 20})
    left_sa, right_sa = assert_up(net)
    assert left_sa["auth"] == "psk" and right_sa["remote_auth"] == "SHARED_KEY_MIC"
    assert right_sa["remote_cert"] == ""
    for datagram in net.wire[:2]:
        payloads = decode_message(datagram.data).payloads
        assert not find_notifies(payloads, NotifyType.SIGNATURE_HASH_ALGORITHMS)
        assert not [p for p in payloads if p.payload_type == PayloadType.CERTREQ]


def test_large_rsa_chains_are_fragmented():
    """RSA-3072 leaf + intermediate in IKE_AUTH exceed 1280 octets: RFC 7383 fragments, each ≤ 1280."""
    left_side, right_side = sides("rsa3072", "rsa3072")
    net = connect(left_side, right_side)
    assert_up(net)
    auth_datagrams = [d for d in net.wire[2:] if decode_message(d.data).header.exchange == 35]
    fragments = [d for d in auth_datagrams if isinstance(decode_message(d.data).encrypted, SkfPayload)]
    from_left = [d for d in fragments if d.local[0] == LEFT]
    from_right = [d for d in fragments if d.local[0] == RIGHT]
    assert len(from_left) >= 3 and len(from_right) >= 3
    assert len(fragments) == len(auth_datagrams)
    assert max(len(d.data) for d in fragments) + 28 <= 1280  # IPv4 + UDP headers included


@pytest.mark.skipif(not features.has_mlkem(), reason="the installed cryptography has no ML-KEM (needs 47+)")
def test_certificates_after_ike_intermediate():
    """The signed octets include IntAuth (RFC 9242 §3.3.2) when IKE_INTERMEDIATE ran."""
    left_side, right_side = sides("p256", "rsa2048")
    ike = "aes256gcm16-prfsha256-x25519-ke1_mlkem768"
    net = connect(left_side, right_side, {"ike": ike}, {"ike": ike})
    left_sa, _right_sa = assert_up(net)
    assert "mlkem768" in left_sa["proposal"]


# An RFC 7296-only peer: it never sends N(SIGNATURE_HASH_ALGORITHMS) (RFC 7427 §4).
OLD_PEER = ["omit name=SIGNATURE_HASH_ALGORITHMS"]


def test_ecdsa_falls_back_to_rfc4754_for_an_old_peer():
    left_side, right_side = sides("p256", "p384")
    net = connect(left_side, right_side, right_kw={"method": "classic"}, right_impair=OLD_PEER)
    left_sa, right_sa = assert_up(net)
    assert right_sa["remote_auth"] == "ECDSA_SHA256_P256 ecdsa-sha256"  # we saw no hashes: RFC 4754
    assert left_sa["remote_auth"] == "ECDSA_SHA384_P384 ecdsa-sha384"


def test_rsa_classic_method_for_an_old_peer():
    left_side, right_side = sides("rsa2048", "rsa3072")
    net = connect(left_side, right_side, {"method": "classic"}, {"method": "classic"}, right_impair=OLD_PEER)
    left_sa, right_sa = assert_up(net)
    assert right_sa["remote_auth"] == "RSA_SIG rsa-pkcs1-sha1"
    assert left_sa["remote_auth"] == "RSA_SIG rsa-pkcs1-sha1"


def test_rsa_without_peer_hashes_needs_classic():
    left_side, right_side = sides("rsa2048", "rsa2048")
    net = connect(left_side, right_side, right_kw={"method": "classic"}, right_impair=OLD_PEER)
    (reason,) = net.reasons(LEFT)
    assert reason.startswith("AUTHENTICATION_FAILED: cannot sign with our RSA-2048 certificate for peer")
    assert "announced no SIGNATURE_HASH_ALGORITHMS" in reason and "auth_method: classic" in reason
    # We never sent IKE_AUTH: the responder forgets its half-open SA after the usual timeout.
    assert net.engines[LEFT].sas == {} and not net.of(RIGHT, IkeSaUp)
    net.engines[RIGHT].tick(31.0)
    assert net.engines[RIGHT].sas == {}


def test_classic_rsa_from_the_peer_needs_classic_here_too():
    left_side, right_side = sides("rsa2048", "rsa2048")
    net = connect(left_side, right_side, {"method": "classic"})
    reason = assert_failed_both_ways(net, RIGHT, "AUTH of peer left.example.org (RSA_SIG) rejected")
    assert "SHA-1" in reason and "set auth_method: classic" in reason


# -- failures, each with its own reason ----------------------------------------------------------------------


def test_expired_certificate():
    left_side = Side("p256", "left.example.org", "left org", validity=PAST)
    right_side = Side("rsa2048", "right.example.org", "right org")
    net = connect(left_side, right_side)
    reason = assert_failed_both_ways(net, RIGHT, "certificate of peer left.example.org rejected (expired)")
    assert "expired on 2022-01-01 00:00:00 UTC" in reason and "CN=left.example.org" in reason
    assert any("did not accept our authentication" in r for r in net.reasons(LEFT))


def test_the_responders_certificate_not_yet_valid():
    left_side = Side("p256", "left.example.org", "left org")
    right_side = Side("p256", "right.example.org", "right org", validity=FUTURE)
    net = connect(left_side, right_side)
    reason = assert_failed_both_ways(net, LEFT, "rejected (not_yet_valid)")
    assert "not valid before 2031-01-01" in reason
    assert any("peer rejected our authentication" in r for r in net.reasons(RIGHT))


def test_validity_uses_the_wall_clock_not_the_monotonic_one():
    left_side, right_side = sides("p256", "p256")
    assert_up(connect(left_side, right_side, wall=NOW.timestamp()))
    later = FUTURE[0].timestamp()  # 2031: the leaf certificates ran out at the end of 2029
    net = connect(left_side, right_side, wall=later)
    assert_failed_both_ways(net, RIGHT, "rejected (expired)")


def test_untrusted_ca():
    left_side, right_side = sides("p256", "p256")
    stranger = Side("p256", "x.example.org", "stranger")
    net = connect(left_side, right_side, right_kw={"trust": stranger})
    reason = assert_failed_both_ways(net, RIGHT, "certificate of peer left.example.org rejected (untrusted)")
    assert "no path to a configured CA" in reason or "no acceptable path" in reason


def test_wrong_identity():
    left_side, right_side = sides("rsa2048", "p256")
    moon = fqdn("moon.example.org")
    net = connect(left_side, right_side, {"local_id": moon}, {"remote_id": moon})
    reason = assert_failed_both_ways(net, RIGHT, "rejected (identity_mismatch)")
    assert "ID_FQDN moon.example.org does not match its certificate" in reason
    assert "subjectAltName: dns:left.example.org" in reason


def test_a_chain_the_peer_does_not_complete():
    """Without the intermediate in CERT payloads the path cannot reach the root."""
    left_side, right_side = sides("p256", "p256")
    left_side.credential = LocalCredential(left_side.leaf, left_side.pki.leaf_key, [])
    net = connect(left_side, right_side)
    assert_failed_both_ways(net, RIGHT, "rejected (untrusted)")


def test_psk_against_certificates_fails_clearly():
    left_side, right_side = sides("p256", "p256")
    net = connect(left_side, right_side, {"auth": "psk", "psk": b"p" * 16})
    assert_failed_both_ways(
        net, RIGHT, "peer left.example.org authenticated with a pre-shared key, but connection s2s expects a "
        "certificate (auth: pubkey)"
    )  # fmt: skip
    net = connect(left_side, right_side, right_kw={"auth": "psk", "psk": b"p" * 16})
    assert_failed_both_ways(
        net,
        RIGHT,
        "authenticated with ECDSA_SHA256_P256 (a certificate), but connection s2s uses a pre-shared key",
    )


def test_responder_picks_the_connection_by_peer_id_and_auth():
    """Two connections for the same addresses: IDi and the AUTH method choose the certificate one."""
    left_side, right_side = sides("p256", "rsa2048")
    nets = ("10.2.0.0/24", "10.1.0.0/24")
    psk_conn = policy(right_side, left_side, left_side, RIGHT, LEFT, nets, auth="psk", psk=b"q" * 16,
                      remote_id=fqdn("other.example.org"), name_="a-psk")  # fmt: skip
    any_psk = policy(right_side, left_side, left_side, RIGHT, LEFT, nets, auth="psk", psk=b"q" * 16,
                     remote_id=None, name_="b-any-psk")  # fmt: skip
    any_psk.remote_id = None
    cert_conn = policy(right_side, left_side, left_side, RIGHT, LEFT, nets, name_="c-cert")
    cert_conn.remote_id = None
    right = engine([psk_conn, any_psk, cert_conn], 101)
    left = engine([policy(left_side, right_side, right_side, LEFT, RIGHT, nets[::-1])], 1)
    left.initiate("s2s", None, now=0.0)
    net = Net(left, right).run()
    (up,) = net.of(RIGHT, IkeSaUp)
    assert up.conn == "c-cert"
    assert net.reasons(LEFT) == net.reasons(RIGHT) == []


def test_no_private_key_in_events_or_logs(caplog):
    caplog.set_level(logging.DEBUG, logger="pyike")
    left_side, right_side = sides("rsa2048", "p256")
    good = connect(left_side, right_side)
    expired = connect(Side("rsa2048", "left.example.org", "left org", validity=PAST), right_side)
    texts = [caplog.text]
    for net in (good, expired):
        texts += [repr(e) for events in net.events.values() for e in events]
        texts += [repr(p) for eng in net.engines.values() for p in eng.policies.values()]
    for side_ in (left_side, right_side):
        numbers = side_.pki.leaf_key.private_numbers()
        value = numbers.d if hasattr(numbers, "d") else numbers.private_value
        for text in texts:
            assert str(value) not in text and "%x" % value not in text
    assert any("rejected (expired)" in text for text in texts)
    assert "private key=<hidden>" in repr(left_side.credential)


def test_a_first_ike_auth_without_idi_is_refused():
    """A first IKE_AUTH request with only an EAP payload and no IDi (RFC 7296 §2.16 shape)."""
    left_side, right_side = sides("p256", "p256")
    left = engine([policy(left_side, right_side, right_side, LEFT, RIGHT, ("10.1.0.0/24", "10.2.0.0/24"))], 1)
    right = engine(
        [policy(right_side, left_side, left_side, RIGHT, LEFT, ("10.2.0.0/24", "10.1.0.0/24"))], 101
    )
    left.fragment_size = 65000
    (auth,) = half_open(left, right)
    message, _inner = open_request(only_sa(right), auth)
    deliver(right, forge(only_sa(left), message, [EapPayload(2, 1, 1, b"identity")]))
    deliver(left, datagrams(right))
    net = Net(left, right)
    net.events = {LEFT: left.pop_events(), RIGHT: right.pop_events()}
    assert net.reasons(RIGHT) == ["AUTHENTICATION_FAILED: peer %s sent no IDi" % LEFT]
    assert any("did not accept our authentication" in r for r in net.reasons(LEFT))
    assert left.sas == {} and right.sas == {}


@pytest.mark.parametrize("kind", ["dn", "ipv4", "rfc822"])
def test_other_identity_types(kind):
    """ID_DER_ASN1_DN (the subject, the default without local.id), ID_IPV4_ADDR and ID_RFC822_ADDR
    (subjectAltName iPAddress / rfc822Name) are matched against the certificate (RFC 4945 §3.1)."""
    import ipaddress

    def side(family, host, org, address):
        san = [
            x509.DNSName(host),
            x509.IPAddress(ipaddress.ip_address(address)),
            x509.RFC822Name("vpn@" + host),
        ]
        return Side(family, host, org, san=san)

    left_side = side("p256", "left.example.org", "left org", LEFT)
    right_side = side("rsa2048", "right.example.org", "right org", RIGHT)

    def identity(side_, address):
        if kind == "dn":
            return (IdType.ID_DER_ASN1_DN, side_.leaf.subject.public_bytes())
        if kind == "ipv4":
            return (IdType.ID_IPV4_ADDR, ipaddress.ip_address(address).packed)
        return (IdType.ID_RFC822_ADDR, ("vpn@" + side_.host).encode())

    left_id, right_id = identity(left_side, LEFT), identity(right_side, RIGHT)
    net = connect(
        left_side,
        right_side,
        {"local_id": left_id, "remote_id": right_id},
        {"local_id": right_id, "remote_id": left_id},
    )
    left_sa, right_sa = assert_up(net)
    assert right_sa["remote_cert"].startswith("CN=left.example.org")
    assert left_sa["remote_cert"].startswith("CN=right.example.org")
    # The same identity claimed with a certificate that lacks it is refused.
    stranger_id = identity(Side("p256", "moon.example.org", "left org"), "192.0.2.99")
    net = connect(left_side, right_side, {"local_id": stranger_id}, {"remote_id": stranger_id})
    assert_failed_both_ways(net, RIGHT, "rejected (identity_mismatch)")
