"""A small XFRM client: tunnel-mode ESP states and policies in the kernel over NETLINK_XFRM.

The messages are pyroute2 message classes (:mod:`.xfrm_msg`, layouts of ``<linux/xfrm.h>``); this
module opens a plain ``AF_NETLINK``/``NETLINK_XFRM`` socket, sends requests with ``NLM_F_ACK`` and
reads the kernel's answers (ACK, error with the extended-ACK message, or a dump).

Why pyroute2's message classes and not ``ip xfrm``: the keys would be command-line arguments of a
child process, readable by every local user in ``/proc/<pid>/cmdline`` for as long as it runs, and
``ip xfrm`` text output is not an API (counters, flags and the ESN window come back as prose that
changes between iproute2 versions). The netlink messages are the kernel's ABI: fixed layouts,
numeric errors with the kernel's own extended-ACK reason, no process per SA. pyroute2 has no XFRM
state/policy API, but its declarative field tables encode and decode these structures in the
versions Debian 12 ships (0.7) and newer (0.9); its socket classes differ between those versions
(0.9 builds on asyncio), so the socket here is the standard library's.

Everything this module installs carries a reqid in :data:`REQID_MIN`..:data:`REQID_MAX`, so that
:meth:`Xfrm.flush_ours` removes our states and policies and nothing else (strongSwan and libreswan
number their reqids from 1 up).

Algorithm names are the kernel crypto API's as the XFRM user API expects them (strongSwan's
kernel-netlink uses the same): AES-GCM-16 ``rfc4106(gcm(aes))`` with the 4-octet salt as the last
octets of the key (RFC 4106 §8.1), ChaCha20-Poly1305 ``rfc7539esp(chacha20,poly1305)`` likewise
(RFC 7634 §2), AES-CBC ``cbc(aes)`` with ``hmac(sha256|sha384|sha512)`` truncated to 128/192/256
bits (RFC 4868 §2.3) or ``hmac(sha1)`` to 96 (RFC 2404).
"""

from __future__ import annotations

import errno
import ipaddress
import os
import socket
import struct
from dataclasses import dataclass, field
from typing import Any, Callable, Dict, List, Optional, Tuple

from ..esp.replay import DEFAULT_WINDOW
from ..ids import EncrId, IntegId
from .udp import SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP
from .xfrm_msg import (
    XFRM_INF,
    XFRM_MODE_TUNNEL,
    XFRM_MSG_ACQUIRE,
    XFRM_MSG_DELPOLICY,
    XFRM_MSG_DELSA,
    XFRM_MSG_EXPIRE,
    XFRM_MSG_GETAE,
    XFRM_MSG_GETPOLICY,
    XFRM_MSG_GETSA,
    XFRM_MSG_NEWAE,
    XFRM_MSG_NEWPOLICY,
    XFRM_MSG_NEWSA,
    XFRM_MSG_UPDPOLICY,
    XFRM_MSG_UPDSA,
    XFRM_POLICY_ALLOW,
    XFRM_POLICY_FWD,
    XFRM_POLICY_IN,
    XFRM_POLICY_OUT,
    XFRM_STATE_AF_UNSPEC,
    XFRM_STATE_ESN,
    XFRMNLGRP_ACQUIRE,
    XFRMNLGRP_EXPIRE,
    blank,
    xfrm_aevent_id,
    xfrm_user_acquire,
    xfrm_user_expire,
    xfrm_userpolicy_id,
    xfrm_userpolicy_info,
    xfrm_usersa_id,
    xfrm_usersa_info,
)

NETLINK_XFRM = 6  # <linux/netlink.h>
NLM_F_REQUEST = 0x1
NLM_F_ACK = 0x4
NLM_F_DUMP = 0x300
NLM_F_CAPPED = 0x100  # in an NLMSG_ERROR: the request was not echoed beyond its header
NLM_F_ACK_TLVS = 0x200  # in an NLMSG_ERROR: extended-ACK attributes follow
NLMSG_ERROR = 2
NLMSG_DONE = 3
NLMSGERR_ATTR_MSG = 1
NETLINK_EXT_ACK = 11  # socket option (SOL_NETLINK)
SOL_NETLINK = 270
IPPROTO_ESP = 50
IP_XFRM_POLICY = 17  # <linux/in.h> socket option (IPPROTO_IP)
IPV6_XFRM_POLICY = 35  # <linux/in6.h> socket option (IPPROTO_IPV6)
REQUEST_TIMEOUT = 5.0  # seconds the kernel may take to answer one request (it answers in microseconds)

# Our reqids ("py" in the high half): every state and policy we install carries one.
REQID_MIN = 0x70790000
REQID_MAX = 0x7079FFFF
PROBE_REQID = REQID_MAX  # never handed to a Child SA (see KernelDataplane's allocator)
PROBE_SPI = 0xFF  # SPIs 1-255 are reserved by IANA (RFC 4303 §2.1): IKE never negotiates one; the probe
# counts down from here, one SPI per throw-away state

# strongSwan kernel_netlink_ipsec.c get_priority(): base of a regular (non-trap) policy
PRIO_BASE = 200000

_MSG_NAMES = {
    XFRM_MSG_NEWSA: "XFRM_MSG_NEWSA",
    XFRM_MSG_UPDSA: "XFRM_MSG_UPDSA",
    XFRM_MSG_DELSA: "XFRM_MSG_DELSA",
    XFRM_MSG_GETSA: "XFRM_MSG_GETSA",
    XFRM_MSG_GETAE: "XFRM_MSG_GETAE",
    XFRM_MSG_NEWPOLICY: "XFRM_MSG_NEWPOLICY",
    XFRM_MSG_UPDPOLICY: "XFRM_MSG_UPDPOLICY",
    XFRM_MSG_DELPOLICY: "XFRM_MSG_DELPOLICY",
    XFRM_MSG_GETPOLICY: "XFRM_MSG_GETPOLICY",
}
DIRECTIONS = {"in": XFRM_POLICY_IN, "out": XFRM_POLICY_OUT, "fwd": XFRM_POLICY_FWD}
# in dumps: XFRM_POLICY_MAX (3) + dir are per-socket policies (IP_XFRM_POLICY, e.g. our IKE sockets' bypass)
_DIRECTION_NAMES = {**{v: k for k, v in DIRECTIONS.items()}, 3: "socket in", 4: "socket out", 5: "socket fwd"}
_HEADER = struct.Struct("=IHHII")  # struct nlmsghdr


