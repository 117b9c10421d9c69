"""Anti-replay window (RFC 4303 §3.4.3, Appendix A) against a reference model."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pyike.esp import DEFAULT_WINDOW, REPLAYED, TOO_OLD, ReplayWindow

M32 = 0xFFFFFFFF


class Model:
    """The RFC 4303 §3.4.3 rules spelled out with a set of received numbers."""

    def __init__(self, size: int, top: int = 0):
        self.size = size
        self.top = top
        self.seen: set = set()

    def verdict(self, seq: int) -> int:
        if seq > self.top:
            return seq
        if seq == 0 or self.top - seq >= self.size:
            return TOO_OLD
        return REPLAYED if seq in self.seen else seq

    def accept(self, seq: int) -> None:
        self.seen.add(seq)
        self.top = max(self.top, seq)


def test_defaults_and_minimum():
    window = ReplayWindow()
    assert window.size == DEFAULT_WINDOW >= 1024
    with pytest.raises(ValueError, match="at least 32"):
        ReplayWindow(16)


def test_duplicates_old_and_out_of_order():
    window = ReplayWindow(64)
    assert window.check(0) == TOO_OLD  # sequence number 0 is never sent
    assert window.check(5) == 5
    assert window.check(5) == 5  # check alone records nothing
    window.accept(5)
    assert window.check(5) == REPLAYED
    assert window.check(3) == 3  # late but inside the window
    window.accept(3)
    assert window.check(3) == REPLAYED
    window.accept(200)
    assert window.top == 200
    assert window.check(137) == 137  # 200 - 137 = 63 < 64: still inside
    assert window.check(136) == TOO_OLD
    assert window.check(5) == TOO_OLD
    assert window.check(200) == REPLAYED


def test_big_jump_clears_stale_bits():
    window = ReplayWindow(64)
    for seq in range(1, 65):
        window.accept(seq)
    window.accept(64 + 10_000)
    # numbers in the new window that share a ring block with old ones must read as unseen
    for seq in range(64 + 10_000 - 63, 64 + 10_000):
        assert window.check(seq) == seq


def test_accept_outside_window_is_ignored():
    window = ReplayWindow(64)
    window.accept(1000)
    window.accept(900)  # a caller bug must not corrupt the ring
    assert window.check(1000 - 63) == 1000 - 63


@settings(max_examples=150, deadline=None)
@given(
    size=st.integers(32, 300),
    seqs=st.lists(st.integers(0, 2_000), max_size=300),
)
def test_matches_model_without_esn(size, seqs):
    window, model = ReplayWindow(size), Model(size)
    for seq in seqs:
        verdict = window.check(seq)
        assert verdict == model.verdict(seq)
        if verdict >= 0:
            window.accept(seq)
            model.accept(seq)
    assert window.top == model.top


@settings(max_examples=150, deadline=None)
@given(
    size=st.sampled_from([32, 64, 100, 1024, 4096]),
    start=st.one_of(st.integers(1, 5_000), st.integers(M32 - 5_000, M32 + 5_000), st.integers(1, 2**63)),
    steps=st.lists(st.tuples(st.floats(-1.0, 3.0), st.booleans()), max_size=200),
)
def test_esn_inference_across_subspaces(size, start, steps):
    """Appendix A2: the receiver recovers the high half from the low 32 bits on the wire.

    Every offered number lies within [top - size + 1, top + 3 * size], the range the
    algorithm must get right; ``forged`` packets are checked but never accepted.
    """
    window, model = ReplayWindow(size, esn=True), Model(size)
    window.accept(start)
    model.accept(start)
    for fraction, forged in steps:
        seq = max(1, model.top + int(fraction * size))
        if fraction < 0:
            seq = max(seq, model.top - size + 1)
        assert window.infer(seq & M32) == seq
        verdict = window.check(seq & M32)
        assert verdict == model.verdict(seq)
        if verdict >= 0 and not forged:
            window.accept(verdict)
            model.accept(seq)
    assert window.top == model.top


def test_esn_wraps_low_half_across_two_to_the_32():
    window = ReplayWindow(64, esn=True)
    window.accept(M32 - 1)
    assert window.check(M32) == M32
    window.accept(M32)
    assert window.check(0) == 2**32  # low half 0 after the wrap is 2^32, not the never-sent 0
    window.accept(2**32)
    assert window.check(M32 - 10) == M32 - 10  # late packet from before the wrap (Case B)
    assert window.check(M32) == REPLAYED
    window.accept(2**32 + 100)
    # once the whole window is past the wrap, that low half reads as the next subspace's
    # (Appendix A2.1 Case A); its ICV then fails, so it is dropped all the same
    assert window.check(M32 - 10) == 2**33 - 11


def test_esn_first_packets_of_a_fresh_sa():
    window = ReplayWindow(4096, esn=True)
    assert window.check(1) == 1
    # Case B with no older subspace: a high low-half is read as far ahead, not as negative
    assert window.check(M32 - 5) == M32 - 5
