"""Driving two in-process engines message by message, and forging what a hostile peer would send.

A forged message is a real one of the exchange, decrypted with the receiver's keys, changed, and
protected again with the sender's keys: it passes the integrity check and reaches the exchange's
logic, as a message from an authenticated (or half-open) peer would.
"""

from __future__ import annotations

from pyike.ike.events import SendDatagram
from pyike.wire.message import decode_message


def datagrams(engine):
    """The datagrams `engine` wants to send; its other events stay queued."""
    events = engine.events
    out = [e for e in events if isinstance(e, SendDatagram)]
    engine.events = [e for e in events if not isinstance(e, SendDatagram)]
    return out


def deliver(engine, sent, now=0.0, source=None):
    """Hand datagrams to `engine` as if they crossed the network (optionally from another source)."""
    for event in sent:
        engine.receive(event.data, event.remote, source or event.local, now)


def only_sa(engine):
    (sa,) = engine.sas.values()
    return sa


def half_open(left, right, now=0.0):
    """IKE_SA_INIT done: returns the initiator's IKE_AUTH request datagrams, not yet delivered."""
    left.initiate("s2s", None, now)
    deliver(right, datagrams(left), now)
    deliver(left, datagrams(right), now)
    return datagrams(left)


def established(left, right, now=0.0):
    deliver(right, half_open(left, right, now), now)
    deliver(left, datagrams(right), now)
    return only_sa(left), only_sa(right)


def open_request(receiver_sa, datagram):
    """(message, inner payloads) of an unfragmented SK request, opened with the receiver's keys."""
    message = decode_message(datagram.data)
    return message, receiver_sa.unprotect(message)


def forge(sender_sa, message, payloads, exchange=None, message_id=None):
    """`payloads` protected with the sender's keys under `message`'s header (or another exchange/id)."""
    header = message.header
    return protected(
        sender_sa,
        header.exchange if exchange is None else exchange,
        header.message_id if message_id is None else message_id,
        payloads,
        header.response,
    )


def protected(sender_sa, exchange, message_id, payloads, response=False):
    """A message of the sender's IKE SA with these inner payloads, as the datagrams it would send."""
    data = sender_sa.protect(exchange, message_id, response, payloads)
    return [
        SendDatagram(
            piece, (sender_sa.local[0], sender_sa.local[1]), (sender_sa.remote[0], sender_sa.remote[1])
        )
        for piece in data
    ]