class XfrmError(OSError):
    """The kernel refused an XFRM request; str() names the request and the kernel's reason (never a key)."""

    def __str__(self) -> str:
        return str(self.strerror)


def missing(exc: BaseException) -> bool:
    """Is ``exc`` the kernel saying "no such state or policy"? Deleting or reading a state that is not
    there gives ESRCH (xfrm_user.c xfrm_user_state_lookup()), a policy ENOENT: both mean it is gone
    (another flush, an expiry), which a delete can take as done."""
    return isinstance(exc, OSError) and exc.errno in (errno.ENOENT, errno.ESRCH)


# --- algorithms ------------------------------------------------------------------------------
_AEAD_NAMES = {
    EncrId.AES_GCM_16: "rfc4106(gcm(aes))",
    EncrId.CHACHA20_POLY1305: "rfc7539esp(chacha20,poly1305)",
}
_AUTH = {  # name, key bits, truncation bits (RFC 4868 §2.3, RFC 2404 §2)
    IntegId.HMAC_SHA1_96: ("hmac(sha1)", 160, 96),
    IntegId.HMAC_SHA2_256_128: ("hmac(sha256)", 256, 128),
    IntegId.HMAC_SHA2_384_192: ("hmac(sha384)", 384, 192),
    IntegId.HMAC_SHA2_512_256: ("hmac(sha512)", 512, 256),
}


