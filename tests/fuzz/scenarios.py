"""Real exchanges between two in-process engines, recorded so either engine can be rebuilt to the state in
which it received any one of its messages.

Each scenario builds its two engines from a factory (seeded randomness as in ``ike_harness``, a fixed wall
clock for certificates) and drives them with commands, timer ticks and datagram delivery.  The recorder
keeps, per engine, the ordered list of what was done to it (``Action``), and, per delivered message, a
:class:`Target`: the datagrams (every SKF fragment of one message together), the plaintext payload chain,
the header, and a :class:`chain.Sealer` holding the sender's outbound SK keys.  Rebuilding an engine for
a target is: a fresh engine from its factory, then its actions up to the target replayed
(:meth:`Scenario.rebuild`); the peer engine is not needed.

Two things make the replay exact and the corpus the same in every process:

* encrypted datagrams are re-sealed with IVs derived from their position in the scenario before they are
  delivered (``SkCipher.seal`` draws random IVs), so the recorded octets do not vary from run to run;
* key exchanges go through :class:`CachedKe`: the results computed while recording are looked up by
  (group, our public value, peer value) during replays.  That makes ML-KEM encapsulation (random by
  design) repeat itself, and spares replays the Diffie-Hellman arithmetic.
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import struct
from typing import Callable, Dict, List, Optional, Tuple

from pyike.crypto.ke import new_key_exchange
from pyike.crypto.proposals import parse_proposals
from pyike.crypto.sk import sk_ciphers
from pyike.crypto.transforms import available_ke_groups
from pyike.ids import DhId, ExchangeType, IdType, NotifyType, PayloadType, ProtocolId
from pyike.ike.cookies import HalfOpenGuard
from pyike.ike.engine import Engine
from pyike.ike.events import SendDatagram
from pyike.ike.fragments import datagram_overhead, max_fragment_plain
from pyike.ike.policy import ChildPolicy, IkePolicy
from pyike.selectors import TrafficSelector
from pyike.wire.encrypted import SkfPayload
from pyike.wire.errors import WireError
from pyike.wire.header import Header
from pyike.wire.message import decode_message

from .chain import Raw, Sealer, split_chain

LEFT, RIGHT = "192.0.2.1", "198.51.100.1"
ROLE = {LEFT: "initiator", RIGHT: "responder"}  # the role of each engine in the scenario's first IKE SA
# Private values that are always valid (as in ike_harness): X25519, ECP-256, MODP-2048.
PRIVATE_SIZES = {31: 32, 19: 31, 14: 32}
MLKEM = {DhId.ML_KEM_768: 64, DhId.ML_KEM_1024: 64}  # ML-KEM: a 64-octet seed (FIPS 203 d | z)


def has_mlkem() -> bool:
    return DhId.ML_KEM_768 in available_ke_groups()


# --- deterministic key exchanges ------------------------------------------------------------------------


class KeCache:
    """Results of key exchanges computed while recording, for replays; frozen once recording ends."""

    def __init__(self) -> None:
        self.store: Dict[tuple, object] = {}
        self.recording = True


class CachedKe:
    """A key exchange whose results repeat when the same inputs come again (see the module docstring)."""

    def __init__(self, inner, cache: KeCache) -> None:
        self._inner, self._cache = inner, cache
        self.group = inner.group
        self._public: Optional[bytes] = None

    def __getattr__(self, name):
        return getattr(self._inner, name)

    def public_bytes(self) -> bytes:
        if self._public is None:
            self._public = self._inner.public_bytes()
        return self._public

    def _cached(self, method: str, peer: bytes, compute):
        key = (self.group, self.public_bytes(), method, bytes(peer))
        found = self._cache.store.get(key)
        if found is not None:
            return found
        value = compute(peer)
        if self._cache.recording:
            self._cache.store[key] = value
        return value

    def shared_secret(self, peer: bytes) -> bytes:
        return self._cached("shared", peer, self._inner.shared_secret)

    def respond(self, peer: bytes):
        return self._cached("respond", peer, self._inner.respond)


# --- engines ----------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Side:
    """How to build one engine: its policies, seed and engine options."""

    policies: List[IkePolicy]
    seed: int
    fragment_size: int = 1280
    wall: float = 0.0
    guard: Optional[Callable[[], HalfOpenGuard]] = None

    def build(self, cache: KeCache) -> Tuple[Engine, List[int]]:
        """A fresh engine, and a one-item list counting the random octets it has drawn (for fingerprints)."""
        rng = random.Random(self.seed)
        drawn = [0]

        def random_bytes(n):
            drawn[0] += n
            return rng.getrandbits(8 * n).to_bytes(n, "big")

        def key_exchange(group):
            size = PRIVATE_SIZES.get(group) or MLKEM.get(group)
            return CachedKe(new_key_exchange(group, private_key=random_bytes(size) if size else None), cache)

        engine = Engine(
            {p.name: p for p in self.policies},
            random_bytes=random_bytes,
            key_exchange_factory=key_exchange,
            fragment_size=self.fragment_size,
            guard=self.guard() if self.guard else None,
            wall_clock=lambda: self.wall,
        )
        return engine, drawn


def fqdn(name: str):
    return (IdType.ID_FQDN, name.encode())


def psk_policy(local, remote, local_nets, remote_nets, ike, esp, extra_children=(), dpd=0.0, **kw):
    children = {"net": ChildPolicy("net", [TrafficSelector.from_network(local_nets[0])],
                                   [TrafficSelector.from_network(remote_nets[0])], parse_proposals(esp, ProtocolId.ESP))}  # fmt: skip
    for name, lnet, rnet, proposals in extra_children:
        children[name] = ChildPolicy(name, [TrafficSelector.from_network(lnet)], [TrafficSelector.from_network(rnet)],
                                     parse_proposals(proposals, ProtocolId.ESP))  # fmt: skip
    fields = dict(
        name="s2s",
        local_address=local[0],
        remote_address=remote[0],
        local_id=fqdn(local[1]),
        remote_id=fqdn(remote[1]),
        psk=b"left-right-fuzzing-psk",
        ike_proposals=parse_proposals(ike, ProtocolId.IKE),
        children=children,
        dpd_delay=dpd,
    )
    fields.update(kw)
    return IkePolicy(**fields)


def psk_sides(ike="aes256gcm16-prfsha256-x25519", esp="aes256gcm16", right_ike=None, extra_children=(),
              dpd=0.0, seed=1, **side_kw):  # fmt: skip
    left_extra = list(extra_children)
    right_extra = [(n, b, a, p) for n, a, b, p in extra_children]
    left = psk_policy((LEFT, "left.example"), (RIGHT, "right.example"), ["10.1.0.0/24"], ["10.2.0.0/24"],
                      ike, esp, left_extra, dpd)  # fmt: skip
    right = psk_policy((RIGHT, "right.example"), (LEFT, "left.example"), ["10.2.0.0/24"], ["10.1.0.0/24"],
                       right_ike or ike, esp, right_extra, dpd)  # fmt: skip
    right_kw = side_kw.pop("right", {})
    return Side([left], seed, **side_kw), Side([right], seed + 100, **{**side_kw, **right_kw})


def cert_sides(family: str, fragment_size: int = 1280, seed: int = 1):
    """Both ends authenticate with certificates of ``family`` (rsa2048, p256) from their own PKIs."""
    from certs_pki import NOW, Pki, make_cert, name  # the unit tests' PKI (cached keys)
    from cryptography import x509
    from pyike.crypto.certs import LocalCredential

    def credential(host, org):
        pki = Pki(family, org=org)
        leaf = make_cert(name(host, org), pki.leaf_key, pki.inter, pki.inter_key, san=[x509.DNSName(host)])
        return pki, LocalCredential(leaf, pki.leaf_key, [pki.inter])

    left_pki, left_cred = credential("left.example.org", "left org")
    right_pki, right_cred = credential("right.example.org", "right org")

    def policy(local, remote, cred, peer_pki, nets):
        return psk_policy(local, remote, nets[:1], nets[1:], "aes256gcm16-prfsha256-x25519", "aes256gcm16",
                          psk=b"", auth="pubkey", credential=cred, ca_certs=[peer_pki.root])  # fmt: skip

    wall = NOW.timestamp()
    left = policy((LEFT, "left.example.org"), (RIGHT, "right.example.org"), left_cred, right_pki,
                  ["10.1.0.0/24", "10.2.0.0/24"])  # fmt: skip
    right = policy((RIGHT, "right.example.org"), (LEFT, "left.example.org"), right_cred, left_pki,
                   ["10.2.0.0/24", "10.1.0.0/24"])  # fmt: skip
    return (Side([left], seed, fragment_size, wall), Side([right], seed + 100, fragment_size, wall))


# --- recording --------------------------------------------------------------------------------------------


@dataclasses.dataclass
class Target:
    """One recorded message as its receiver got it: the seed of every mutant aimed at it."""

    scenario: Scenario
    receiver: str  # LEFT or RIGHT
    start: int  # index of its first datagram in the receiver's action list
    datagrams: List[bytes]
    local: Tuple[str, int]  # the receiver's address
    remote: Tuple[str, int]  # the sender's
    now: float
    header: Header
    kind: str
    encrypted: bool
    first_inner: int = 0  # plaintext chain (encrypted messages), or the payloads of IKE_SA_INIT
    plain: bytes = b""
    payloads: Optional[List[Raw]] = None
    sealer: Optional[Sealer] = None
    fingerprint: object = None  # the receiver's state before it, to check that replays are exact
    number: int = 0  # position in the corpus

    @property
    def role(self) -> str:
        return ROLE[self.receiver]

    @property
    def name(self) -> str:
        return "%s/%s#%d" % (self.scenario.name, self.role, self.start)

    @property
    def label(self) -> str:
        return "%s: %s" % (self.scenario.name, self.kind)


Action = Tuple  # ("call", method, args) | ("tick", now) | ("recv", data, local, remote, now)


class Scenario:
    """Two engines driven through real exchanges, with everything done to each one recorded."""

    def __init__(self, name: str, left: Side, right: Side) -> None:
        self.name = name
        self.sides = {LEFT: left, RIGHT: right}
        self.caches = {LEFT: KeCache(), RIGHT: KeCache()}
        self.engines: Dict[str, Engine] = {}
        self.drawn: Dict[str, List[int]] = {}
        for ip in (LEFT, RIGHT):
            self.engines[ip], self.drawn[ip] = (
                left.build(self.caches[ip]) if ip == LEFT else right.build(self.caches[ip])
            )
        self.actions: Dict[str, List[Action]] = {LEFT: [], RIGHT: []}
        self.targets: List[Target] = []
        self._labels: Dict[tuple, str] = {}
        self._ivs = 0

    # commands, time, delivery -----------------------------------------------------------------------------
    def call(self, ip: str, method: str, *args):
        self.actions[ip].append(("call", method, args))
        return getattr(self.engines[ip], method)(*args)

    def tick(self, now: float) -> None:
        for ip in (LEFT, RIGHT):
            self.actions[ip].append(("tick", now))
            self.engines[ip].tick(now)

    def advance(self, until: float) -> float:
        """Run both engines' timers up to ``until``, delivering what they send."""
        now = 0.0
        for _round in range(200):
            deadlines = [d for d in (e.next_deadline() for e in self.engines.values()) if d is not None]
            deadlines = [d for d in deadlines if d <= until]
            if not deadlines:
                break
            now = min(deadlines)
            self.tick(now)
            self.run(now)
        return now

    def run(self, now: float, limit: int = 200) -> None:
        from .checks import fingerprint

        for _round in range(limit):
            moved = False
            for ip in (LEFT, RIGHT):
                sends = [e for e in self.engines[ip].pop_events() if isinstance(e, SendDatagram)]
                for group in _messages(sends):
                    moved = True
                    receiver_ip = group[0].remote[0]
                    receiver = self.engines[receiver_ip]
                    target = self._target(receiver_ip, group, now)
                    target.fingerprint = fingerprint(receiver, self.drawn[receiver_ip])
                    for data in target.datagrams:
                        self.actions[receiver_ip].append(("recv", data, target.local, target.remote, now))
                        receiver.receive(data, target.local, target.remote, now)
            if not moved:
                return
        raise AssertionError("%s: the exchange did not settle" % self.name)

    def _target(self, receiver_ip: str, group: List[SendDatagram], now: float) -> Target:
        receiver = self.engines[receiver_ip]
        first = group[0]
        message = decode_message(first.data)
        header = message.header
        target = Target(self, receiver_ip, len(self.actions[receiver_ip]), [e.data for e in group],
                        first.remote, first.local, now, header, "", message.sk_offset is not None)  # fmt: skip
        if not target.encrypted:
            target.first_inner = header.next_payload
            target.plain = first.data[28:]
            target.payloads = split_chain(target.first_inner, target.plain)
        else:
            self._reseal(receiver, target)
        target.kind = self._kind(target)
        self.targets.append(target)
        return target

    def _reseal(self, receiver: Engine, target: Target) -> None:
        """Decrypt with the receiver's keys; re-seal with deterministic IVs (the sender's keys)."""
        header = target.header
        sa = receiver.sas.get(header.spi_r if header.initiator else header.spi_i)
        if sa is None or sa.keys is None:
            return  # nobody can read it: it is delivered as sent
        sender_cipher = sk_ciphers(sa.selected, sa.keys, not sa.initiator)[0]
        pieces, resealed, chunk = [], [], None
        for data in target.datagrams:
            message = decode_message(data)
            prefix = data[: message.aad_end]
            try:
                plain = sa.cipher_in.open(prefix, data[message.aad_end :])
            except Exception:  # not for this SA after all: leave the message alone
                return
            encrypted = message.encrypted
            if isinstance(encrypted, SkfPayload):
                if encrypted.fragment_number == 1:
                    target.first_inner = encrypted.first_inner
                    chunk = len(plain)
            else:
                target.first_inner = encrypted.first_inner
            pieces.append(plain)
            self._ivs += 1
            iv = hashlib.sha256(b"%s/%d" % (self.name.encode(), self._ivs)).digest()[
                : sender_cipher.iv_length
            ]
            resealed.append(prefix + sender_cipher.seal(plain, prefix, iv))
        target.datagrams = resealed
        target.plain = b"".join(pieces)
        target.payloads = split_chain(target.first_inner, target.plain)
        overhead = datagram_overhead(":" in target.local[0], target.local[1] != 500)
        sender = self.engines[target.remote[0]]
        if chunk is None:
            chunk = max_fragment_plain(sender_cipher, sender.fragment_size, overhead)
        target.sealer = Sealer(sender_cipher, chunk)

    def _kind(self, target: Target) -> str:
        """``IKE_AUTH request (SKF x3)``, ``CREATE_CHILD_SA response (rekey child, KE)`` ..."""
        header = target.header
        try:
            exchange = ExchangeType(header.exchange).name
        except ValueError:
            exchange = "exchange %d" % header.exchange
        key = (header.spi_i, header.message_id, header.exchange)
        notes = []
        if header.response:
            notes.append(self._labels.get(key, ""))
        else:
            notes.append(_request_notes(target))
            self._labels[key] = notes[0]
        if len(target.datagrams) > 1:
            notes.append("SKF x%d" % len(target.datagrams))
        if header.response and target.payloads:
            notes += ["N(%s)" % _notify_name(p) for p in target.payloads if p.ptype == PayloadType.NOTIFY
                      and _notify_type(p) < 16384]  # fmt: skip
        text = ", ".join(n for n in notes if n)
        return "%s %s%s" % (
            exchange,
            "response" if header.response else "request",
            " (%s)" % text if text else "",
        )

    # rebuilding --------------------------------------------------------------------------------------------
    def finish(self) -> None:
        for cache in self.caches.values():
            cache.recording = False

    def rebuild(self, target: Target):
        """A fresh receiver engine in the state in which it got ``target`` (and its draw counter)."""
        engine, drawn = self.sides[target.receiver].build(self.caches[target.receiver])
        for action in self.actions[target.receiver][: target.start]:
            if action[0] == "recv":
                engine.receive(action[1], action[2], action[3], action[4])
            elif action[0] == "tick":
                engine.tick(action[1])
            else:
                getattr(engine, action[1])(*action[2])
        engine.pop_events()
        return engine, drawn


