"""The XFRM client (runtime/xfrm.py) against iproute2 and the real kernel.

Encoding: each request is compared byte for byte with what ``ip xfrm`` sends for the same command,
captured with ``strace -e trace=sendmsg -xx`` (the bytes that reach the kernel, whatever the kernel
then answers: here ESP states are refused, yet their request is on the wire all the same). Decoding
iproute2's message with our own classes would only prove that our layouts agree with themselves;
strace shows iproute2's layout, which is the kernel's ABI as a second, independent implementation
writes it. Not as root the kernel refuses every request with EPERM, so nothing is installed; as root
each ``ip`` runs in a network namespace of its own (``unshare --net``).

Kernel: policies installed, read back (compared with ``ip xfrm policy``) and flushed in a private
network namespace; the probe's answer compared with what ``ip xfrm state add`` says on this kernel.
"""

from __future__ import annotations

import errno
import json
import os
import re
import shutil
import socket
import struct
import subprocess
import sys
import time
from pathlib import Path

import pytest
from pyike.esp import make_cipher
from pyike.ids import EncrId, IntegId
from pyike.runtime import xfrm, xfrm_msg
from pyike.runtime.xfrm import (
    NLM_F_ACK,
    NLM_F_REQUEST,
    PolicySpec,
    Selector,
    StateSpec,
    encode,
    policy_id,
    sa_id,
)
from pyike.runtime.xfrm_msg import (
    XFRM_MSG_DELPOLICY,
    XFRM_MSG_DELSA,
    XFRM_MSG_GETSA,
    XFRM_MSG_NEWPOLICY,
    XFRM_MSG_NEWSA,
    blank,
)
from xfrm_netns import child_policies

HERE = Path(__file__).resolve().parent
MODULE_UTILS = HERE.parents[2] / "plugins" / "module_utils"
IP = shutil.which("ip", path=os.environ.get("PATH", "") + ":/usr/sbin:/sbin")
STRACE = shutil.which("strace", path=os.environ.get("PATH", "") + ":/usr/bin")
UNSHARE = shutil.which("unshare", path=os.environ.get("PATH", "") + ":/usr/bin")
IS_ROOT = os.geteuid() == 0

KEY16 = bytes(range(16))
KEY20 = bytes(range(20))
KEY32 = bytes(range(32))
KEY36 = bytes(range(36))
KEY48 = bytes(range(48))
KEY64 = bytes(range(64))
FLAGS = {"NLM_F_REQUEST": NLM_F_REQUEST, "NLM_F_ACK": NLM_F_ACK}
TYPES = {
    "XFRM_MSG_NEWSA": XFRM_MSG_NEWSA,
    "XFRM_MSG_DELSA": XFRM_MSG_DELSA,
    "XFRM_MSG_GETSA": XFRM_MSG_GETSA,
    "XFRM_MSG_NEWPOLICY": XFRM_MSG_NEWPOLICY,
    "XFRM_MSG_DELPOLICY": XFRM_MSG_DELPOLICY,
    "XFRM_MSG_UPDPOLICY": xfrm.XFRM_MSG_UPDPOLICY,
}
_SENT = re.compile(
    r'nlmsg_len=(\d+), nlmsg_type=(\w+), nlmsg_flags=([\w|]+), nlmsg_seq=\d+, nlmsg_pid=\d+\}, "((?:\\x[0-9a-f]{2})*)"'
)


def iproute2_sends(args: str) -> tuple:
    """(type, flags, body) of the one XFRM request that ``ip xfrm <args>`` sends."""
    if STRACE is None or IP is None:
        pytest.skip("strace and ip(8) are needed to capture what iproute2 sends")
    command = [STRACE, "-e", "trace=sendmsg", "-xx", "-s", "65536", IP, "xfrm", *args.split()]
    if IS_ROOT:  # the request would be carried out: in a namespace of its own, thrown away after
        command = [UNSHARE, "--net", "--", *command]
    trace = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False).stderr
    sent = _SENT.findall(trace)
    assert len(sent) == 1, trace
    length, msg_type, flags, body = sent[0]
    body = bytes.fromhex(body.replace("\\x", ""))
    assert int(length) == 16 + len(body), trace
    return TYPES[msg_type], sum(FLAGS[f] for f in flags.split("|")), body


def ours(msg_type: int, msg, flags: int = NLM_F_REQUEST | NLM_F_ACK) -> tuple:
    data = encode(msg_type, msg, flags)
    assert int.from_bytes(data[:4], sys.byteorder) == len(data)
    return msg_type, flags, data[16:]