def algorithm_attrs(
    encr_id: int, encr_key: bytes, integ_id: int = 0, integ_key: bytes = b""
) -> List[Tuple[str, Dict]]:
    """The XFRMA_ALG_* attributes of one SA; raises ValueError naming the transform, never the key."""
    encr_key, integ_key = bytes(encr_key), bytes(integ_key)
    if encr_id in _AEAD_NAMES:
        name = EncrId(encr_id).name
        if integ_id:
            raise ValueError("ESP %s: an AEAD transform takes no integrity transform" % name)
        wanted = (36,) if encr_id == EncrId.CHACHA20_POLY1305 else (20, 28, 36)
        if len(encr_key) not in wanted:
            raise ValueError(
                "ESP %s: key material (key + 4-octet salt) must be %s octets, got %d"
                % (name, " or ".join(map(str, wanted)), len(encr_key))
            )
        return [
            (
                "XFRMA_ALG_AEAD",
                {
                    "alg_name": _AEAD_NAMES[encr_id].encode(),
                    "alg_key_len": len(encr_key) * 8,
                    "alg_icv_len": 128,
                    "alg_key": encr_key,
                },
            )
        ]
    if encr_id == EncrId.AES_CBC:
        if len(encr_key) not in (16, 24, 32):
            raise ValueError("ESP AES_CBC: key must be 16, 24 or 32 octets, got %d" % len(encr_key))
        if integ_id not in _AUTH:
            raise ValueError("ESP AES_CBC: needs HMAC-SHA1/SHA2 integrity, got transform %s" % integ_id)
        auth, bits, trunc = _AUTH[IntegId(integ_id)]
        if len(integ_key) * 8 != bits:
            raise ValueError("ESP %s: key must be %d octets, got %d" % (auth, bits // 8, len(integ_key)))
        return [
            (
                "XFRMA_ALG_CRYPT",
                {"alg_name": b"cbc(aes)", "alg_key_len": len(encr_key) * 8, "alg_key": encr_key},
            ),
            (
                "XFRMA_ALG_AUTH_TRUNC",
                {
                    "alg_name": auth.encode(),
                    "alg_key_len": bits,
                    "alg_trunc_len": trunc,
                    "alg_key": integ_key,
                },
            ),
        ]
    raise ValueError("ESP transform %s has no kernel (XFRM) equivalent here" % encr_id)


# --- what we install -------------------------------------------------------------------------
@dataclass
class Selector:
    """One XFRM selector (``struct xfrm_selector``): source and destination prefix, protocol, ports."""

    src: str  # "10.1.0.0/16"
    dst: str
    proto: int = 0
    sport: int = 0
    sport_mask: int = 0
    dport: int = 0
    dport_mask: int = 0
    # the XFRM interface (route-based tunnels) whose traffic the policy takes; 0: none. Not in struct
    # xfrm_selector, but the kernel knows a policy by it too (XFRMA_IF_ID), so it is part of its name here
    if_id: int = 0

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.src else socket.AF_INET

    def fields(self) -> Dict[str, Any]:
        src, dst = ipaddress.ip_network(self.src), ipaddress.ip_network(self.dst)
        if src.version != dst.version:
            raise ValueError("selector %s -> %s mixes IPv4 and IPv6" % (self.src, self.dst))
        return {
            "sel_daddr": _addr(dst.network_address),
            "sel_saddr": _addr(src.network_address),
            "sel_dport": self.dport,
            "sel_dport_mask": self.dport_mask,
            "sel_sport": self.sport,
            "sel_sport_mask": self.sport_mask,
            "sel_family": self.family,
            "sel_prefixlen_d": dst.prefixlen,
            "sel_prefixlen_s": src.prefixlen,
            "sel_proto": self.proto,
        }

    def reversed(self) -> Selector:
        """The selector of the packets coming back (source and destination swapped, ports too)."""
        return Selector(
            self.dst,
            self.src,
            self.proto,
            self.dport,
            self.dport_mask,
            self.sport,
            self.sport_mask,
            self.if_id,
        )

    def priority(self) -> int:
        """strongSwan's priority of a regular policy (kernel_netlink_ipsec.c get_priority(),
        POLICY_PRIORITY_DEFAULT, no interface): the kernel picks the lowest value, so every prefix bit,
        a protocol and every port-mask bit make a policy win over a wider one."""
        src, dst = ipaddress.ip_network(self.src), ipaddress.ip_network(self.dst)
        priority = 2 * PRIO_BASE
        priority -= (src.prefixlen + dst.prefixlen) * 512
        priority -= 256 if self.proto else 0
        priority -= (_mask_bits(self.sport_mask) + _mask_bits(self.dport_mask)) * 4
        return priority - 1


@dataclass
class StateSpec:
    """One tunnel-mode ESP state: ``src`` -> ``dst`` (outer addresses) under ``spi``."""

    src: str
    dst: str
    spi: int
    reqid: int
    encr_id: int
    encr_key: bytes = field(repr=False)
    integ_id: int = 0
    integ_key: bytes = field(default=b"", repr=False)
    esn: bool = False
    replay_window: int = DEFAULT_WINDOW
    encap: Optional[Tuple[int, int]] = None  # (source port, destination port) of ESP in UDP (RFC 3948)
    soft_bytes: int = XFRM_INF
    hard_bytes: int = XFRM_INF
    soft_packets: int = XFRM_INF
    hard_packets: int = XFRM_INF
    soft_seconds: int = 0  # 0: no time limit
    hard_seconds: int = 0
    if_id: int = 0  # the XFRM interface whose traffic it carries (route-based tunnels); 0: none

    @property
    def family(self) -> int:
        return socket.AF_INET6 if ":" in self.dst else socket.AF_INET

    def message(self) -> xfrm_usersa_info:
        """XFRM_MSG_NEWSA/UPDSA body, with attributes in the order iproute2 and strongSwan send them."""
        msg = blank(xfrm_usersa_info)
        # Selector left empty (family 0): in tunnel mode the policies decide which inner packets an SA
        # carries. XFRM_STATE_AF_UNSPEC keeps its family 0; without it the kernel sets the outer family
        # (xfrm_user.c copy_from_user_state()), and xfrm_state_look_at() then skips the state for inner
        # packets of the other family: an IPv6 child over IPv4 (or the reverse) would find no outbound
        # SA. strongSwan sets the flag on every tunnel-mode SA (kernel_netlink_ipsec.c add_sa()).
        flags = XFRM_STATE_AF_UNSPEC
        msg["id_daddr"] = _addr(self.dst)
        msg["id_spi"] = self.spi
        msg["id_proto"] = IPPROTO_ESP
        msg["saddr"] = _addr(self.src)
        msg["lft_soft_byte_limit"] = self.soft_bytes
        msg["lft_hard_byte_limit"] = self.hard_bytes
        msg["lft_soft_packet_limit"] = self.soft_packets
        msg["lft_hard_packet_limit"] = self.hard_packets
        msg["lft_soft_add_expires_seconds"] = self.soft_seconds
        msg["lft_hard_add_expires_seconds"] = self.hard_seconds
        msg["reqid"] = self.reqid
        msg["family"] = self.family
        msg["mode"] = XFRM_MODE_TUNNEL
        attrs = algorithm_attrs(self.encr_id, self.encr_key, self.integ_id, self.integ_key)
        if self.encap is not None:
            attrs.append(
                (
                    "XFRMA_ENCAP",
                    {
                        "encap_type": UDP_ENCAP_ESPINUDP,
                        "encap_sport": self.encap[0],
                        "encap_dport": self.encap[1],
                        "encap_oa": bytes(16),
                    },
                )
            )
        if self.esn or self.replay_window > 32:
            # a window wider than the 32-bit legacy bitmap, or ESN, needs XFRMA_REPLAY_ESN_VAL
            # (and xfrm_usersa_info.replay_window 0: the kernel refuses both, xfrm_user.c verify_replay())
            if not 0 < self.replay_window <= 4096:
                raise ValueError("replay window %d is outside the kernel's 1-4096" % self.replay_window)
            words = (self.replay_window + 31) // 32
            # without the bitmap, as iproute2 sends it: the kernel allocates a zeroed one
            # (xfrm_user.c xfrm_alloc_replay_state_esn() accepts the bare struct)
            attrs.append(("XFRMA_REPLAY_ESN_VAL", {"bmp_len": words, "replay_window": self.replay_window}))
            if self.esn:
                flags |= XFRM_STATE_ESN
        else:
            msg["replay_window"] = self.replay_window
        if self.if_id:
            attrs.append(("XFRMA_IF_ID", self.if_id))
        msg["flags"] = flags
        msg["attrs"] = attrs
        return msg


@dataclass
class PolicySpec:
    """One policy: packets matching ``selector`` in ``direction`` go through (or came through) the
    tunnel-mode ESP SA between ``tmpl_src`` and ``tmpl_dst`` with ``reqid``."""

    selector: Selector
    direction: str  # "in", "out" or "fwd"
    tmpl_src: str
    tmpl_dst: str
    reqid: int
    priority: Optional[int] = None  # default: Selector.priority()
    spi: int = 0  # out policies: the SA to use (the kernel picks states by the template's SPI if set)

    def message(self) -> xfrm_userpolicy_info:
        msg = blank(xfrm_userpolicy_info)
        for name, value in self.selector.fields().items():
            msg[name] = value
        for name in ("soft_byte_limit", "hard_byte_limit", "soft_packet_limit", "hard_packet_limit"):
            msg["lft_" + name] = XFRM_INF
        msg["priority"] = self.selector.priority() if self.priority is None else self.priority
        msg["dir"] = DIRECTIONS[self.direction]
        msg["action"] = XFRM_POLICY_ALLOW
        family = socket.AF_INET6 if ":" in self.tmpl_dst else socket.AF_INET
        tmpl = {
            "id_daddr": _addr(self.tmpl_dst),
            "id_spi": self.spi,
            "id_proto": IPPROTO_ESP,
            "family": family,
            "saddr": _addr(self.tmpl_src),
            "reqid": self.reqid,
            "mode": XFRM_MODE_TUNNEL,
            "aalgos": 0xFFFFFFFF,
            "ealgos": 0xFFFFFFFF,
            "calgos": 0xFFFFFFFF,
        }
        msg["attrs"] = [("XFRMA_TMPL", tmpl)]
        if self.selector.if_id:
            msg["attrs"].append(("XFRMA_IF_ID", self.selector.if_id))
        return msg


@dataclass
class StateInfo:
    """A state as the kernel reports it (XFRM_MSG_GETSA or a dump): identity, algorithms, counters."""

    src: str
    dst: str
    spi: int
    reqid: int
    algorithms: List[str]
    esn: bool
    encap: Optional[Tuple[int, int]]
    bytes: int
    packets: int
    add_time: int
    use_time: int
    replay_window: int
    replay_errors: int
    integrity_failed: int

    def as_dict(self) -> Dict[str, Any]:
        return dict(self.__dict__)


@dataclass
class SaCounters:
    """What XFRM_MSG_GETAE reports of a state: its lifetime counters and its outbound sequence number
    (64 bits with ESN)."""

    bytes: int
    packets: int
    oseq: int


@dataclass
class PolicyInfo:
    src: str
    dst: str
    direction: str
    priority: int
    reqid: Optional[int]
    tmpl_src: Optional[str]
    tmpl_dst: Optional[str]
    fields: Dict[str, Any] = field(repr=False, default_factory=dict)


# --- the client ------------------------------------------------------------------------------
class Xfrm:
    """Blocking requests on one NETLINK_XFRM socket (each answered by the kernel in microseconds).

    Every failure of a request is an :class:`XfrmError` naming the request: the kernel's refusal, a
    socket error (ENOBUFS on an overrun socket), no answer within ``timeout`` seconds (ETIMEDOUT:
    a stuck kernel must not block the daemon's event loop for ever) or an answer that does not decode
    (EPROTO)."""

    def __init__(self, timeout: float = REQUEST_TIMEOUT) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_XFRM)
        try:
            try:
                self._sock.setsockopt(SOL_NETLINK, NETLINK_EXT_ACK, 1)
            except OSError:  # kernels before 4.12: errors without the kernel's text
                pass
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._sock.bind((0, 0))
            self._sock.settimeout(timeout)
        except OSError:
            self._sock.close()
            raise
        self.timeout = timeout
        self._seq = int.from_bytes(os.urandom(2), "big")

    def close(self) -> None:
        self._sock.close()

    def __enter__(self) -> Xfrm:
        return self

    def __exit__(self, *exc_info: Any) -> None:
        self.close()

    # states
    def add_state(self, spec: StateSpec, update: bool = False) -> None:
        # the message type decides: NEWSA refuses an existing state, UPDSA a missing one (no NLM_F_* needed)
        msg_type = XFRM_MSG_UPDSA if update else XFRM_MSG_NEWSA
        self.request(msg_type, spec.message(), what="esp SPI %08x to %s" % (spec.spi, spec.dst))

    def delete_state(self, dst: str, spi: int, src: Optional[str] = None) -> None:
        self.request(XFRM_MSG_DELSA, sa_id(dst, spi, src), what="esp SPI %08x to %s" % (spi, dst))

    def get_state(self, dst: str, spi: int, src: Optional[str] = None) -> StateInfo:
        replies = self.request(
            XFRM_MSG_GETSA, sa_id(dst, spi, src), ack=False, what="esp SPI %08x to %s" % (spi, dst)
        )
        for msg_type, data in replies:
            if msg_type == XFRM_MSG_NEWSA:
                return _decoded(_state_info, data, "XFRM_MSG_GETSA esp SPI %08x to %s" % (spi, dst))
        raise XfrmError(
            errno.ENOENT, "XFRM_MSG_GETSA esp SPI %08x to %s: no state in the answer" % (spi, dst)
        )

    def counters(self, dst: str, spi: int, src: str) -> SaCounters:
        """Bytes, packets and the last sequence number sent of a state (XFRM_MSG_GETAE): unlike GETSA,
        the answer carries no key, so polling the counters brings no key material back into Python."""
        what = "esp SPI %08x to %s" % (spi, dst)
        msg = blank(xfrm_aevent_id)
        msg["daddr"], msg["spi"], msg["proto"] = _addr(dst), spi, IPPROTO_ESP
        msg["family"] = socket.AF_INET6 if ":" in dst else socket.AF_INET
        msg["saddr"] = _addr(src)
        for msg_type, data in self.request(XFRM_MSG_GETAE, msg, ack=False, what=what):
            if msg_type == XFRM_MSG_NEWAE:
                return _decoded(_sa_counters, data, "XFRM_MSG_GETAE " + what)
        raise XfrmError(errno.ENOENT, "XFRM_MSG_GETAE %s: no counters in the answer" % what)

    def states(self) -> List[StateInfo]:
        replies = self.request(XFRM_MSG_GETSA, blank(xfrm_usersa_id), NLM_F_DUMP, ack=False, what="dump")
        return [
            _decoded(_state_info, data, "XFRM_MSG_GETSA dump")
            for msg_type, data in replies
            if msg_type == XFRM_MSG_NEWSA
        ]

    # policies
    def add_policy(self, spec: PolicySpec, update: bool = False) -> None:
        msg_type = XFRM_MSG_UPDPOLICY if update else XFRM_MSG_NEWPOLICY
        sel = spec.selector
        self.request(msg_type, spec.message(), what="%s %s -> %s" % (spec.direction, sel.src, sel.dst))

    def delete_policy(self, selector: Selector, direction: str) -> None:
        self.request(
            XFRM_MSG_DELPOLICY,
            policy_id(selector, direction),
            what="%s %s -> %s" % (direction, selector.src, selector.dst),
        )

    def policies(self) -> List[PolicyInfo]:
        replies = self.request(
            XFRM_MSG_GETPOLICY, blank(xfrm_userpolicy_id), NLM_F_DUMP, ack=False, what="dump"
        )
        return [
            _decoded(_policy_info, data, "XFRM_MSG_GETPOLICY dump")
            for msg_type, data in replies
            if msg_type == XFRM_MSG_NEWPOLICY
        ]

    def flush_ours(self, reqid_min: int = REQID_MIN, reqid_max: int = REQID_MAX) -> Tuple[int, int]:
        """Delete every state and policy whose reqid is ours; returns (states, policies) deleted.
        Never XFRM_MSG_FLUSHSA/FLUSHPOLICY: those would take other daemons' SAs with them.

        What is gone meanwhile (:func:`missing`) counts as deleted. States with SPI 0 are skipped: those
        are the kernel's larval ACQUIRE states (an out policy of ours met no SA), which are not in the
        by-SPI table, so DELSA cannot name them (ESRCH), and which expire by themselves
        (net.core.xfrm_acq_expires, 30 s); with our policies gone no new one appears."""
        states = policies = 0
        for info in self.policies():
            if info.reqid is not None and reqid_min <= info.reqid <= reqid_max:
                sel = Selector(info.src, info.dst, **{k: info.fields[k] for k in _KEY_FIELDS})
                _unless_missing(self.delete_policy, sel, info.direction)
                policies += 1
        for state in self.states():
            if reqid_min <= state.reqid <= reqid_max and state.spi != 0:
                _unless_missing(self.delete_state, state.dst, state.spi, state.src)
                states += 1
        return states, policies

    # the wire
    def request(
        self, msg_type: int, msg: Any, flags: int = 0, ack: bool = True, what: str = ""
    ) -> List[Tuple[int, bytes]]:
        """Send one request; returns the (type, message) answers; raises XfrmError on an error."""
        self._seq = (self._seq + 1) & 0xFFFFFFFF
        seq = self._seq
        data = encode(msg_type, msg, NLM_F_REQUEST | (NLM_F_ACK if ack else 0) | flags, seq)
        name = _MSG_NAMES.get(msg_type, "XFRM message %d" % msg_type)
        try:
            self._sock.send(data)
        except OSError as exc:
            raise _socket_error(exc, "%s %s" % (name, what), "send", self.timeout) from None
        finally:
            del data
        try:
            return self._answers(seq, name, what, dump=bool(flags & NLM_F_DUMP), ack=ack)
        except XfrmError:
            raise
        except OSError as exc:
            raise _socket_error(exc, "%s %s" % (name, what), "receive the answer", self.timeout) from None
        except (struct.error, ValueError, IndexError) as exc:
            raise XfrmError(errno.EPROTO, "%s %s: malformed netlink answer: %s" % (name, what, exc)) from None

    def _answers(self, seq: int, name: str, what: str, dump: bool, ack: bool) -> List[Tuple[int, bytes]]:
        answers: List[Tuple[int, bytes]] = []
        while True:
            buf = self._sock.recv(1 << 20)
            offset = 0
            while offset + _HEADER.size <= len(buf):
                length, rtype, rflags, rseq, _pid = _HEADER.unpack_from(buf, offset)
                if length < _HEADER.size:
                    raise XfrmError(errno.EPROTO, "%s %s: malformed netlink answer" % (name, what))
                chunk = buf[offset : offset + length]
                offset += (length + 3) & ~3
                if rseq != seq:
                    continue  # a stale answer to an earlier request
                if rtype == NLMSG_ERROR:
                    code = -struct.unpack_from("i", chunk, 16)[0]
                    if code == 0:
                        return answers
                    raise XfrmError(
                        code,
                        "%s %s: %s (errno %d)"
                        % (name, what, _ext_ack(chunk, rflags) or os.strerror(code), code),
                    )
                if rtype == NLMSG_DONE:
                    return answers
                answers.append((rtype, chunk))
                if not dump and not ack:
                    return answers


def _socket_error(exc: OSError, request: str, doing: str, timeout: float) -> XfrmError:
    """An OSError of the netlink socket as an XfrmError that names the request."""
    if isinstance(exc, socket.timeout):  # TimeoutError from Python 3.10; its errno is None
        code = errno.ETIMEDOUT
        return XfrmError(
            code, "%s: no answer from the kernel within %g s (errno %d)" % (request, timeout, code)
        )
    code = exc.errno or errno.EIO
    return XfrmError(
        code, "%s: cannot %s: %s (errno %d)" % (request, doing, exc.strerror or os.strerror(code), code)
    )


def _decoded(decode: Callable[[bytes], Any], data: bytes, what: str) -> Any:
    """``decode(data)``; an answer pyroute2 cannot decode is an XfrmError (EPROTO) naming the request."""
    try:
        return decode(data)
    except Exception as exc:  # pyroute2 raises struct.error, KeyError, ValueError, ... on a short message
        raise XfrmError(
            errno.EPROTO, "%s: malformed answer: %s (errno %d)" % (what, exc, errno.EPROTO)
        ) from None


def _unless_missing(fn: Callable[..., Any], *args: Any) -> None:
    try:
        fn(*args)
    except XfrmError as exc:
        if not missing(exc):
            raise


def encode(msg_type: int, msg: Any, flags: int, seq: int = 0) -> bytes:
    """The request as it goes to the kernel: nlmsghdr (pid 0: the kernel fills it in) and body."""
    msg["header"]["type"] = msg_type
    msg["header"]["flags"] = flags
    msg["header"]["sequence_number"] = seq
    msg["header"]["pid"] = 0
    msg.encode()
    data = bytes(msg.data)
    msg.data = bytearray()  # the encoded request may hold keys: keep no second copy around
    return data


def policy_id(selector: Selector, direction: str) -> xfrm_userpolicy_id:
    """XFRM_MSG_DELPOLICY/GETPOLICY body: a policy is known by its selector and direction."""
    msg = blank(xfrm_userpolicy_id)
    for name, value in selector.fields().items():
        msg[name] = value
    msg["dir"] = DIRECTIONS[direction]
    if selector.if_id:
        msg["attrs"] = [("XFRMA_IF_ID", selector.if_id)]
    return msg


_PORT_FIELDS = ("proto", "sport", "sport_mask", "dport", "dport_mask")
_KEY_FIELDS = (*_PORT_FIELDS, "if_id")


def _ext_ack(chunk: bytes, flags: int) -> str:
    """The kernel's reason text (NLMSGERR_ATTR_MSG) of an NLMSG_ERROR, or ""."""
    if not flags & NLM_F_ACK_TLVS:
        return ""
    offset = 20  # nlmsghdr + error
    inner_len = struct.unpack_from("=I", chunk, offset)[0]
    offset += _HEADER.size if flags & NLM_F_CAPPED else (inner_len + 3) & ~3
    while offset + 4 <= len(chunk):
        nla_len, nla_type = struct.unpack_from("=HH", chunk, offset)
        if nla_len < 4:
            break
        if nla_type & 0x3FFF == NLMSGERR_ATTR_MSG:
            return chunk[offset + 4 : offset + nla_len].split(b"\0", 1)[0].decode("utf-8", "replace")
        offset += (nla_len + 3) & ~3
    return ""


def _addr(address: Any) -> bytes:
    packed = ipaddress.ip_address(str(address)).packed
    return packed + bytes(16 - len(packed))


def _text(raw: bytes, family: int) -> str:
    return str(ipaddress.ip_address(raw[:4] if family == socket.AF_INET else raw[:16]))


def _mask_bits(mask: int) -> int:
    """Leading one bits of a 16-bit port mask (strongSwan port_mask_bits())."""
    bits = 0
    while bits < 16 and mask & (0x8000 >> bits):
        bits += 1
    return bits


def sa_id(dst: str, spi: int, src: Optional[str] = None) -> xfrm_usersa_id:
    """XFRM_MSG_DELSA/GETSA body: a state is known by destination, SPI and protocol (and source)."""
    msg = blank(xfrm_usersa_id)
    msg["daddr"] = _addr(dst)
    msg["spi"] = spi
    msg["family"] = socket.AF_INET6 if ":" in dst else socket.AF_INET
    msg["proto"] = IPPROTO_ESP
    if src is not None:
        msg["attrs"] = [("XFRMA_SRCADDR", _addr(src))]
    return msg


def _state_info(data: bytes) -> StateInfo:
    msg = xfrm_usersa_info(data)
    msg.decode()
    family = msg["family"]
    algorithms = []
    for name in ("XFRMA_ALG_AEAD", "XFRMA_ALG_CRYPT", "XFRMA_ALG_AUTH_TRUNC"):
        alg = msg.get_attr(name)
        if alg is not None:  # never the key: only its name and length
            algorithms.append("%s/%d" % (alg["alg_name"].split(b"\0", 1)[0].decode(), alg["alg_key_len"]))
    encap = msg.get_attr("XFRMA_ENCAP")
    esn = msg.get_attr("XFRMA_REPLAY_ESN_VAL")
    return StateInfo(
        src=_text(msg["saddr"], family),
        dst=_text(msg["id_daddr"], family),
        spi=msg["id_spi"],
        reqid=msg["reqid"],
        algorithms=algorithms,
        esn=bool(msg["flags"] & XFRM_STATE_ESN),
        encap=(encap["encap_sport"], encap["encap_dport"]) if encap is not None else None,
        bytes=msg["cur_bytes"],
        packets=msg["cur_packets"],
        add_time=msg["cur_add_time"],
        use_time=msg["cur_use_time"],
        replay_window=esn["replay_window"] if esn is not None else msg["replay_window"],
        replay_errors=msg["stats_replay"],
        integrity_failed=msg["stats_integrity_failed"],
    )


def _sa_counters(data: bytes) -> SaCounters:
    msg = xfrm_aevent_id(data)
    msg.decode()
    lifetime = msg.get_attr("XFRMA_LTIME_VAL")
    esn = msg.get_attr("XFRMA_REPLAY_ESN_VAL")
    if esn is not None:
        oseq = esn["oseq_hi"] << 32 | esn["oseq"]
    else:
        replay = msg.get_attr("XFRMA_REPLAY_VAL")
        oseq = replay["oseq"] if replay is not None else 0
    if lifetime is None:
        raise ValueError("no XFRMA_LTIME_VAL")
    return SaCounters(lifetime["bytes"], lifetime["packets"], oseq)


def _policy_info(data: bytes) -> PolicyInfo:
    msg = xfrm_userpolicy_info(data)
    msg.decode()
    family = msg["sel_family"]
    src = "%s/%d" % (_text(msg["sel_saddr"], family), msg["sel_prefixlen_s"])
    dst = "%s/%d" % (_text(msg["sel_daddr"], family), msg["sel_prefixlen_d"])
    tmpl = msg.get_attr("XFRMA_TMPL")
    direction = _DIRECTION_NAMES.get(msg["dir"], str(msg["dir"]))
    tmpl_src = tmpl_dst = None
    if tmpl is not None:
        tmpl_src, tmpl_dst = _text(tmpl["saddr"], tmpl["family"]), _text(tmpl["id_daddr"], tmpl["family"])
    return PolicyInfo(
        src=src,
        dst=dst,
        direction=direction,
        priority=msg["priority"],
        reqid=tmpl["reqid"] if tmpl is not None else None,
        tmpl_src=tmpl_src,
        tmpl_dst=tmpl_dst,
        fields=dict(
            {name: msg["sel_" + name] for name in _PORT_FIELDS}, if_id=msg.get_attr("XFRMA_IF_ID") or 0
        ),
    )


# --- events: acquires and expires ------------------------------------------------------------
@dataclass
class AcquireInfo:
    """An XFRM_MSG_ACQUIRE: an outbound packet met a policy whose template (``reqid``, tunnel ``src`` ->
    ``dst``) has no state. The kernel drops the packet, keeps a larval state for the template for
    net.core.xfrm_acq_expires (30 s) and asks no more for that template meanwhile."""

    reqid: Optional[int]  # None: the policy has no template we could read
    src: str
    dst: str
    flow: str  # the packet's addresses, "10.1.0.10 -> 10.2.0.10"


@dataclass
class ExpireInfo:
    """An XFRM_MSG_EXPIRE: the state ``spi`` to ``dst`` crossed a soft lifetime (rekey) or a hard one (the
    kernel has deleted it); ``bytes`` and ``packets`` are its counters then."""

    spi: int
    src: str
    dst: str
    reqid: int
    hard: bool
    bytes: int
    packets: int


class XfrmEvents:
    """The kernel's acquires and expires (multicast groups XFRMNLGRP_ACQUIRE and XFRMNLGRP_EXPIRE) on a
    non-blocking NETLINK_XFRM socket of their own; :meth:`read` returns what arrived. Messages that do
    not decode are counted and skipped; an overrun socket (ENOBUFS) loses events: the kernel asks again
    for an acquire once its larval state expires, and the daemon's poll of the counters still finds a
    crossed soft limit, and a state the kernel deleted at its hard limit by its absence."""

    def __init__(self) -> None:
        self._sock = socket.socket(socket.AF_NETLINK, socket.SOCK_RAW, NETLINK_XFRM)
        try:
            self._sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 1 << 20)
            self._sock.bind((0, 1 << (XFRMNLGRP_ACQUIRE - 1) | 1 << (XFRMNLGRP_EXPIRE - 1)))
            self._sock.setblocking(False)
        except OSError:
            self._sock.close()
            raise
        self.malformed = 0
        self.overruns = 0

    def fileno(self) -> int:
        return self._sock.fileno()

    def close(self) -> None:
        self._sock.close()

    def read(self) -> List[Any]:
        """The AcquireInfo and ExpireInfo events waiting on the socket, in order."""
        found: List[Any] = []
        while True:
            try:
                buf = self._sock.recv(1 << 16)
            except (BlockingIOError, InterruptedError):
                return found
            except OSError as exc:
                if exc.errno != errno.ENOBUFS:
                    raise
                self.overruns += 1
                continue
            if not buf:
                return found
            for msg_type, chunk in _messages(buf):
                decode = _EVENT_DECODERS.get(msg_type)
                if decode is None:
                    continue
                try:
                    found.append(decode(chunk))
                except Exception:  # pyroute2 raises struct.error, KeyError, ...: never the daemon's end
                    self.malformed += 1