def _messages(sends: List[SendDatagram]) -> List[List[SendDatagram]]:
    """Consecutive SKF datagrams of one message (same header) form one group; every other datagram its own."""
    groups: List[List[SendDatagram]] = []
    previous = None
    for event in sends:
        try:
            message = decode_message(event.data)
        except WireError:
            groups.append([event])
            previous = None
            continue
        h = message.header
        key = (h.spi_i, h.spi_r, h.exchange, h.message_id, h.response, event.remote)
        fragment = isinstance(message.encrypted, SkfPayload)
        if fragment and previous == key and message.encrypted.fragment_number > 1:
            groups[-1].append(event)
        else:
            groups.append([event])
        previous = key if fragment else None
    return groups


def _notify_type(payload: Raw) -> int:
    return struct.unpack("!H", payload.body[2:4])[0] if len(payload.body) >= 4 else -1


def _notify_name(payload: Raw) -> str:
    number = _notify_type(payload)
    try:
        return NotifyType(number).name
    except ValueError:
        return str(number)


def _request_notes(target: Target) -> str:
    payloads = target.payloads or []
    types = [p.ptype for p in payloads]
    notifies = [_notify_type(p) for p in payloads if p.ptype == PayloadType.NOTIFY]
    exchange = target.header.exchange
    notes = []
    if exchange == ExchangeType.IKE_SA_INIT and NotifyType.COOKIE in notifies:
        notes.append("with COOKIE")
    if exchange == ExchangeType.CREATE_CHILD_SA:
        sa = next((p for p in payloads if p.ptype == PayloadType.SA), None)
        if sa is not None and len(sa.body) > 5 and sa.body[5] == ProtocolId.IKE:
            notes.append("IKE rekey")
        elif NotifyType.REKEY_SA in notifies:
            notes.append("rekey child")
        else:
            notes.append("new child")
        if PayloadType.KE in types:
            notes.append("KE")
    if exchange == ExchangeType.INFORMATIONAL:
        deletes = [p for p in payloads if p.ptype == PayloadType.DELETE]
        if deletes:
            notes += ["DELETE %s" % ("IKE" if d.body[:1] == b"\x01" else "ESP") for d in deletes]
        elif not payloads:
            notes.append("empty, DPD")
    return ", ".join(notes)


