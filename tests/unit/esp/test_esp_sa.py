"""Outbound and inbound SAs: round trips, framing, drops and their counters."""

from __future__ import annotations

import random
import struct

import pytest
from esp_packets import CIPHER_CASES, CIPHER_IDS, cipher_for, ipv4, ipv6
from hypothesis import given, settings
from hypothesis import strategies as st
from pyike.esp import InboundSA, OutboundSA, SelectorSet, TrafficSelector

SPI = 0xC0DE0001
M32 = 0xFFFFFFFF


def pair(case, esn=False, window=4096, selectors=None, seq=0):
    cipher = cipher_for(case)
    return OutboundSA(SPI, cipher, esn, seq=seq), InboundSA(SPI, cipher, esn, window, selectors=selectors)


def payload_of(sa: InboundSA, packet: bytes, seq_hi: bytes = b"") -> bytes:
    plain = sa.cipher.open(packet, seq_hi)
    assert plain is not None
    return plain


@pytest.mark.parametrize("esn", [False, True], ids=["no-esn", "esn"])
@pytest.mark.parametrize("case", CIPHER_CASES, ids=CIPHER_IDS)
@settings(max_examples=15, deadline=None)
@given(body=st.binary(max_size=1500), v6=st.booleans())
def test_round_trip_every_cipher_ipv4_and_ipv6(case, esn, body, v6):
    out, inb = pair(case, esn)
    inner = ipv6(body=body) if v6 else ipv4(body=body)
    packet = out.encapsulate(inner)
    assert packet is not None
    assert struct.unpack("!II", packet[:8]) == (SPI, 1)
    cipher = out.cipher
    ciphertext_len = len(packet) - 8 - cipher.iv_len - cipher.icv_len
    assert ciphertext_len % cipher.align == 0
    plain = payload_of(inb, packet, b"\x00\x00\x00\x00" if esn else b"")
    pad_len = plain[-2]
    assert plain[-1] == (41 if v6 else 4)
    assert plain[len(inner) : -2] == bytes(range(1, pad_len + 1))
    assert pad_len < cipher.align
    assert inb.decapsulate(packet) == inner
    assert (out.traffic.packets, out.traffic.bytes) == (1, len(inner))
    assert (inb.traffic.packets, inb.traffic.bytes) == (1, len(inner))
    assert inb.drops.total == 0


@pytest.mark.parametrize("case", CIPHER_CASES[:1] + CIPHER_CASES[3:4], ids=["gcm", "cbc"])
def test_accepts_memoryview_and_bytearray(case):
    out, inb = pair(case)
    inner = ipv4()
    packet = out.encapsulate(memoryview(bytearray(inner)))
    assert inb.decapsulate(memoryview(packet)) == inner
    packet = out.encapsulate(bytearray(inner))
    assert inb.decapsulate(bytearray(packet)) == inner


def test_sequence_numbers_count_up_and_batches_keep_order():
    out, inb = pair(CIPHER_CASES[0])
    inners = [ipv4(body=bytes([i]) * i) for i in range(1, 40)]
    packets = out.encapsulate_many(inners)
    assert [struct.unpack("!I", p[4:8])[0] for p in packets] == list(range(1, 40))
    assert out.seq == 39
    assert inb.decapsulate_many(packets) == inners
    assert inb.decapsulate_many(packets) == []
    assert inb.drops.replayed == 39


def test_outbound_refuses_non_ip_input():
    out, _inb = pair(CIPHER_CASES[0])
    assert out.encapsulate(b"") is None
    assert out.encapsulate(b"\x50" + bytes(40)) is None
    assert len(out.encapsulate_many([b"", ipv4(), b"\x00"])) == 1
    assert out.drops.bad_inner == 4
    assert out.seq == 1  # refused packets use no sequence number


def test_sequence_overflow_refuses_instead_of_wrapping():
    out, inb = pair(CIPHER_CASES[0], seq=M32 - 1)
    last = out.encapsulate(ipv4())
    assert struct.unpack("!I", last[4:8])[0] == M32
    assert out.exhausted
    assert out.encapsulate(ipv4()) is None
    assert out.encapsulate(ipv4()) is None
    assert out.drops.seq_overflow == 2
    assert out.seq == M32
    assert inb.decapsulate(last) == ipv4()


