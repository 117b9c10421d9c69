"""The engine's initiator already retries IKE_SA_INIT with N(COOKIE) (§2.6): our cookies survive it."""

from __future__ import annotations

import random

from pyike.crypto.proposals import parse_proposals
from pyike.ids import ExchangeType, IdType, NotifyType, PayloadType, ProtocolId
from pyike.ike.cookies import CookieJar
from pyike.ike.engine import Engine
from pyike.ike.events import SendDatagram
from pyike.ike.policy import ChildPolicy, IkePolicy
from pyike.selectors import TrafficSelector
from pyike.wire.header import Header
from pyike.wire.message import decode_message, encode_message, find_payload
from pyike.wire.notify import NotifyPayload

LEFT, RIGHT = "192.0.2.1", "198.51.100.1"


def initiator():
    policy = IkePolicy(
        name="s2s",
        local_address=LEFT,
        remote_address=RIGHT,
        local_id=(IdType.ID_FQDN, b"left.example"),
        remote_id=(IdType.ID_FQDN, b"right.example"),
        psk=b"left-right-psk",
        ike_proposals=parse_proposals("aes256gcm16-prfsha256-x25519", ProtocolId.IKE),
        children={
            "net": ChildPolicy(
                "net",
                [TrafficSelector.from_network("10.1.0.0/24")],
                [TrafficSelector.from_network("10.2.0.0/24")],
                parse_proposals("aes256gcm16", ProtocolId.ESP),
            )
        },
    )
    rng = random.Random(5)
    return Engine({"s2s": policy}, random_bytes=lambda n: rng.getrandbits(8 * n).to_bytes(n, "big"))


def test_initiator_retry_carries_a_cookie_that_checks():
    left = initiator()
    left.initiate("s2s", None, now=0.0)
    (first,) = [e for e in left.pop_events() if isinstance(e, SendDatagram)]
    request = decode_message(first.data)
    ni = find_payload(request.payloads, PayloadType.NONCE).data
    jar = CookieJar(lambda n: b"\x5a" * n, 0.0)
    cookie = jar.make(ni, LEFT, request.header.spi_i, 0.0)
    reply = Header(
        spi_i=request.header.spi_i, spi_r=bytes(8), exchange=ExchangeType.IKE_SA_INIT, response=True
    )
    left.receive(
        encode_message(reply, [NotifyPayload(NotifyType.COOKIE, cookie)]), first.local, first.remote, 0.1
    )
    (retry,) = [e for e in left.pop_events() if isinstance(e, SendDatagram)]
    again = decode_message(retry.data)
    head = again.payloads[0]
    assert isinstance(head, NotifyPayload) and head.notify_type == NotifyType.COOKIE  # first (§2.6)
    assert head.data == cookie
    assert again.header.spi_i == request.header.spi_i
    assert find_payload(again.payloads, PayloadType.NONCE).data == ni  # same Ni, so the cookie checks
    assert jar.check(head.data, ni, LEFT, again.header.spi_i, 0.2)
    assert retry.remote[0] == RIGHT