# --- the scenarios ------------------------------------------------------------------------------------------


def _psk_lifecycle() -> Scenario:
    """PSK; a second Child SA; child rekeys with PFS from both ends; IKE rekey; DPD; delete."""
    left, right = psk_sides(
        esp="aes256gcm16-x25519",
        extra_children=[("voice", "10.1.5.0/24", "10.2.5.0/24", "aes128gcm16")],
        dpd=30.0,
    )
    s = Scenario("psk", left, right)
    s.call(LEFT, "initiate", "s2s", "net", 0.0)
    s.run(0.0)
    s.call(LEFT, "initiate", "s2s", "voice", 1.0)
    s.run(1.0)
    s.call(LEFT, "rekey_child", "s2s", "net", 2.0)
    s.run(2.0)
    s.call(RIGHT, "rekey_child", "s2s", "voice", 3.0)
    s.run(3.0)
    s.call(LEFT, "rekey_ike", "s2s", 4.0)
    s.run(4.0)
    s.advance(40.0)  # DPD: an empty INFORMATIONAL after 30 s without traffic
    s.call(RIGHT, "terminate", "s2s", 50.0)
    s.run(50.0)
    return s


def _cbc_ecp() -> Scenario:
    """AES-CBC + HMAC-SHA-256 protection (padding, ICV) and ECP-256; a responder-started IKE rekey."""
    left, right = psk_sides(ike="aes256-sha256-ecp256", esp="aes128-sha256-ecp256", seed=7)
    s = Scenario("cbc-ecp256", left, right)
    s.call(LEFT, "initiate", "s2s", None, 0.0)
    s.run(0.0)
    s.call(LEFT, "rekey_child", "s2s", None, 2.0)
    s.run(2.0)
    s.call(RIGHT, "rekey_ike", "s2s", 3.0)
    s.run(3.0)
    s.call(LEFT, "terminate", "s2s", 5.0)
    s.run(5.0)
    return s