def _messages(buf: bytes) -> List[Tuple[int, bytes]]:
    """(type, message) of each netlink message in one datagram; stops at a malformed length."""
    found = []
    offset = 0
    while offset + _HEADER.size <= len(buf):
        length, msg_type = _HEADER.unpack_from(buf, offset)[:2]
        if length < _HEADER.size or offset + length > len(buf):
            break
        found.append((msg_type, buf[offset : offset + length]))
        offset += (length + 3) & ~3
    return found


def _acquire_info(data: bytes) -> AcquireInfo:
    msg = xfrm_user_acquire(data)
    msg.decode()
    tmpl = msg.get_attr("XFRMA_TMPL")
    outer = tmpl["family"] if tmpl is not None else msg["sel_family"]
    inner = msg["sel_family"]
    return AcquireInfo(
        reqid=tmpl["reqid"] if tmpl is not None else None,
        src=_text(msg["saddr"], outer),
        dst=_text(msg["id_daddr"], outer),
        flow="%s -> %s" % (_text(msg["sel_saddr"], inner), _text(msg["sel_daddr"], inner)),
    )


def _expire_info(data: bytes) -> ExpireInfo:
    msg = xfrm_user_expire(data)
    msg.decode()
    family = msg["family"]
    return ExpireInfo(
        spi=msg["id_spi"],
        src=_text(msg["saddr"], family),
        dst=_text(msg["id_daddr"], family),
        reqid=msg["reqid"],
        hard=bool(msg["hard"]),
        bytes=msg["cur_bytes"],
        packets=msg["cur_packets"],
    )


