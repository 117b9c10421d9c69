"""Fault injection: a switchboard of named impairments (libreswan's `impair` is the model) that tests and
the lab daemon (`settings.impair`, only with the daemon's --allow-impair flag) turn on, so that no test
replaces a method of a live engine.

An impairment is one line, an action and `key=value` words:

    drop exchange=IKE_AUTH message=response nth=1      # lose the first IKE_AUTH response we send
    duplicate exchange=CREATE_CHILD_SA                 # send every CREATE_CHILD_SA message twice
    corrupt exchange=INFORMATIONAL message=request     # flip an octet of each INFORMATIONAL request
    delay exchange=IKE_AUTH message=request seconds=3  # hold our IKE_AUTH requests 3 s (Engine.tick sends them)
    drop direction=receive exchange=IKE_SA_INIT nth=2  # ignore the second IKE_SA_INIT we receive
    raise exchange=CREATE_CHILD_SA message=request     # an exception in the handler of that request
    raise exchange=INFORMATIONAL name=NOTIFY           # ... of INFORMATIONAL messages with a Notify payload
    collide exchange=CREATE_CHILD_SA                   # on the peer's rekey request, start our own first
    limit name=max_child_sas                           # the limit counts as reached (names: Engine.limit)
    omit name=SIGNATURE_HASH_ALGORITHMS                # leave that notify out of what we send (an old peer)
    ke exchange=IKE_FOLLOWUP_KE name=CURVE25519        # our KE payloads there name another method
    corrupt name=int_auth                              # our IntAuth chain (RFC 9242 §3.3.2) goes wrong

`exchange` is an exchange type name (any when absent), `message` request or response (either when
absent), `direction` send (default) or receive, `nth` the Nth matching message only (1-based; every one
when absent).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import List, Optional, Tuple

from ..ids import IKE_HEADER_LEN, DhId, ExchangeType, NotifyType
from ..wire.codec import enum_name
from ..wire.key_exchange import KePayload
from ..wire.notify import NotifyPayload
from ..wire.payload import Payload, payload_name
from .events import SendDatagram

ACTIONS = ("drop", "duplicate", "corrupt", "delay", "raise", "collide", "limit", "omit", "ke")
FLAG_RESPONSE = 0x20  # the R bit of the IKE header's flags (RFC 7296 §3.1)


class ImpairError(ValueError):
    """An impairment line that cannot be read; the message says why."""


class ImpairedFailure(RuntimeError):
    """The exception `raise` makes a handler throw."""


@dataclass
class Fault:
    action: str
    exchange: Optional[str] = None
    message: Optional[str] = None  # "request" | "response" | None
    direction: str = "send"
    nth: int = 0
    seconds: float = 0.0
    name: str = ""
    seen: int = 0

    def matches(self, exchange: str, response: Optional[bool], direction: str = "send") -> bool:
        """Whether a message of this kind is one this fault is for (counting it towards `nth`)."""
        if self.direction != direction or (self.exchange and self.exchange != exchange):
            return False
        if self.message and response is not None and (self.message == "response") != response:
            return False
        self.seen += 1
        return not self.nth or self.seen == self.nth


def parse(line: str) -> Fault:
    words = line.split()
    if not words or words[0] not in ACTIONS:
        raise ImpairError("impairment %r: it starts with one of %s" % (line, ", ".join(ACTIONS)))
    fault = Fault(words[0])
    for word in words[1:]:
        key, sep, value = word.partition("=")
        if not sep or key not in ("exchange", "message", "direction", "nth", "seconds", "name"):
            raise ImpairError("impairment %r: %r is not one of exchange=, message=, direction=, nth=, "
                              "seconds=, name=" % (line, word))  # fmt: skip
        try:
            if key == "exchange":
                fault.exchange = ExchangeType[value].name
            elif key == "message" and value in ("request", "response"):
                fault.message = value
            elif key == "direction" and value in ("send", "receive"):
                fault.direction = value
            elif key == "nth" and int(value) >= 1:
                fault.nth = int(value)
            elif key == "seconds" and float(value) >= 0:
                fault.seconds = float(value)
            elif key == "name" and value:
                if fault.action == "omit":
                    NotifyType[value]
                elif fault.action == "ke":
                    DhId[value]
                fault.name = value
            else:
                raise ValueError(value)
        except (KeyError, ValueError):
            raise ImpairError("impairment %r: %s=%s is not a valid value" % (line, key, value)) from None
    return fault


def _kind(data: bytes) -> Tuple[str, Optional[bool]]:
    """(exchange name, is a response) of an IKE message, from its header."""
    if len(data) < IKE_HEADER_LEN:
        return "", None
    return enum_name(ExchangeType, data[18]), bool(data[19] & FLAG_RESPONSE)


class Impair:
    def __init__(self, lines=()) -> None:
        self.faults: List[Fault] = [parse(line) for line in lines]
        self.held: List[Tuple[float, SendDatagram]] = []  # delayed datagrams and when they go

    def __bool__(self) -> bool:
        return bool(self.faults)

    def add(self, line: str) -> Fault:
        fault = parse(line)
        self.faults.append(fault)
        return fault

    def _firing(self, action: str, exchange: str, response: Optional[bool], direction: str = "send"):
        return [f for f in self.faults if f.action == action and f.matches(exchange, response, direction)]

    # --- messages -----------------------------------------------------------------------------------
    def rewrite(self, exchange: str, response: bool, payloads: List[Payload]) -> List[Payload]:
        """The payloads of a message we build, after `omit` and `ke` impairments."""
        if not self.faults:
            return payloads
        for fault in self._firing("omit", exchange, response):
            payloads = [
                p
                for p in payloads
                if not (isinstance(p, NotifyPayload) and p.notify_type == NotifyType[fault.name])
            ]
        for fault in self._firing("ke", exchange, response):
            payloads = [
                KePayload(DhId[fault.name], p.data) if isinstance(p, KePayload) else p for p in payloads
            ]
        return payloads

    def corrupts(self, name: str) -> bool:
        """Whether the internal value `name` (int_auth) is to go wrong."""
        return any(f.action == "corrupt" and f.name == name for f in self.faults)

    def outgoing(self, event: SendDatagram, now: float) -> List[SendDatagram]:
        """What leaves instead of `event`: nothing, two copies, a corrupted copy, or later (held)."""
        if not self.faults:
            return [event]
        exchange, response = _kind(event.data)
        if self._firing("drop", exchange, response):
            return []
        out = [event]
        if any(not f.name for f in self._firing("corrupt", exchange, response)):
            data = bytearray(event.data)
            data[-1] ^= 0x01
            out = [SendDatagram(bytes(data), event.local, event.remote)]
        if self._firing("duplicate", exchange, response):
            out = out * 2
        delays = self._firing("delay", exchange, response)
        if delays:
            self.held += [(now + delays[0].seconds, e) for e in out]
            return []
        return out

    def incoming(self, data: bytes) -> bool:
        """False when a received message is to be ignored."""
        if not self.faults:
            return True
        exchange, response = _kind(data)
        return not self._firing("drop", exchange, response, "receive")

    def release(self, now: float) -> List[SendDatagram]:
        due = [event for at, event in self.held if at <= now]
        self.held = [(at, event) for at, event in self.held if at > now]
        return due

    def next_deadline(self) -> Optional[float]:
        return min(at for at, _event in self.held) if self.held else None

    # --- handlers, collisions, limits -------------------------------------------------------------
    def maybe_raise(self, message: str, exchange: str, payloads: List[Payload]) -> None:
        """`raise`: an exception in the handler of such a message (with `name=`, only when the message
        carries a payload of that type, e.g. NOTIFY)."""
        if not self.faults:
            return
        names = {payload_name(p.payload_type) for p in payloads}
        for fault in self._firing("raise", exchange, message == "response"):
            if not fault.name or fault.name in names:
                raise ImpairedFailure("impaired: %s %s handler" % (exchange, message))

    def collide(self, exchange: str) -> bool:
        return bool(self.faults) and bool(self._firing("collide", exchange, False))

    def limit(self, name: str, value: int) -> int:
        return 0 if any(f.action == "limit" and f.name == name for f in self.faults) else value