# our message class -> the structure of <linux/xfrm.h> it mirrors
STRUCTS = {
    xfrm_msg.xfrm_usersa_info: "xfrm_usersa_info",
    xfrm_msg.xfrm_usersa_id: "xfrm_usersa_id",
    xfrm_msg.xfrm_userpolicy_info: "xfrm_userpolicy_info",
    xfrm_msg.xfrm_userpolicy_id: "xfrm_userpolicy_id",
    xfrm_msg.xfrm_user_acquire: "xfrm_user_acquire",
    xfrm_msg.xfrm_user_expire: "xfrm_user_expire",
    xfrm_msg.xfrm_aevent_id: "xfrm_aevent_id",
    xfrm_msg.xfrm_usersa_info.xfrm_user_tmpl: "xfrm_user_tmpl",
    xfrm_msg.xfrm_usersa_info.xfrm_encap_tmpl: "xfrm_encap_tmpl",
    xfrm_msg.xfrm_usersa_info.xfrm_replay_state_esn: "xfrm_replay_state_esn",
    xfrm_msg.xfrm_usersa_info.xfrm_userpolicy_type: "xfrm_userpolicy_type",
}
# (our field, the C member) whose offsets must agree: one per region of each structure
OFFSETS = {
    "xfrm_usersa_info": [("id_spi", "id.spi"), ("saddr", "saddr"), ("lft_soft_byte_limit", "lft"),
                         ("cur_bytes", "curlft"), ("stats_replay", "stats.replay"), ("reqid", "reqid"),
                         ("family", "family"), ("flags", "flags")],
    "xfrm_userpolicy_info": [("lft_soft_byte_limit", "lft"), ("priority", "priority"), ("dir", "dir"),
                             ("action", "action"), ("share", "share")],
    "xfrm_userpolicy_id": [("index", "index"), ("dir", "dir")],
    "xfrm_user_acquire": [("saddr", "saddr"), ("sel_family", "sel.family"), ("pol_sel_family", "policy.sel.family"),
                          ("pol_priority", "policy.priority"), ("pol_dir", "policy.dir"), ("aalgos", "aalgos"),
                          ("seq", "seq")],
    "xfrm_user_expire": [("id_spi", "state.id.spi"), ("cur_bytes", "state.curlft.bytes"), ("hard", "hard")],
    "xfrm_aevent_id": [("spi", "sa_id.spi"), ("saddr", "saddr"), ("flags", "flags"), ("reqid", "reqid")],
    "xfrm_usersa_id": [("spi", "spi"), ("family", "family"), ("proto", "proto")],
    "xfrm_user_tmpl": [("family", "family"), ("saddr", "saddr"), ("reqid", "reqid"), ("mode", "mode"),
                       ("aalgos", "aalgos")],
    "xfrm_userpolicy_type": [("reserved1", "reserved1"), ("reserved2", "reserved2")],
}  # fmt: skip
CC = shutil.which("cc")


def _layout(cls) -> tuple:
    """(size, {field: offset}) of one of our classes, from its pyroute2 field formats."""
    offsets, size = {}, 0
    for name, fmt in cls.fields:
        offsets[name] = size
        size += struct.calcsize("=" + fmt.lstrip("<>!="))
    return size, offsets


def test_struct_layouts_are_the_kernels(tmp_path):
    """Sizes and member offsets of <linux/xfrm.h> as this machine's C compiler lays them out, against our
    field tables (an independent source: the header, not numbers written next to the classes)."""
    if CC is None or not os.path.exists("/usr/include/linux/xfrm.h"):
        pytest.skip("needs cc and /usr/include/linux/xfrm.h (linux-libc-dev)")
    lines = ["#include <stdio.h>", "#include <stddef.h>", "#include <linux/xfrm.h>", "int main(void) {"]
    for name in STRUCTS.values():
        lines.append('printf("%s %%zu\\n", sizeof(struct %s));' % (name, name))
        for ours_, member in OFFSETS.get(name, []):
            lines.append('printf("%s.%s %%zu\\n", offsetof(struct %s, %s));' % (name, ours_, name, member))
    lines.append("return 0; }")
    (tmp_path / "sizes.c").write_text("\n".join(lines))
    subprocess.run([CC, "-o", str(tmp_path / "sizes"), str(tmp_path / "sizes.c")], check=True, timeout=120)
    kernel = dict(line.split() for line in subprocess.run(
        [str(tmp_path / "sizes")], check=True, capture_output=True, text=True).stdout.splitlines())  # fmt: skip
    for cls, name in STRUCTS.items():
        size, offsets = _layout(cls)
        assert size == int(kernel[name]), name
        for ours_, _member in OFFSETS.get(name, []):
            assert offsets[ours_] == int(kernel["%s.%s" % (name, ours_)]), (name, ours_)
    # and what encode() puts on the wire after the netlink header is exactly that size
    for cls in list(STRUCTS)[:4]:
        assert len(encode(0x10, blank(cls), 0)) - 16 == int(kernel[STRUCTS[cls]]), cls.__name__


STATE = "state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x12345678 reqid 1887961095 mode tunnel"
STATE6 = "state add src 2001:db8::1 dst 2001:db8::2 proto esp spi 0xc0ffee01 reqid 7 mode tunnel"


