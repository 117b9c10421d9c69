"""Anti-replay window with extended sequence numbers (RFC 4303 §3.4.3, Appendix A).

The receiver first asks :meth:`ReplayWindow.check` whether a sequence number may be new (and,
with ESN, which high half it carries), verifies the ICV, and only then records the packet with
:meth:`ReplayWindow.accept`, so forged packets never move the window.

The bitmap is a ring of 64-bit blocks (the layout of RFC 6479): advancing the window clears
only the blocks it passes, so the common in-order packet costs O(1) whatever the window size.
"""

from __future__ import annotations

REPLAYED = -1  # already received
TOO_OLD = -2  # left of the window (or sequence number 0, which is never sent)

DEFAULT_WINDOW = 4096
MIN_WINDOW = 32  # RFC 4303 §3.4.3: the window MUST be at least 32

_BLOCK_SHIFT = 6
_BLOCK_MASK = 63
_M32 = 0xFFFFFFFF
_M64 = 0xFFFFFFFFFFFFFFFF


class ReplayWindow:
    """Received-packet window of one inbound SA; ``top`` is the highest authenticated number."""

    __slots__ = ("_blocks", "_nblocks", "esn", "size", "top")

    def __init__(self, size: int = DEFAULT_WINDOW, esn: bool = False):
        if size < MIN_WINDOW:
            raise ValueError(f"ESP replay window must be at least {MIN_WINDOW} packets, got {size}")
        self.size = size
        self.esn = esn
        self.top = 0
        # one spare block so the oldest block still in the window is never the one being reused
        self._nblocks = -(-size >> _BLOCK_SHIFT) + 1
        self._blocks = [0] * self._nblocks

    def __repr__(self) -> str:
        return f"<ReplayWindow size={self.size} esn={self.esn} top={self.top}>"

    def infer(self, seq_lo: int) -> int:
        """The full sequence number for the 32 bits on the wire (RFC 4303 Appendix A2.1)."""
        if not self.esn:
            return seq_lo
        top = self.top
        top_lo = top & _M32
        top_hi = top >> 32
        bottom_lo = (top_lo - self.size + 1) & _M32
        if top_lo >= self.size - 1:
            # Case A: the window lies within one 2^32 subspace
            seq_hi = top_hi if seq_lo >= bottom_lo else top_hi + 1
        elif seq_lo >= bottom_lo:
            # Case B: the window spans two subspaces and seq_lo sits in the older one; before
            # the first wrap there is no older subspace and the number can only lie ahead
            seq_hi = top_hi - 1 if top_hi else 0
        else:
            seq_hi = top_hi
        return (seq_hi << 32) | seq_lo

    def check(self, seq_lo: int) -> int:
        """The full sequence number if the packet may be new, else REPLAYED or TOO_OLD.

        Changes nothing: call :meth:`accept` once the ICV has verified.
        """
        seq = self.infer(seq_lo) if self.esn else seq_lo
        top = self.top
        if seq > top:
            return seq if seq <= _M64 else TOO_OLD
        if seq == 0 or top - seq >= self.size:
            return TOO_OLD
        if (self._blocks[(seq >> _BLOCK_SHIFT) % self._nblocks] >> (seq & _BLOCK_MASK)) & 1:
            return REPLAYED
        return seq

    def accept(self, seq: int) -> None:
        """Record an authenticated packet, sliding the window when it is the newest one."""
        blocks = self._blocks
        nblocks = self._nblocks
        top = self.top
        if seq > top:
            new_block = seq >> _BLOCK_SHIFT
            passed = new_block - (top >> _BLOCK_SHIFT)
            if passed >= nblocks:
                for i in range(nblocks):
                    blocks[i] = 0
            else:
                while passed:
                    blocks[(new_block - passed + 1) % nblocks] = 0
                    passed -= 1
            self.top = seq
        elif seq == 0 or top - seq >= self.size:
            return
        blocks[(seq >> _BLOCK_SHIFT) % nblocks] |= 1 << (seq & _BLOCK_MASK)