def _retry_init() -> Scenario:
    """INVALID_KE_PAYLOAD (§1.3) then COOKIE (§2.6) before the IKE SA comes up."""
    left, right = psk_sides(ike="aes256gcm16-prfsha256-x25519-ecp256", right_ike="aes256gcm16-prfsha256-ecp256",
                            seed=11, right={"guard": lambda: HalfOpenGuard(cookie_threshold=0)})  # fmt: skip
    s = Scenario("init-retry", left, right)
    s.call(LEFT, "initiate", "s2s", None, 0.0)
    s.run(0.0)
    return s


def _certs(family: str, fragment_size: int) -> Scenario:
    left, right = cert_sides(family, fragment_size, seed=21 if family.startswith("rsa") else 31)
    s = Scenario("%s-cert%s" % (family, "-frag" if fragment_size < 1280 else ""), left, right)
    s.call(LEFT, "initiate", "s2s", None, 0.0)
    s.run(0.0)
    s.call(RIGHT, "rekey_child", "s2s", None, 2.0)
    s.run(2.0)
    s.call(LEFT, "terminate", "s2s", 5.0)
    s.run(5.0)
    return s


def _mlkem() -> Scenario:
    """RFC 9370: ML-KEM-768 as ADDKE1 in IKE_INTERMEDIATE, in child rekeys and IKE rekeys (IKE_FOLLOWUP_KE)."""
    left, right = psk_sides(ike="aes256gcm16-prfsha256-x25519-ke1_mlkem768",
                            esp="aes256gcm16-x25519-ke1_mlkem768", seed=41)  # fmt: skip
    s = Scenario("mlkem", left, right)
    s.call(LEFT, "initiate", "s2s", None, 0.0)
    s.run(0.0)
    s.call(LEFT, "rekey_child", "s2s", None, 2.0)
    s.run(2.0)
    s.call(RIGHT, "rekey_ike", "s2s", 3.0)
    s.run(3.0)
    return s


SCENARIOS = {
    "psk": _psk_lifecycle,
    "cbc-ecp256": _cbc_ecp,
    "init-retry": _retry_init,
    "rsa2048-cert-frag": lambda: _certs("rsa2048", 600),
    "p256-cert": lambda: _certs("p256", 1280),
    "mlkem": _mlkem,
}


def build_corpus(names=None) -> List[Target]:
    """Every scenario (ML-KEM only where cryptography has it), recorded; their targets in a fixed order."""
    targets: List[Target] = []
    for name, make in SCENARIOS.items():
        if names is not None and name not in names:
            continue
        if name == "mlkem" and not has_mlkem():
            continue
        scenario = make()
        scenario.finish()
        targets += scenario.targets
    for number, target in enumerate(targets):
        target.number = number
    return targets
