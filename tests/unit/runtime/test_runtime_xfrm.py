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

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pyike.esp import make_cipher
from pyike.ids import EncrId, IntegId
from pyike.runtime import xfrm
from pyike.runtime.xfrm import (
    NLM_F_ACK,
    NLM_F_REQUEST,
    PolicySpec,
    Selector,
    StateSpec,
    encode,
    policies_for,
    policy_id,
    sa_id,
)
from pyike.runtime.xfrm_msg import (
    SIZES,
    XFRM_MSG_DELPOLICY,
    XFRM_MSG_DELSA,
    XFRM_MSG_GETSA,
    XFRM_MSG_NEWPOLICY,
    XFRM_MSG_NEWSA,
    blank,
)

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


def test_struct_sizes_are_the_kernels():
    """sizeof() of <linux/xfrm.h> on every Linux ABI (the structures are fixed for netlink)."""
    for cls, size in SIZES.items():
        msg = blank(cls)
        data = encode(0x10, msg, 0)
        assert len(data) - 16 == size, cls.__name__


STATE = "state add src 192.0.2.1 dst 192.0.2.2 proto esp spi 0x12345678 reqid 1887961095 mode tunnel"
STATE6 = "state add src 2001:db8::1 dst 2001:db8::2 proto esp spi 0xc0ffee01 reqid 7 mode tunnel"


@pytest.mark.parametrize(
    ("command", "spec"),
    [
        pytest.param(
            STATE + " replay-window 4096 flag esn aead rfc4106(gcm(aes)) 0x%s 128" % KEY20.hex(),
            StateSpec("192.0.2.1", "192.0.2.2", 0x12345678, 1887961095, EncrId.AES_GCM_16, KEY20, esn=True),
            id="aes128gcm16-esn",
        ),
        pytest.param(
            STATE + " replay-window 4096 aead rfc4106(gcm(aes)) 0x%s 128" % KEY36.hex(),
            StateSpec("192.0.2.1", "192.0.2.2", 0x12345678, 1887961095, EncrId.AES_GCM_16, KEY36),
            id="aes256gcm16-noesn",
        ),
        pytest.param(
            STATE + " replay-window 32 aead rfc7539esp(chacha20,poly1305) 0x%s 128" % KEY36.hex(),
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
            + " replay-window 4096 flag esn enc cbc(aes) 0x%s auth-trunc hmac(sha256) 0x%s 128"
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
            + " replay-window 4096 enc cbc(aes) 0x%s auth-trunc hmac(sha384) 0x%s 192"
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
            + " replay-window 4096 flag esn enc cbc(aes) 0x%s auth-trunc hmac(sha512) 0x%s 256"
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
        STATE + " replay-window 4096 aead rfc4106(gcm(aes)) 0x%s 128" % KEY20.hex()
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
    specs = policies_for(
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