_EVENT_DECODERS = {XFRM_MSG_ACQUIRE: _acquire_info, XFRM_MSG_EXPIRE: _expire_info}


# --- IKE sockets ---------------------------------------------------------------------------
def socket_bypass_policy(direction: str, family: int) -> bytes:
    """A per-socket policy (``struct xfrm_userpolicy_info``, 168 octets) that lets every packet of
    the socket pass in ``direction`` ("in" or "out") without IPsec, whatever the SPD says: set with
    IP_XFRM_POLICY / IPV6_XFRM_POLICY on the IKE sockets, so that a Child SA whose selectors cover the
    IKE endpoints (host to host, 0.0.0.0/0) neither sends our IKE messages into the SA nor drops the
    peer's plaintext IKE (strongSwan kernel_netlink_ipsec.c bypass_socket())."""
    msg = blank(xfrm_userpolicy_info)
    msg["sel_family"] = family
    for name in ("soft_byte_limit", "hard_byte_limit", "soft_packet_limit", "hard_packet_limit"):
        msg["lft_" + name] = XFRM_INF
    msg["dir"] = DIRECTIONS[direction]
    msg["action"] = XFRM_POLICY_ALLOW
    msg.encode()
    return bytes(msg.data[_HEADER.size :])


def bypass_socket(sock: socket.socket) -> None:
    """Exempt ``sock`` (an IKE socket) from IPsec in both directions; raises OSError if the kernel refuses
    (needs CAP_NET_ADMIN). On a dual-stack IPv6 socket the policy covers its IPv4 (v4-mapped) peers too:
    the kernel matches a socket policy's empty selector whatever the packet's family."""
    if sock.family == socket.AF_INET6:
        level, option = socket.IPPROTO_IPV6, IPV6_XFRM_POLICY
    else:
        level, option = socket.IPPROTO_IP, IP_XFRM_POLICY
    for direction in ("in", "out"):
        sock.setsockopt(level, option, socket_bypass_policy(direction, sock.family))


