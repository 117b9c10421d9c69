"""The XFRM netlink messages (NETLINK_XFRM) as pyroute2 message classes: layouts only, no I/O.

Each class mirrors one structure of ``<linux/xfrm.h>`` field for field, nested structures flattened
under a prefix (``sel_``, ``id_``, ``lft_``, ``cur_``, ``stats_``), with the compiler's padding written
out as ``x`` fields so that the sizes match the kernel's (``sizeof``: xfrm_selector 56, xfrm_usersa_info
224, xfrm_usersa_id 24, xfrm_userpolicy_info 168, xfrm_userpolicy_id 64, xfrm_user_tmpl 64,
xfrm_encap_tmpl 24, xfrm_user_acquire 280, xfrm_user_expire 232,
xfrm_aevent_id 48). Addresses are ``xfrm_address_t`` (16 octets, an IPv4 address in the first 4);
``__be16``/``__be32`` fields (ports, SPIs) are big-endian, everything else host order.

pyroute2 encodes and decodes them (``msg.encode()`` → ``msg.data``; ``cls(data).decode()``); the
socket is :mod:`.xfrm`'s own.
"""

from __future__ import annotations

from pyroute2.netlink import nla, nlmsg

# message types (<linux/xfrm.h> enum XFRM_MSG_*)
XFRM_MSG_NEWSA = 0x10
XFRM_MSG_DELSA = 0x11
XFRM_MSG_GETSA = 0x12
XFRM_MSG_NEWPOLICY = 0x13
XFRM_MSG_DELPOLICY = 0x14
XFRM_MSG_GETPOLICY = 0x15
XFRM_MSG_ACQUIRE = 0x17
XFRM_MSG_EXPIRE = 0x18
XFRM_MSG_UPDPOLICY = 0x19
XFRM_MSG_UPDSA = 0x1A
XFRM_MSG_NEWAE = 0x1E
XFRM_MSG_GETAE = 0x1F

# xfrm_usersa_info.flags
XFRM_STATE_NOECN = 1
XFRM_STATE_AF_UNSPEC = 32  # the selector's family is the inner packets', not the outer one (tunnel mode)
XFRM_STATE_ESN = 128
XFRM_MODE_TRANSPORT = 0
XFRM_MODE_TUNNEL = 1
XFRM_POLICY_IN = 0
XFRM_POLICY_OUT = 1
XFRM_POLICY_FWD = 2
XFRM_POLICY_ALLOW = 0
XFRM_INF = (1 << 64) - 1
XFRMNLGRP_ACQUIRE = 1  # multicast groups (enum xfrm_nlgroups) of XFRM_MSG_ACQUIRE and XFRM_MSG_EXPIRE
XFRMNLGRP_EXPIRE = 2


def _selector(prefix: str) -> tuple:
    """struct xfrm_selector (56 octets)."""
    return (
        (prefix + "daddr", "16s"),
        (prefix + "saddr", "16s"),
        (prefix + "dport", ">H"),
        (prefix + "dport_mask", ">H"),
        (prefix + "sport", ">H"),
        (prefix + "sport_mask", ">H"),
        (prefix + "family", "H"),
        (prefix + "prefixlen_d", "B"),
        (prefix + "prefixlen_s", "B"),
        (prefix + "proto", "B"),
        (prefix + "pad", "3x"),
        (prefix + "ifindex", "i"),
        (prefix + "user", "I"),
    )


_LIFETIME_CFG = tuple(
    ("lft_" + name, "Q")
    for name in (
        "soft_byte_limit",
        "hard_byte_limit",
        "soft_packet_limit",
        "hard_packet_limit",
        "soft_add_expires_seconds",
        "hard_add_expires_seconds",
        "soft_use_expires_seconds",
        "hard_use_expires_seconds",
    )
)
_LIFETIME_CUR = tuple(("cur_" + name, "Q") for name in ("bytes", "packets", "add_time", "use_time"))
_ID = (("id_daddr", "16s"), ("id_spi", ">I"), ("id_proto", "B"), ("id_pad", "3x"))  # struct xfrm_id