@pytest.mark.parametrize(
    ("command", "spec"),
    [
        pytest.param(
            STATE + " replay-window 4096 flag esn af-unspec aead rfc4106(gcm(aes)) 0x%s 128" % KEY20.hex(),
            StateSpec("192.0.2.1", "192.0.2.2", 0x12345678, 1887961095, EncrId.AES_GCM_16, KEY20, esn=True),
            id="aes128gcm16-esn",
        ),
        pytest.param(
            STATE + " replay-window 4096 flag af-unspec aead rfc4106(gcm(aes)) 0x%s 128" % KEY36.hex(),
            StateSpec("192.0.2.1", "192.0.2.2", 0x12345678, 1887961095, EncrId.AES_GCM_16, KEY36),
            id="aes256gcm16-noesn",
        ),
        pytest.param(
            STATE
            + " replay-window 32 flag af-unspec aead rfc7539esp(chacha20,poly1305) 0x%s 128" % KEY36.hex(),
            StateSpec(
                "192.0.2.1",
                "192.0.2.2",
                0x12345678,
                1887961095,
                EncrId.CHACHA20_POLY1305,
                KEY36,
                replay_window=32,
            ),
            id="chacha20poly1305-window32",
        ),
        pytest.param(
            STATE
            + " replay-window 4096 flag esn af-unspec enc cbc(aes) 0x%s auth-trunc hmac(sha256) 0x%s 128"
            % (KEY16.hex(), KEY32.hex())
            + " encap espinudp 4500 4501 0.0.0.0",
            StateSpec(
                "192.0.2.1",
                "192.0.2.2",
                0x12345678,
                1887961095,
                EncrId.AES_CBC,
                KEY16,
                IntegId.HMAC_SHA2_256_128,
                KEY32,
                esn=True,
                encap=(4500, 4501),
            ),
            id="aes128-sha256-natt",
        ),
        pytest.param(
            STATE
            + " replay-window 4096 flag af-unspec enc cbc(aes) 0x%s auth-trunc hmac(sha384) 0x%s 192"
            % (KEY32.hex(), KEY48.hex()),
            StateSpec(
                "192.0.2.1",
                "192.0.2.2",
                0x12345678,
                1887961095,
                EncrId.AES_CBC,
                KEY32,
                IntegId.HMAC_SHA2_384_192,
                KEY48,
            ),
            id="aes256-sha384",
        ),
        pytest.param(
            STATE6
            + " replay-window 4096 flag esn af-unspec enc cbc(aes) 0x%s auth-trunc hmac(sha512) 0x%s 256"
            % (KEY32.hex(), KEY64.hex()),
            StateSpec(
                "2001:db8::1",
                "2001:db8::2",
                0xC0FFEE01,
                7,
                EncrId.AES_CBC,
                KEY32,
                IntegId.HMAC_SHA2_512_256,
                KEY64,
                esn=True,
            ),
            id="ipv6-aes256-sha512",
        ),
    ],
)
def test_states_are_encoded_as_iproute2_encodes_them(command, spec):
    assert ours(XFRM_MSG_NEWSA, spec.message()) == iproute2_sends(command)


def test_limits_are_encoded_as_iproute2_encodes_them():
    spec = StateSpec(
        "192.0.2.1", "192.0.2.2", 0x12345678, 1887961095, EncrId.AES_GCM_16, KEY20,
        soft_bytes=1000, hard_bytes=2000, soft_packets=10, hard_packets=20, soft_seconds=3000, hard_seconds=3600,
    )  # fmt: skip
    command = (
        STATE + " replay-window 4096 flag af-unspec aead rfc4106(gcm(aes)) 0x%s 128" % KEY20.hex()
        + " limit byte-soft 1000 limit byte-hard 2000 limit packet-soft 10 limit packet-hard 20"
        + " limit time-soft 3000 limit time-hard 3600"
    )  # fmt: skip
    assert ours(XFRM_MSG_NEWSA, spec.message()) == iproute2_sends(command)


def test_state_delete_and_get_are_encoded_as_iproute2_encodes_them():
    assert ours(XFRM_MSG_DELSA, sa_id("192.0.2.2", 0x12345678, "192.0.2.1")) == iproute2_sends(
        "state delete src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x12345678"
    )
    assert ours(XFRM_MSG_GETSA, sa_id("192.0.2.2", 0x12345678, "192.0.2.1"), NLM_F_REQUEST) == iproute2_sends(
        "state get src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x12345678"
    )


@pytest.mark.parametrize(
    ("direction", "src", "dst", "tmpl_src", "tmpl_dst"),
    [
        ("out", "10.1.0.0/16", "10.2.0.0/24", "192.0.2.1", "192.0.2.2"),
        ("in", "10.2.0.0/24", "10.1.0.0/16", "192.0.2.2", "192.0.2.1"),
        ("fwd", "10.2.0.0/24", "10.1.0.0/16", "192.0.2.2", "192.0.2.1"),
        ("out", "fd00:1::/64", "fd00:2::/48", "2001:db8::1", "2001:db8::2"),
    ],
)
def test_policies_are_encoded_as_iproute2_encodes_them(direction, src, dst, tmpl_src, tmpl_dst):
    spec = PolicySpec(Selector(src, dst), direction, tmpl_src, tmpl_dst, 1887961095)
    command = "policy add src %s dst %s dir %s priority %d tmpl src %s dst %s proto esp reqid 1887961095 mode tunnel" % (
        src, dst, direction, spec.selector.priority(), tmpl_src, tmpl_dst,
    )  # fmt: skip
    assert ours(XFRM_MSG_NEWPOLICY, spec.message()) == iproute2_sends(command)
    assert ours(XFRM_MSG_DELPOLICY, policy_id(Selector(src, dst), direction)) == iproute2_sends(
        "policy delete src %s dst %s dir %s" % (src, dst, direction)
    )


def test_priorities_are_strongswans_and_narrower_selectors_win():
    """strongSwan 5.9 installs a /24 <-> /24 tunnel policy at priority 375423 (kernel_netlink_ipsec.c
    get_priority()); the kernel takes the lowest number first."""
    assert Selector("10.1.0.0/24", "10.2.0.0/24").priority() == 375423
    assert Selector("0.0.0.0/0", "0.0.0.0/0").priority() == 399999
    ordered = [
        Selector("10.1.0.0/16", "10.2.0.0/16"),
        Selector("10.1.5.0/24", "10.2.0.0/16"),
        Selector("10.1.5.0/24", "10.2.0.0/16", proto=6),
        Selector("10.1.5.0/24", "10.2.0.0/16", proto=6, dport=443, dport_mask=0xFFFF),
        Selector("10.1.5.7/32", "10.2.0.0/16"),
    ]
    priorities = [selector.priority() for selector in ordered]
    assert priorities == sorted(priorities, reverse=True) and len(set(priorities)) == len(priorities)