# --- the probe -------------------------------------------------------------------------------
# Every ESP transform the engine can negotiate (crypto/proposals.py) as (what the reason calls it,
# encryption, key octets, integrity, key octets). The first is the question "ESP at all?" (RFC 8221
# §5's mandatory pair, in every kernel with ESP); its failure is reported as ESP being unavailable.
_PROBED = (
    ("cbc(aes) with hmac(sha256)", EncrId.AES_CBC, 16, IntegId.HMAC_SHA2_256_128, 32),
    ("rfc4106(gcm(aes)) 128", EncrId.AES_GCM_16, 20, 0, 0),
    ("rfc4106(gcm(aes)) 256", EncrId.AES_GCM_16, 36, 0, 0),
    ("rfc7539esp(chacha20,poly1305)", EncrId.CHACHA20_POLY1305, 36, 0, 0),
    ("hmac(sha1)", EncrId.AES_CBC, 16, IntegId.HMAC_SHA1_96, 20),
    ("hmac(sha384)", EncrId.AES_CBC, 16, IntegId.HMAC_SHA2_384_192, 48),
    ("hmac(sha512)", EncrId.AES_CBC, 16, IntegId.HMAC_SHA2_512_256, 64),
)
_AVAILABLE = (
    "kernel ESP available: installed and removed tunnel-mode ESP states (cbc(aes) with hmac(sha1|sha256|"
    "sha384|sha512), rfc4106(gcm(aes)) 128 and 256, rfc7539esp(chacha20,poly1305)) over %s, and ESP in UDP "
    "on %s"
)