def test_esn_sequence_overflow_at_two_to_the_64():
    out, _inb = pair(CIPHER_CASES[2], esn=True, seq=2**64 - 2)
    assert out.encapsulate(ipv4()) is not None
    assert out.encapsulate(ipv4()) is None
    assert out.drops.seq_overflow == 1


def test_bad_sa_parameters():
    cipher = cipher_for(CIPHER_CASES[0])
    with pytest.raises(ValueError, match="SPI"):
        OutboundSA(0, cipher)
    with pytest.raises(ValueError, match="SPI"):
        InboundSA(2**32, cipher)
    with pytest.raises(ValueError, match="sequence number"):
        OutboundSA(1, cipher, esn=False, seq=2**32)


@pytest.mark.parametrize("case", CIPHER_CASES, ids=CIPHER_IDS)
def test_esn_round_trip_across_the_32_bit_wrap_with_reordering(case):
    out, inb = pair(case, esn=True, window=64, seq=M32 - 20)
    inners = [ipv4(body=struct.pack("!I", i)) for i in range(40)]
    packets = out.encapsulate_many(inners)
    lows = [struct.unpack("!I", p[4:8])[0] for p in packets]
    assert lows[:20] == list(range(M32 - 19, M32 + 1)) and lows[20:] == list(range(20))
    order = list(range(40))
    random.Random(7).shuffle(order)
    received = [inb.decapsulate(packets[i]) for i in order]
    assert received == [inners[i] for i in order]
    assert inb.replay.top == 2**32 + 19
    assert inb.decapsulate(packets[5]) is None and inb.drops.replayed == 1


def test_esn_peers_must_agree():
    cipher = cipher_for(CIPHER_CASES[0])
    out = OutboundSA(SPI, cipher, esn=True, seq=M32 + 4)
    inb = InboundSA(SPI, cipher, esn=False)
    assert inb.decapsulate(out.encapsulate(ipv4())) is None  # seq_hi 1 is in the AAD only
    assert inb.drops.icv == 1


@pytest.mark.parametrize("case", CIPHER_CASES, ids=CIPHER_IDS)
def test_tampering_anywhere_is_dropped_and_does_not_move_the_window(case):
    out, inb = pair(case)
    packet = out.encapsulate(ipv4(body=b"payload!" * 8))
    for index in range(4, len(packet)):  # sequence number, IV, ciphertext, ICV
        tampered = bytearray(packet)
        tampered[index] ^= 0x01
        assert inb.decapsulate(bytes(tampered)) is None
    assert inb.drops.icv == len(packet) - 4 - inb.drops.too_old
    assert inb.drops.too_old == 1  # the flip of the sequence number's low bit made it 0
    assert inb.replay.top == 0
    assert inb.decapsulate(packet) == ipv4(body=b"payload!" * 8)


def test_wrong_spi_and_bad_lengths():
    out, inb = pair(CIPHER_CASES[3])  # CBC: ciphertext must be whole blocks
    packet = out.encapsulate(ipv4())
    assert inb.decapsulate(b"\x00\x00\x00\x01" + packet[4:]) is None
    assert inb.drops.wrong_spi == 1
    assert inb.decapsulate(packet[:-1]) is None
    assert inb.decapsulate(packet[: 8 + 16 + 16]) is None  # no ciphertext block at all
    assert inb.decapsulate(b"") is None
    assert inb.drops.bad_length == 3
    assert inb.decapsulate(packet) == ipv4()


def test_replayed_and_too_old_are_counted_separately():
    out, inb = pair(CIPHER_CASES[0], window=32)
    packets = out.encapsulate_many([ipv4()] * 40)
    assert inb.decapsulate(packets[39]) is not None
    assert inb.decapsulate(packets[39]) is None
    assert inb.decapsulate(packets[0]) is None
    assert inb.decapsulate(packets[10]) is not None  # 40 - 11 < 32: in the window
    assert (inb.drops.replayed, inb.drops.too_old) == (1, 1)


def sealed(inb: InboundSA, seq: int, payload: bytes) -> bytes:
    """A correctly authenticated packet carrying an arbitrary payload (trailer included)."""
    return inb.cipher.seal(struct.pack("!II", SPI, seq), b"", seq, payload)