class _attrs:
    """The XFRMA_* attribute layouts shared by SA and policy messages."""

    class xfrm_algo(nla):  # XFRMA_ALG_CRYPT, XFRMA_ALG_AUTH; alg_key: alg_key_len / 8 octets
        fields = (("alg_name", "64s"), ("alg_key_len", "I"), ("alg_key", "s"))

    class xfrm_algo_auth(nla):  # XFRMA_ALG_AUTH_TRUNC
        fields = (("alg_name", "64s"), ("alg_key_len", "I"), ("alg_trunc_len", "I"), ("alg_key", "s"))

    class xfrm_algo_aead(nla):  # XFRMA_ALG_AEAD
        fields = (("alg_name", "64s"), ("alg_key_len", "I"), ("alg_icv_len", "I"), ("alg_key", "s"))

    class xfrm_encap_tmpl(nla):  # XFRMA_ENCAP
        fields = (
            ("encap_type", "H"),
            ("encap_sport", ">H"),
            ("encap_dport", ">H"),
            ("pad", "2x"),
            ("encap_oa", "16s"),
        )

    class xfrm_replay_state_esn(nla):  # XFRMA_REPLAY_ESN_VAL
        fields = (
            ("bmp_len", "I"),
            ("oseq", "I"),
            ("seq", "I"),
            ("oseq_hi", "I"),
            ("seq_hi", "I"),
            ("replay_window", "I"),
        )  # the bitmap (bmp_len 32-bit words) follows in the kernel's answers; we never read it

    class xfrm_replay_state(nla):  # XFRMA_REPLAY_VAL
        fields = (("oseq", "I"), ("seq", "I"), ("bitmap", "I"))

    class xfrm_lifetime_cur(nla):  # XFRMA_LTIME_VAL
        fields = (("bytes", "Q"), ("packets", "Q"), ("add_time", "Q"), ("use_time", "Q"))

    class xfrm_mark(nla):  # XFRMA_MARK
        fields = (("v", "I"), ("m", "I"))

    class xfrm_user_tmpl(nla):  # XFRMA_TMPL (one template: tunnel-mode ESP needs no more)
        fields = (
            *_ID,
            ("family", "H"),
            ("pad1", "2x"),
            ("saddr", "16s"),
            ("reqid", "I"),
            ("mode", "B"),
            ("share", "B"),
            ("optional", "B"),
            ("pad2", "x"),
            ("aalgos", "I"),
            ("ealgos", "I"),
            ("calgos", "I"),
        )

    class xfrm_userpolicy_type(nla):  # XFRMA_POLICY_TYPE (6 octets: u8, pad, u16, u8, pad)
        fields = (("type", "B"), ("pad1", "x"), ("reserved1", "H"), ("reserved2", "B"), ("pad2", "x"))


_NLA_MAP = (
    (0, "XFRMA_UNSPEC", "none"),
    (1, "XFRMA_ALG_AUTH", "xfrm_algo"),
    (2, "XFRMA_ALG_CRYPT", "xfrm_algo"),
    (4, "XFRMA_ENCAP", "xfrm_encap_tmpl"),
    (5, "XFRMA_TMPL", "xfrm_user_tmpl"),
    (9, "XFRMA_LTIME_VAL", "xfrm_lifetime_cur"),
    (10, "XFRMA_REPLAY_VAL", "xfrm_replay_state"),
    (13, "XFRMA_SRCADDR", "cdata"),
    (15, "XFRMA_LASTUSED", "uint64"),
    (16, "XFRMA_POLICY_TYPE", "xfrm_userpolicy_type"),
    (18, "XFRMA_ALG_AEAD", "xfrm_algo_aead"),
    (20, "XFRMA_ALG_AUTH_TRUNC", "xfrm_algo_auth"),
    (21, "XFRMA_MARK", "xfrm_mark"),
    (23, "XFRMA_REPLAY_ESN_VAL", "xfrm_replay_state_esn"),
    (24, "XFRMA_SA_EXTRA_FLAGS", "uint32"),
    (31, "XFRMA_IF_ID", "uint32"),
)