def test_policies_of_a_child_cover_every_selector_pair_of_one_family():
    """As the kernel dataplane builds them (KernelDataplane._policy_specs): an IPv6 pair over IPv4 too,
    which its states carry because they are XFRM_STATE_AF_UNSPEC."""
    specs = child_policies(
        ["10.1.0.0/16", "fd00:1::/64"], ["10.2.0.0/16", "fd00:2::/64"], "192.0.2.1", "192.0.2.2", 9
    )
    got = sorted((s.direction, s.selector.src, s.selector.dst, s.tmpl_src, s.tmpl_dst) for s in specs)
    assert got == sorted(
        [
            ("out", "10.1.0.0/16", "10.2.0.0/16", "192.0.2.1", "192.0.2.2"),
            ("in", "10.2.0.0/16", "10.1.0.0/16", "192.0.2.2", "192.0.2.1"),
            ("fwd", "10.2.0.0/16", "10.1.0.0/16", "192.0.2.2", "192.0.2.1"),
            ("out", "fd00:1::/64", "fd00:2::/64", "192.0.2.1", "192.0.2.2"),
            ("in", "fd00:2::/64", "fd00:1::/64", "192.0.2.2", "192.0.2.1"),
            ("fwd", "fd00:2::/64", "fd00:1::/64", "192.0.2.2", "192.0.2.1"),
        ]
    )


@pytest.mark.parametrize(
    ("encr", "key", "integ", "integ_key", "expected"),
    [
        (EncrId.AES_GCM_16, KEY20, 0, b"", [("rfc4106(gcm(aes))", 160, 128)]),
        (EncrId.AES_GCM_16, bytes(28), 0, b"", [("rfc4106(gcm(aes))", 224, 128)]),
        (EncrId.AES_GCM_16, KEY36, 0, b"", [("rfc4106(gcm(aes))", 288, 128)]),
        (EncrId.CHACHA20_POLY1305, KEY36, 0, b"", [("rfc7539esp(chacha20,poly1305)", 288, 128)]),
        (
            EncrId.AES_CBC,
            KEY16,
            IntegId.HMAC_SHA2_256_128,
            KEY32,
            [("cbc(aes)", 128, None), ("hmac(sha256)", 256, 128)],
        ),
        (
            EncrId.AES_CBC,
            bytes(24),
            IntegId.HMAC_SHA2_384_192,
            KEY48,
            [("cbc(aes)", 192, None), ("hmac(sha384)", 384, 192)],
        ),
        (
            EncrId.AES_CBC,
            KEY32,
            IntegId.HMAC_SHA2_512_256,
            KEY64,
            [("cbc(aes)", 256, None), ("hmac(sha512)", 512, 256)],
        ),
        (
            EncrId.AES_CBC,
            KEY16,
            IntegId.HMAC_SHA1_96,
            bytes(20),
            [("cbc(aes)", 128, None), ("hmac(sha1)", 160, 96)],
        ),
    ],
)
def test_algorithms_take_the_key_material_the_engine_derives(encr, key, integ, integ_key, expected):
    """The same key material the userspace cipher takes (esp/cipher.py, salt last: RFC 4106 §8.1,
    RFC 7634 §2), with the ICV the userspace cipher writes (its icv_len, in bits)."""
    cipher = make_cipher(encr, key, integ or IntegId.NONE, integ_key)
    attrs = xfrm.algorithm_attrs(encr, key, integ, integ_key)
    got = [
        (a["alg_name"].decode(), a["alg_key_len"], a.get("alg_icv_len", a.get("alg_trunc_len")))
        for _n, a in attrs
    ]
    assert got == expected
    assert expected[-1][2] == cipher.icv_len * 8
    assert b"".join(a["alg_key"] for _n, a in attrs) == key + integ_key


def test_wrong_key_lengths_are_refused_without_the_key():
    secret = b"\xaa" * 19
    with pytest.raises(ValueError) as caught:
        xfrm.algorithm_attrs(EncrId.AES_GCM_16, secret)
    assert "AES_GCM_16" in str(caught.value) and "aa" not in str(caught.value).lower().replace("salt", "")
    with pytest.raises(ValueError, match="hmac\\(sha384\\): key must be 48 octets"):
        xfrm.algorithm_attrs(EncrId.AES_CBC, KEY32, IntegId.HMAC_SHA2_384_192, KEY32)
    with pytest.raises(ValueError, match="no kernel"):
        xfrm.algorithm_attrs(EncrId.AES_CTR, KEY20)


def test_spec_repr_hides_keys():
    spec = StateSpec("192.0.2.1", "192.0.2.2", 1, 1, EncrId.AES_GCM_16, b"\x5a" * 20)
    assert "5a" not in repr(spec).lower() and "Z" not in repr(spec)


# --- the real kernel -----------------------------------------------------------------------------
def _in_namespace(*args: str) -> dict:
    env = dict(os.environ, PYTHONPATH=str(MODULE_UTILS))
    done = subprocess.run(
        [UNSHARE, "--net", "--", sys.executable, str(HERE / "xfrm_netns.py"), *args],
        check=False,
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout)


@pytest.mark.root
def test_policies_installed_read_back_and_flushed_in_a_namespace():
    result = _in_namespace("policies")
    installed = [tuple(p) for p in result["installed_ip"]]
    assert installed == [tuple(p) for p in result["installed_ours"]]
    mine = [p for p in installed if p[6] != 1]
    # two IPv4 selector pairs and one IPv6 pair, each out/in/fwd, at strongSwan's priorities
    assert len(mine) == 9
    assert ("10.1.5.0/24", "10.2.0.0/16", "out", 379519, "192.0.2.1", "192.0.2.2", xfrm.REQID_MIN + 7) in mine
    assert ("10.2.0.0/16", "10.1.0.0/16", "fwd", 383615, "192.0.2.2", "192.0.2.1", xfrm.REQID_MIN + 7) in mine
    assert (
        "fd00:2::/64",
        "fd00:1::/64",
        "in",
        334463,
        "2001:db8::2",
        "2001:db8::1",
        xfrm.REQID_MIN + 8,
    ) in mine
    errno_, text = result["duplicate"]
    assert (
        errno_ == 17 and text == "XFRM_MSG_NEWPOLICY out 10.1.0.0/16 -> 10.2.0.0/16: File exists (errno 17)"
    )
    # the flush took ours and left the foreign policy (reqid 1) alone
    assert result["flushed"] == [0, 9]
    foreign = [["10.9.0.0/16", "10.8.0.0/16", "out", 1000, "198.51.100.1", "198.51.100.2", 1]]
    assert result["after_ip"] == foreign and result["after_ours"] == foreign