class ProbeResult(tuple):
    """(ok, reason) of :func:`probe`, and ``esp``: whether the kernel has ESP at all (``ok`` is that and
    every transform, family and ESP in UDP besides)."""

    esp: bool

    def __new__(cls, ok: bool, reason: str, esp: Optional[bool] = None) -> ProbeResult:
        result = super().__new__(cls, (ok, reason))
        result.esp = ok if esp is None else esp
        return result


def probe() -> ProbeResult:
    """Can this kernel carry every Child SA the engine may negotiate? (ok, reason), with ``.esp``.

    Installs one throw-away tunnel-mode state per ESP transform (:data:`_PROBED`) to 127.0.0.1, and one
    to ::1 where the host has IPv6 (esp6 is a module of its own), each under a reserved SPI (1-255,
    RFC 4303 §2.1: no peer ever uses one) and our probe reqid, without any policy, so no packet can use
    it, and deletes it at once. Then sets UDP_ENCAP_ESPINUDP on a throw-away UDP socket per family.

    The reason names what failed: "kernel ESP unavailable: XFRM_MSG_NEWSA for esp: Requested type not
    found (errno 93)" when ESP itself is missing, else e.g. "kernel ESP lacks
    rfc7539esp(chacha20,poly1305) (Function not implemented, errno 38)".
    """
    try:
        xfrm = Xfrm()
    except OSError as exc:
        return ProbeResult(
            False, "kernel ESP unavailable: no XFRM netlink socket: %s (errno %s)" % (exc.strerror, exc.errno)
        )
    ipv6 = _has_ipv6()
    lacks: List[str] = []
    with xfrm:
        spi = PROBE_SPI
        for index, (label, encr, encr_len, integ, integ_len) in enumerate(_PROBED):
            targets = ["127.0.0.1"] + (["::1"] if ipv6 and index == 0 else [])
            for target in targets:
                spec = StateSpec(target, target, spi, PROBE_REQID, encr, os.urandom(encr_len), integ,
                                 os.urandom(integ_len))  # fmt: skip
                spi -= 1
                failure = _try_state(xfrm, spec)
                if failure is None:
                    continue
                if index == 0 and target == "127.0.0.1":
                    return ProbeResult(False, "kernel ESP unavailable: %s" % failure, esp=False)
                lacks.append("%s (%s)" % ("IPv6 ESP (esp6)" if target == "::1" else label, failure))
        for family in (socket.AF_INET, socket.AF_INET6) if ipv6 else (socket.AF_INET,):
            failure = _try_esp_in_udp(family)
            if failure is not None:
                lacks.append("ESP in UDP on %s sockets (%s)" % (_FAMILY_NAMES[family], failure))
    if lacks:
        return ProbeResult(False, "kernel ESP lacks %s" % "; ".join(lacks), esp=True)
    families = " and ".join(
        _FAMILY_NAMES[f] for f in ((socket.AF_INET, socket.AF_INET6) if ipv6 else (socket.AF_INET,))
    )
    return ProbeResult(True, _AVAILABLE % (families, families), esp=True)


