"""Two sans-I/O engines wired back to back, with a fixed clock and seeded randomness."""

from __future__ import annotations

import random

from pyike.crypto.ke import new_key_exchange
from pyike.crypto.proposals import parse_proposals
from pyike.ids import IdType, ProtocolId
from pyike.ike.engine import Engine
from pyike.ike.events import ChildSaDown, ChildSaOutbound, ChildSaUp, SendDatagram
from pyike.ike.policy import ChildPolicy, IkePolicy
from pyike.selectors import TrafficSelector

LEFT = "192.0.2.1"
RIGHT = "198.51.100.1"


def fqdn(name):
    return (IdType.ID_FQDN, name.encode())


def policy(local, remote, local_net, remote_net, psk=b"left-right-psk", ike="aes256gcm16-prfsha256-x25519",
           esp="aes256gcm16", remote_id=None, name="s2s", force_encap=False):  # fmt: skip
    return IkePolicy(
        name=name,
        local_address=local[0],
        remote_address=remote[0],
        local_id=fqdn(local[1]),
        remote_id=fqdn(remote[1]) if remote_id is None else remote_id,
        psk=psk,
        ike_proposals=parse_proposals(ike, ProtocolId.IKE),
        children={
            "net": ChildPolicy(
                "net",
                [TrafficSelector.from_network(n) for n in local_net],
                [TrafficSelector.from_network(n) for n in remote_net],
                parse_proposals(esp, ProtocolId.ESP),
            )
        },
        force_encap=force_encap,
    )


def pair(left_kw=None, right_kw=None, seed=1):
    left_policy = policy(
        (LEFT, "left.example"), (RIGHT, "right.example"), ["10.1.0.0/24"], ["10.2.0.0/24"], **(left_kw or {})
    )
    right_policy = policy(
        (RIGHT, "right.example"), (LEFT, "left.example"), ["10.2.0.0/24"], ["10.1.0.0/24"], **(right_kw or {})
    )
    rng_left, rng_right = random.Random(seed), random.Random(seed + 100)
    left = _engine(left_policy, rng_left)
    right = _engine(right_policy, rng_right)
    return Net({LEFT: left, RIGHT: right}), left, right


class Net:
    """Delivers SendDatagram events to the engine owning the destination address; keeps the rest."""

    def __init__(self, engines):
        self.engines = engines
        self.events = {ip: [] for ip in engines}
        self.tables = {ip: SaTable() for ip in engines}
        self.wire = []  # every datagram, in order
        self.drop = None  # optional predicate(datagram) -> True to lose it

    def run(self, now=0.0, limit=50):
        for _round in range(limit):
            moved = False
            for ip, engine in self.engines.items():
                for event in engine.pop_events():
                    if isinstance(event, SendDatagram):
                        self.wire.append(event)
                        if self.drop and self.drop(event):
                            continue
                        target = self.engines[event.remote[0]]
                        target.receive(event.data, event.remote, event.local, now)
                        moved = True
                    else:
                        self.events[ip].append(event)
                        self.tables[ip].apply(event)
            self.check_no_loss()
            if not moved:
                return
        raise AssertionError("exchange did not settle")

    def of(self, ip, kind):
        return [e for e in self.events[ip] if isinstance(e, kind)]

    def peer_dies(self, engine, dpd_action="clear", until=200.0):
        """Lose every datagram and tick `engine` (dpd_delay 10 s) until dead peer detection ends its
        IKE SAs; returns the time reached."""
        engine.policies["s2s"].dpd_delay = 10.0
        engine.policies["s2s"].dpd_action = dpd_action
        self.drop = lambda datagram: True
        now = 0.0
        while engine.sas and now < until:
            now = engine.next_deadline()
            engine.tick(now)
            self.run(now=now)
        return now


# Private value sizes that are always valid: raw X25519/X448 scalars, ECP scalars one byte shorter than
# the group order, short MODP exponents.
PRIVATE_SIZES = {31: 32, 32: 56, 19: 31, 20: 47, 21: 65, 14: 32, 15: 32, 16: 32}


def _engine(policy_, rng):
    def random_bytes(n):
        return rng.getrandbits(8 * n).to_bytes(n, "big")

    def key_exchange(group):
        size = PRIVATE_SIZES.get(group)
        return new_key_exchange(group, private_key=random_bytes(size) if size else None)

    return Engine({policy_.name: policy_}, random_bytes=random_bytes, key_exchange_factory=key_exchange)


class SaTable:
    """What a dataplane would hold, driven by the engine's events as the daemon applies them."""

    def __init__(self):
        self.inbound = {}  # spi_in -> (child name, spi_out)
        self.outbound = {}  # child name -> spi_out in use

    def apply(self, event):
        if isinstance(event, ChildSaUp):
            self.inbound[event.spi_in] = (event.child, event.spi_out)
            if event.outbound:
                self.outbound[event.child] = event.spi_out
        elif isinstance(event, ChildSaOutbound):
            self.outbound[event.child] = self.inbound[event.spi_in][1]
        elif isinstance(event, ChildSaDown):
            self.inbound.pop(event.spi_in, None)
            if not event.replaced and self.outbound.get(event.child) == event.spi_out:
                del self.outbound[event.child]


def _assert_receivable(sender, receiver):
    """Once both ends have a child, whatever one sends the other can receive. (A brand-new child may
    briefly be installed on the responder only: nothing flows before the initiator has it too.)"""
    known = {name for name, _spi_out in receiver.inbound.values()}
    for child, spi in sender.outbound.items():
        if child in known:
            assert spi in receiver.inbound, "%s sends on %08x, which the peer cannot receive" % (child, spi)


def check_tables(net):
    (a, b) = list(net.tables.values())
    _assert_receivable(a, b)
    _assert_receivable(b, a)


Net.check_no_loss = check_tables