class xfrm_usersa_info(nlmsg, _attrs):
    """XFRM_MSG_NEWSA / UPDSA requests and the kernel's SA dumps (224 octets + attributes)."""

    fields = (
        _selector("sel_")
        + _ID
        + (("saddr", "16s"),)
        + _LIFETIME_CFG
        + _LIFETIME_CUR
        + (("stats_replay_window", "I"), ("stats_replay", "I"), ("stats_integrity_failed", "I"))
        + (
            ("seq", "I"),
            ("reqid", "I"),
            ("family", "H"),
            ("mode", "B"),
            ("replay_window", "B"),
            ("flags", "B"),
            ("pad", "7x"),
        )
    )
    nla_map = _NLA_MAP


class xfrm_usersa_id(nlmsg, _attrs):
    """XFRM_MSG_DELSA / GETSA requests (24 octets, XFRMA_SRCADDR optional)."""

    fields = (("daddr", "16s"), ("spi", ">I"), ("family", "H"), ("proto", "B"), ("pad", "x"))
    nla_map = _NLA_MAP


class xfrm_aevent_id(nlmsg, _attrs):
    """XFRM_MSG_GETAE request and NEWAE answer (48 octets): a state's counters and replay state
    (XFRMA_LTIME_VAL, XFRMA_REPLAY_VAL or XFRMA_REPLAY_ESN_VAL) without its keys."""

    fields = (
        ("daddr", "16s"),
        ("spi", ">I"),
        ("family", "H"),
        ("proto", "B"),
        ("pad", "x"),
        ("saddr", "16s"),
        ("flags", "I"),
        ("reqid", "I"),
    )
    nla_map = _NLA_MAP


class xfrm_userpolicy_info(nlmsg, _attrs):
    """XFRM_MSG_NEWPOLICY / UPDPOLICY requests and policy dumps (168 octets + XFRMA_TMPL)."""

    fields = (
        _selector("sel_")
        + _LIFETIME_CFG
        + _LIFETIME_CUR
        + (
            ("priority", "I"),
            ("index", "I"),
            ("dir", "B"),
            ("action", "B"),
            ("flags", "B"),
            ("share", "B"),
            ("pad", "4x"),
        )
    )
    nla_map = _NLA_MAP


class xfrm_userpolicy_id(nlmsg, _attrs):
    """XFRM_MSG_DELPOLICY / GETPOLICY requests (64 octets)."""

    fields = (*_selector("sel_"), ("index", "I"), ("dir", "B"), ("pad", "3x"))
    nla_map = _NLA_MAP


class xfrm_user_acquire(nlmsg, _attrs):
    """XFRM_MSG_ACQUIRE (280 octets + XFRMA_TMPL): an outbound packet met a policy whose template has no
    state. ``sel_`` is the packet's flow; ``pol_`` the policy it met (its selector, priority, index)."""

    fields = (
        *_ID,
        ("saddr", "16s"),
        *_selector("sel_"),
        *_selector("pol_sel_"),
        *(("pol_" + name, fmt) for name, fmt in _LIFETIME_CFG + _LIFETIME_CUR),
        ("pol_priority", "I"),
        ("pol_index", "I"),
        ("pol_dir", "B"),
        ("pol_action", "B"),
        ("pol_flags", "B"),
        ("pol_share", "B"),
        ("pol_pad", "4x"),
        ("aalgos", "I"),
        ("ealgos", "I"),
        ("calgos", "I"),
        ("seq", "I"),
    )
    nla_map = _NLA_MAP


class xfrm_user_expire(nlmsg, _attrs):
    """XFRM_MSG_EXPIRE (232 octets): a state crossed a soft (``hard`` 0) or hard lifetime; after a hard
    one the kernel has deleted it."""

    fields = (*xfrm_usersa_info.fields, ("hard", "B"), ("pad_expire", "7x"))
    nla_map = _NLA_MAP


def blank(cls: type) -> nlmsg:
    """A message of ``cls`` with its address fields zeroed (pyroute2 defaults only numbers to 0)."""
    msg = cls()
    for name, fmt in cls.fields:
        if fmt.endswith("s") and fmt[:-1].isdigit():
            msg[name] = bytes(int(fmt[:-1]))
    return msg


class nlmsgerr(nlmsg):
    """NLMSG_ERROR (<linux/netlink.h> struct nlmsgerr): a negative errno, or 0 for an ACK."""

    fields = (("error", "i"),)