_FAMILY_NAMES = {socket.AF_INET: "IPv4", socket.AF_INET6: "IPv6"}


def _has_ipv6() -> bool:
    """Does this kernel have IPv6 (not built without it, nor booted with ipv6.disable=1)?"""
    try:
        socket.socket(socket.AF_INET6, socket.SOCK_DGRAM).close()
    except OSError:
        return False
    return True


def _try_state(xfrm: Xfrm, spec: StateSpec) -> Optional[str]:
    """Install and delete one throw-away state; None if that worked, else the kernel's reason."""
    try:
        xfrm.add_state(spec)
    except XfrmError as exc:
        if exc.errno != errno.EEXIST:  # EEXIST: a concurrent probe installed the same state
            return str(exc).replace(" esp SPI %08x to %s" % (spec.spi, spec.dst), " for esp")
    try:
        xfrm.delete_state(spec.dst, spec.spi)
    except XfrmError as exc:
        if not missing(exc):  # gone: a concurrent probe deleted it
            return "the probe state could not be removed: %s" % exc
    return None


def _try_esp_in_udp(family: int) -> Optional[str]:
    """Set UDP_ENCAP_ESPINUDP on a throw-away UDP socket (never bound); None if the kernel took it."""
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as sock:
            sock.setsockopt(SOL_UDP, UDP_ENCAP, UDP_ENCAP_ESPINUDP)
    except OSError as exc:
        return "UDP_ENCAP_ESPINUDP: %s (errno %s)" % (exc.strerror, exc.errno)
    return None