@pytest.mark.parametrize(
    "payload, reason",
    [
        (ipv4() + b"\x01\x03\x02\x04", "bad_padding"),  # padding 1, 3 instead of 1, 2
        (ipv4()[:2] + b"\xff\x04", "bad_padding"),  # pad length beyond the payload
        (ipv4() + b"\x00\x3b", "dummy"),  # next header 59: dummy packet
        (ipv4() + b"\x00\x06", "bad_next_header"),  # transport-mode TCP: not ours
        (ipv6() + b"\x01\x02\x02\x04", "bad_inner"),  # says IPv4, carries IPv6
        (ipv4() + b"\x01\x02\x02\x29", "bad_inner"),  # says IPv6, carries IPv4
        (ipv4()[:2] + b"\x01\x00" + ipv4()[4:] + b"\x01\x02\x02\x04", "bad_inner"),  # length 256
        (ipv4()[:2] + b"\x00\x10" + ipv4()[4:] + b"\x01\x02\x02\x04", "bad_inner"),  # length 16
        (ipv6()[:4] + b"\x01\x00" + ipv6()[6:] + b"\x00\x29", "bad_inner"),
        (b"\x45" * 10 + b"\x00\x04", "bad_inner"),  # shorter than an IPv4 header
    ],
)
def test_authenticated_but_malformed_payloads_are_dropped_after_updating_the_window(payload, reason):
    _out, inb = pair(CIPHER_CASES[0])
    assert inb.decapsulate(sealed(inb, 7, payload)) is None
    assert getattr(inb.drops, reason) == 1
    assert inb.drops.total == 1
    assert inb.replay.top == 7  # the ICV verified, so the number is used up


def test_tfc_padding_after_the_inner_packet_is_stripped():
    _out, inb = pair(CIPHER_CASES[0])
    for inner, next_header in ((ipv4(body=b"abc"), 4), (ipv6(body=b"abc"), 41)):
        padded = inner + bytes(37)  # RFC 4303 §2.7 TFC padding
        pad_len = -(len(padded) + 2) % 4
        payload = padded + bytes(range(1, pad_len + 1)) + bytes((pad_len, next_header))
        assert inb.decapsulate(sealed(inb, inb.replay.top + 1, payload)) == inner


def test_inbound_selector_check():
    selectors = SelectorSet(
        local=[TrafficSelector.from_network("10.2.0.0/16")],
        remote=[TrafficSelector.from_network("10.1.0.0/24")],
    )
    out, inb = pair(CIPHER_CASES[0], selectors=selectors)
    assert inb.decapsulate(out.encapsulate(ipv4("10.1.0.9", "10.2.3.4"))) is not None
    assert inb.decapsulate(out.encapsulate(ipv4("10.1.1.9", "10.2.3.4"))) is None
    assert inb.decapsulate(out.encapsulate(ipv4("10.2.3.4", "10.1.0.9"))) is None
    assert inb.decapsulate(out.encapsulate(ipv6())) is None
    assert inb.drops.selector == 3
    assert inb.traffic.packets == 1


@pytest.mark.parametrize("case", CIPHER_CASES[:1] + CIPHER_CASES[3:4], ids=["gcm", "cbc"])
@settings(max_examples=300, deadline=None)
@given(data=st.binary(max_size=200))
def test_garbage_never_raises(case, data):
    _out, inb = pair(case)
    before = inb.drops.total
    assert inb.decapsulate(data) is None
    assert inb.drops.total == before + 1


@settings(max_examples=200, deadline=None)
@given(
    cut=st.integers(0, 120),
    flips=st.lists(st.tuples(st.integers(0, 119), st.integers(1, 255)), max_size=4),
)
def test_mangled_packets_never_raise_and_never_yield_other_data(cut, flips):
    out, inb = pair(CIPHER_CASES[2])
    inner = ipv4(body=b"x" * 60)
    packet = bytearray(out.encapsulate(inner))
    for index, mask in flips:
        if index < len(packet):
            packet[index] ^= mask
    result = inb.decapsulate(bytes(packet[: len(packet) - cut]))
    assert result in (None, inner)
    assert inb.drops.total + inb.traffic.packets == 1


@pytest.mark.parametrize("case", CIPHER_CASES, ids=CIPHER_IDS)
def test_sa_repr_shows_no_keys(case):
    out, inb = pair(case)
    cipher = out.cipher
    secret = bytes((1 + i) & 0xFF for i in range(case[2]))
    for text in (repr(out), repr(inb)):
        assert f"{SPI:#010x}" in text
        assert secret.hex()[:8] not in text
        assert cipher.name in text
