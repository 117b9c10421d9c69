"""Issue 11: every randomness of an exchange (SPIs, nonces, key exchanges, IVs, jitter) comes from the
engine's injected sources, so two runs from the same seeds send byte-identical datagrams.

Certificates are left out: RSA-PSS and ECDSA signatures draw their own randomness inside OpenSSL."""

from __future__ import annotations

import pytest
from ike_harness import LEFT, RIGHT, pair

SCENARIOS = {
    "psk": {},
    "pfs-cbc": {"ike": "aes128-sha256-modp3072", "esp": "aes128-sha256-ecp256"},
    "fragmented": {},
}


def whole_life(kw, fragment_size=None):
    """Setup, a second child, rekeys of both kinds, DPD, reauthentication and the delete; every datagram."""
    net, left, right = pair(left_kw=kw, right_kw=kw)
    if fragment_size:
        left.fragment_size = right.fragment_size = fragment_size
    left.initiate("s2s", None, now=0.0)
    net.run(now=0.0)
    left.rekey_child("s2s", None, now=10.0)
    net.run(now=10.0)
    right.rekey_ike("s2s", now=20.0)
    net.run(now=20.0)
    right.rekey_child("s2s", None, now=30.0)
    net.run(now=30.0)
    left.reauthenticate("s2s", now=40.0)
    net.run(now=40.0)
    for now in (41.0, 42.5, 45.0):  # the reauthenticated IKE SA's drain and DELETE
        left.tick(now)
        right.tick(now)
        net.run(now=now)
    left.terminate("s2s", now=50.0)
    net.run(now=50.0)
    assert left.sas == {} and right.sas == {}
    return [(d.local, d.remote, d.data) for d in net.wire]


@pytest.mark.parametrize("name", sorted(SCENARIOS))
def test_two_runs_from_the_same_seeds_send_the_same_bytes(name):
    size = 300 if name == "fragmented" else None
    first, second = whole_life(SCENARIOS[name], size), whole_life(SCENARIOS[name], size)
    assert len(first) > 20
    assert first == second
    assert {local[0] for local, _remote, _data in first} == {LEFT, RIGHT}