@pytest.mark.root
def test_the_probe_agrees_with_iproute2_about_kernel_esp():
    """iproute2 is the oracle: if ``ip xfrm state add ... proto esp`` fails on this kernel, the probe
    must say unavailable and why (on the build machines: no CONFIG_INET_ESP); if it works, available."""
    add = subprocess.run(
        [UNSHARE, "--net", "--", IP, "xfrm", "state", "add", "src", "192.0.2.1", "dst", "192.0.2.2", "proto", "esp",
         "spi", "0x100", "mode", "tunnel", "enc", "cbc(aes)", "0x" + KEY16.hex(),
         "auth-trunc", "hmac(sha256)", "0x" + KEY32.hex(), "128"],
        capture_output=True, text=True, timeout=60, check=False,
    )  # fmt: skip
    done = subprocess.run(
        [UNSHARE, "--net", "--", sys.executable, "-c", "import json; from pyike.runtime.xfrm import probe; print(json.dumps(probe()))"],
        capture_output=True, text=True, env=dict(os.environ, PYTHONPATH=str(MODULE_UTILS)), timeout=120, check=False,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    ok, reason = json.loads(done.stdout.splitlines()[-1])
    if add.returncode == 0:
        assert ok, reason
        assert reason.startswith("kernel ESP available")
    else:
        assert not ok
        kernel_says = add.stderr.strip().splitlines()[0]  # e.g. "Error: Requested type not found."
        assert reason.startswith("kernel ESP unavailable: XFRM_MSG_NEWSA for esp: "), reason
        assert kernel_says.removeprefix("Error: ").rstrip(".") in reason, (kernel_says, reason)
        assert re.search(r"\(errno \d+\)$", reason), reason


def test_an_out_policy_naming_its_sa_is_encoded_as_iproute2_encodes_it():
    """The kernel dataplane's out policies name the outbound SPI, so a rekey switches SAs by rewriting them."""
    spec = PolicySpec(
        Selector("10.1.0.0/24", "10.2.0.0/24"), "out", "192.0.2.1", "192.0.2.2", 1887961095, spi=0xC0FFEE01
    )
    command = (
        "policy update src 10.1.0.0/24 dst 10.2.0.0/24 dir out priority 375423 "
        "tmpl src 192.0.2.1 dst 192.0.2.2 proto esp spi 0xc0ffee01 reqid 1887961095 mode tunnel"
    )
    assert ours(xfrm.XFRM_MSG_UPDPOLICY, spec.message()) == iproute2_sends(command)


# --- errors, the wire and the probe with a fake kernel ---------------------------------------------
def test_missing_means_no_such_state_or_policy():
    assert xfrm.missing(xfrm.XfrmError(errno.ESRCH, "XFRM_MSG_DELSA: No such process"))  # a state
    assert xfrm.missing(xfrm.XfrmError(errno.ENOENT, "XFRM_MSG_DELPOLICY: No such file"))  # a policy
    assert not xfrm.missing(xfrm.XfrmError(errno.EEXIST, "XFRM_MSG_NEWSA: File exists"))
    assert not xfrm.missing(ValueError("not an OSError"))


def _state(spi, reqid=xfrm.REQID_MIN + 1):
    return xfrm.StateInfo("192.0.2.2", "192.0.2.1", spi, reqid, [], False, None, 0, 0, 0, 0, 32, 0, 0)


def _policy(reqid=xfrm.REQID_MIN + 1):
    fields = dict.fromkeys(("proto", "sport", "sport_mask", "dport", "dport_mask", "if_id"), 0)
    return xfrm.PolicyInfo("10.2.0.0/16", "10.1.0.0/16", "in", 1, reqid, "192.0.2.2", "192.0.2.1", fields)


class FakeKernel(xfrm.Xfrm):
    """An Xfrm without a socket: dumps from lists, deletes recorded or refused with an errno."""

    def __init__(self, states=(), policies=(), refuse=None):
        self._states, self._policies, self.refuse, self.deleted = (
            list(states),
            list(policies),
            refuse or {},
            [],
        )

    def states(self):
        return list(self._states)

    def policies(self):
        return list(self._policies)

    def delete_state(self, dst, spi, src=None):
        self.deleted.append(("state", spi))
        if spi in self.refuse:
            raise xfrm.XfrmError(
                self.refuse[spi], "XFRM_MSG_DELSA esp SPI %08x: %s" % (spi, os.strerror(self.refuse[spi]))
            )

    def delete_policy(self, selector, direction):
        self.deleted.append(("policy", direction))
        if direction in self.refuse:
            raise xfrm.XfrmError(self.refuse[direction], "XFRM_MSG_DELPOLICY: refused")


def test_flush_takes_what_vanished_meanwhile_as_deleted_and_skips_larval_states():
    """A state deleted meanwhile answers ESRCH, a policy ENOENT: neither stops a flush. SPI-0 states are
    the kernel's ACQUIRE larvals (DELSA cannot name them; they expire by themselves): never asked for.
    Foreign reqids (strongSwan's 1, ...) are left alone."""
    kernel = FakeKernel(
        states=[_state(0x1001), _state(0), _state(0x1002), _state(0x1003, reqid=1)],
        policies=[_policy(), _policy(reqid=1)],
        refuse={0x1001: errno.ESRCH, "in": errno.ENOENT},
    )
    assert kernel.flush_ours() == (2, 1)
    assert kernel.deleted == [("policy", "in"), ("state", 0x1001), ("state", 0x1002)]
    with pytest.raises(xfrm.XfrmError) as caught:
        FakeKernel(states=[_state(0x1001)], refuse={0x1001: errno.EPERM}).flush_ours()
    assert caught.value.errno == errno.EPERM


class FakeSocket:
    def __init__(self, send=None, recv=()):
        self._send, self._recv = send, list(recv)

    def send(self, data):
        if self._send is not None:
            raise self._send
        return len(data)

    def recv(self, size):
        answer = self._recv.pop(0)
        if isinstance(answer, BaseException):
            raise answer
        return answer

    def close(self):
        pass


def _client(sock, timeout=5.0):
    client = xfrm.Xfrm.__new__(xfrm.Xfrm)
    client._sock, client._seq, client.timeout = sock, 0, timeout
    return client


def _error(seq, code):
    """NLMSG_ERROR answering request ``seq`` with -code (its request header echoed)."""
    body = struct.pack("=i", -code) + struct.pack("=IHHII", 16, XFRM_MSG_DELSA, 5, seq, 0)
    return struct.pack("=IHHII", 16 + len(body), 2, 0, seq, 1) + body


def test_socket_errors_become_xfrm_errors_naming_the_request():
    client = _client(FakeSocket(send=OSError(errno.ENOBUFS, "No buffer space available")))
    with pytest.raises(xfrm.XfrmError) as caught:
        client.delete_state("192.0.2.2", 0x1234)
    assert caught.value.errno == errno.ENOBUFS
    assert str(caught.value) == (
        "XFRM_MSG_DELSA esp SPI 00001234 to 192.0.2.2: cannot send: No buffer space available (errno 105)"
    )
    client = _client(FakeSocket(recv=[OSError(errno.ENOBUFS, "No buffer space available")]))
    with pytest.raises(
        xfrm.XfrmError, match=r"XFRM_MSG_DELSA esp SPI 00001234 to 192\.0\.2\.2: cannot receive"
    ):
        client.delete_state("192.0.2.2", 0x1234)


def test_a_kernel_that_does_not_answer_is_a_timeout_not_a_hang():
    client = _client(FakeSocket(recv=[socket.timeout("timed out")]), timeout=5.0)
    with pytest.raises(xfrm.XfrmError) as caught:
        client.get_state("192.0.2.2", 0x1234)
    assert caught.value.errno == errno.ETIMEDOUT
    assert "XFRM_MSG_GETSA esp SPI 00001234 to 192.0.2.2: no answer from the kernel within 5 s" in str(
        caught.value
    )


def test_the_real_socket_times_out():
    """The netlink socket has a receive timeout: a request the kernel never answers (here: one that was
    never sent) ends with ETIMEDOUT instead of blocking the daemon's event loop."""
    try:
        client = xfrm.Xfrm(timeout=0.2)
    except OSError as exc:
        pytest.skip("no NETLINK_XFRM socket here: %s" % exc)

    class Unsent:  # the real socket, but sending goes nowhere
        def __init__(self, sock):
            self.sock = sock

        def send(self, data):
            return len(data)

        def recv(self, size):
            return self.sock.recv(size)

    with client:
        client._sock = Unsent(client._sock)
        started = time.monotonic()
        with pytest.raises(xfrm.XfrmError) as caught:
            client.get_state("192.0.2.2", 0x1234)
        assert time.monotonic() - started < 4
        client._sock = client._sock.sock
    assert caught.value.errno == errno.ETIMEDOUT, caught.value
    assert "no answer from the kernel within 0.2 s" in str(caught.value)


def test_malformed_answers_are_eproto():
    client = _client(FakeSocket(recv=[_error(1, errno.ESRCH)[:18]]))  # cut inside the error code
    with pytest.raises(xfrm.XfrmError) as caught:
        client.delete_state("192.0.2.2", 0x1234)
    assert caught.value.errno == errno.EPROTO and "malformed" in str(caught.value)
    client = _client(FakeSocket(recv=[_error(1, errno.ESRCH)]))
    with pytest.raises(xfrm.XfrmError) as caught:
        client.delete_state("192.0.2.2", 0x1234)
    assert caught.value.errno == errno.ESRCH and xfrm.missing(caught.value)
    short = struct.pack("=IHHII", 40, XFRM_MSG_NEWSA, 0, 1, 1) + bytes(24)  # a NEWSA of 24 octets, not 224
    client = _client(FakeSocket(recv=[short]))
    with pytest.raises(xfrm.XfrmError) as caught:
        client.get_state("192.0.2.2", 0x1234)
    assert caught.value.errno == errno.EPROTO and "XFRM_MSG_GETSA esp SPI 00001234" in str(caught.value)


def test_socket_bypass_policies_have_the_kernels_layout():
    for family in (socket.AF_INET, socket.AF_INET6):
        for direction, number in (("in", 0), ("out", 1)):
            data = xfrm.socket_bypass_policy(direction, family)
            assert len(data) == 168  # sizeof(struct xfrm_userpolicy_info)
            msg = xfrm_msg.xfrm_userpolicy_info(struct.pack("=IHHII", 16 + len(data), 0, 0, 0, 0) + data)
            msg.decode()
            assert (msg["dir"], msg["action"], msg["sel_family"]) == (number, 0, family)  # XFRM_POLICY_ALLOW
            assert msg["sel_prefixlen_s"] == msg["sel_prefixlen_d"] == msg["sel_proto"] == 0  # every packet
            assert msg["lft_soft_byte_limit"] == msg["lft_hard_packet_limit"] == xfrm_msg.XFRM_INF


@pytest.mark.root
def test_bypass_policies_are_taken_by_the_kernel_without_esp_in_a_namespace():
    """IP_XFRM_POLICY / IPV6_XFRM_POLICY is xfrm core: even this host, without ESP modules, takes it
    (needs CAP_NET_ADMIN). Socket policies stay out of the SPD."""
    result = _in_namespace("bypass")
    assert (result["ipv4"], result["ipv6"], result["dual"]) == ("ok", "ok", "ok"), result
    assert result["ip"].count("socket in priority 0") == result["ip"].count("socket out priority 0") == 3
    assert sorted(p[2] for p in result["ours"]) == ["socket in"] * 3 + ["socket out"] * 3
    assert all(p[6] is None for p in result["ours"])  # no template, no reqid: never ours to flush
    assert result["flushed"] == [0, 0] and result["ours_after"] == result["ours"]


class ProbeKernel:
    """A fake Xfrm for the probe: refuses NEWSA for some algorithm names or families, records the rest."""

    def __init__(self, refuse_names=(), refuse_v6=False, esp=True):
        self.refuse_names, self.refuse_v6, self.esp = refuse_names, refuse_v6, esp
        self.added, self.deleted = [], []

    def __call__(self):
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        pass

    def add_state(self, spec, update=False):
        names = [a["alg_name"].decode() for _n, a in spec.message()["attrs"] if "alg_name" in a]
        what = "XFRM_MSG_NEWSA esp SPI %08x to %s" % (spec.spi, spec.dst)
        if not self.esp or (self.refuse_v6 and ":" in spec.dst):
            raise xfrm.XfrmError(errno.EPROTONOSUPPORT, "%s: Requested type not found (errno 93)" % what)
        if set(names) & set(self.refuse_names):
            raise xfrm.XfrmError(errno.ENOSYS, "%s: Function not implemented (errno 38)" % what)
        self.added.append((spec.dst, spec.spi, spec.reqid, tuple(names)))

    def delete_state(self, dst, spi, src=None):
        self.deleted.append((dst, spi))
        if spi == xfrm.PROBE_SPI - 2:  # a concurrent probe took this one already
            raise xfrm.XfrmError(
                errno.ESRCH, "XFRM_MSG_DELSA esp SPI %08x to %s: No such process" % (spi, dst)
            )


@pytest.fixture
def fake_probe(monkeypatch):
    def make(ipv6=True, esp_in_udp=None, **kernel):
        fake = ProbeKernel(**kernel)
        monkeypatch.setattr(xfrm, "Xfrm", fake)
        monkeypatch.setattr(xfrm, "_has_ipv6", lambda: ipv6)
        monkeypatch.setattr(xfrm, "_try_esp_in_udp", lambda family: esp_in_udp)
        return fake

    return make


def test_the_probe_tries_every_transform_and_family_and_removes_each_state(fake_probe):
    from pyike.runtime.choice import choose_dataplane

    kernel = fake_probe()
    result = xfrm.probe()
    ok, reason = result
    assert ok and result.esp and reason.startswith("kernel ESP available: "), reason
    assert "IPv4 and IPv6" in reason
    names = {names for _dst, _spi, _reqid, names in kernel.added}
    assert names >= {
        ("cbc(aes)", "hmac(sha256)"), ("rfc4106(gcm(aes))",), ("rfc7539esp(chacha20,poly1305)",),
        ("cbc(aes)", "hmac(sha384)"), ("cbc(aes)", "hmac(sha512)"), ("cbc(aes)", "hmac(sha1)"),
    }  # fmt: skip
    assert {dst for dst, *_rest in kernel.added} == {"127.0.0.1", "::1"}
    spis = [spi for _dst, spi, _reqid, _names in kernel.added]
    assert len(set(spis)) == len(spis) == 8 and all(0 < spi <= 255 for spi in spis)  # reserved SPIs only
    assert {reqid for _dst, _spi, reqid, _names in kernel.added} == {xfrm.PROBE_REQID}
    assert kernel.deleted == [(dst, spi) for dst, spi, _reqid, _names in kernel.added]  # each at once
    assert choose_dataplane("auto", xfrm.probe).mode == "kernel"


def test_without_esp_the_reason_keeps_its_format(fake_probe):
    from pyike.runtime.choice import DataplaneUnavailable, choose_dataplane

    fake_probe(esp=False)
    result = xfrm.probe()
    assert tuple(result) == (
        False,
        "kernel ESP unavailable: XFRM_MSG_NEWSA for esp: Requested type not found (errno 93)",
    )
    assert not result.esp
    with pytest.raises(DataplaneUnavailable):
        choose_dataplane("kernel", xfrm.probe)


def test_a_missing_transform_family_or_esp_in_udp_makes_auto_choose_userspace(fake_probe):
    from pyike.runtime.choice import choose_dataplane

    fake_probe(refuse_names=("rfc7539esp(chacha20,poly1305)",))
    ok, reason = result = xfrm.probe()
    assert not ok and result.esp
    assert (
        reason
        == "kernel ESP lacks rfc7539esp(chacha20,poly1305) (XFRM_MSG_NEWSA for esp: Function not implemented (errno 38))"
    )
    choice = choose_dataplane("auto", xfrm.probe)
    assert (choice.mode, choice.reason) == ("userspace", "auto: " + reason)
    # settings.dataplane kernel: the operator asked for it and ESP works; starts, marked incomplete
    choice = choose_dataplane("kernel", xfrm.probe)
    assert (choice.mode, choice.complete) == ("kernel", False) and reason in choice.reason

    fake_probe(refuse_v6=True)
    ok, reason = xfrm.probe()
    assert not ok and reason.startswith("kernel ESP lacks IPv6 ESP (esp6) (XFRM_MSG_NEWSA for esp: "), reason

    fake_probe(ipv6=False)
    ok, reason = xfrm.probe()
    assert ok and "over IPv4, and ESP in UDP on IPv4" in reason, reason

    fake_probe(esp_in_udp="UDP_ENCAP_ESPINUDP: Protocol not available (errno 92)")
    ok, reason = xfrm.probe()
    assert not ok and "ESP in UDP on IPv4 sockets (UDP_ENCAP_ESPINUDP: Protocol not available" in reason


def test_esp_in_udp_is_tried_on_a_real_socket():
    assert xfrm._try_esp_in_udp(socket.AF_INET) is None  # xfrm core, no ESP module needed


def _event(msg_type, cls, fields):
    msg = blank(cls)
    for name, value in fields.items():
        msg[name] = value
    return encode(msg_type, msg, 0)


def test_the_kernels_events_decode_and_a_truncated_one_is_skipped():
    expire = _event(xfrm_msg.XFRM_MSG_EXPIRE, xfrm_msg.xfrm_user_expire, {
        "id_daddr": socket.inet_aton("198.51.100.1") + bytes(12), "id_spi": 0xC0FFEE01, "id_proto": 50,
        "saddr": socket.inet_aton("192.0.2.1") + bytes(12), "family": socket.AF_INET, "reqid": 0x70790002,
        "cur_bytes": 70000, "cur_packets": 68, "hard": 1,
    })  # fmt: skip
    acquire = _event(xfrm_msg.XFRM_MSG_ACQUIRE, xfrm_msg.xfrm_user_acquire, {
        "id_daddr": socket.inet_aton("198.51.100.1") + bytes(12), "saddr": socket.inet_aton("192.0.2.1") + bytes(12),
        "sel_saddr": socket.inet_aton("10.1.0.10") + bytes(12), "sel_daddr": socket.inet_aton("10.2.0.10") + bytes(12),
        "sel_family": socket.AF_INET, "attrs": [("XFRMA_TMPL", {"family": socket.AF_INET, "reqid": 0x70790003, "id_daddr": bytes(16), "saddr": bytes(16)})],
    })  # fmt: skip
    other = _event(xfrm_msg.XFRM_MSG_NEWSA, xfrm_msg.xfrm_usersa_id, {})
    found = [(t, xfrm._EVENT_DECODERS[t](chunk)) for t, chunk in xfrm._messages(expire + other + acquire)
             if t in xfrm._EVENT_DECODERS]  # fmt: skip
    assert found == [
        (xfrm_msg.XFRM_MSG_EXPIRE, xfrm.ExpireInfo(0xC0FFEE01, "192.0.2.1", "198.51.100.1", 0x70790002, True, 70000, 68)),
        (xfrm_msg.XFRM_MSG_ACQUIRE, xfrm.AcquireInfo(0x70790003, "192.0.2.1", "198.51.100.1", "10.1.0.10 -> 10.2.0.10")),
    ]  # fmt: skip
    short = struct.pack("=IHHII", 16 + 8, xfrm_msg.XFRM_MSG_EXPIRE, 0, 0, 0) + bytes(8)
    ((msg_type, chunk),) = xfrm._messages(short + bytes(3))  # a trailing fragment is no message
    with pytest.raises(Exception):  # noqa: B017 - XfrmEvents.read() counts any exception as malformed
        xfrm._EVENT_DECODERS[msg_type](chunk)
    assert xfrm._messages(struct.pack("=IHHII", 9000, 0x18, 0, 0, 0)) == []  # a length past the datagram


def test_counters_come_from_getae_whose_answer_has_no_key():
    """XFRM_MSG_GETAE names the state like GETSA; its answer (NEWAE) has the counters and the replay
    state, ESN or not, and no algorithm attribute at all."""
    answer = {}
    for esn in (False, True):
        replay = (
            "XFRMA_REPLAY_ESN_VAL",
            {"bmp_len": 4, "oseq": 7, "oseq_hi": 2 if esn else 0, "replay_window": 128},
        )
        if not esn:
            replay = ("XFRMA_REPLAY_VAL", {"oseq": 7})
        data = _event(xfrm_msg.XFRM_MSG_NEWAE, xfrm_msg.xfrm_aevent_id, {
            "daddr": socket.inet_aton("198.51.100.1") + bytes(12), "spi": 0xC0FFEE01, "proto": 50,
            "family": socket.AF_INET, "saddr": socket.inet_aton("192.0.2.1") + bytes(12),
            "attrs": [("XFRMA_LTIME_VAL", {"bytes": 1500, "packets": 9}), replay],
        })  # fmt: skip
        answer[esn] = xfrm._sa_counters(data)
    assert answer == {False: xfrm.SaCounters(1500, 9, 7), True: xfrm.SaCounters(1500, 9, (2 << 32) | 7)}
    with pytest.raises(ValueError, match="no XFRMA_LTIME_VAL"):
        xfrm._sa_counters(_event(xfrm_msg.XFRM_MSG_NEWAE, xfrm_msg.xfrm_aevent_id, {
            "daddr": bytes(16), "saddr": bytes(16)}))  # fmt: skip
