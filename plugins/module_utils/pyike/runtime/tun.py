"""TUN devices for the ESP dataplane: open, configure, and batched non-blocking reads and writes.

A :class:`Tun` is one queue of a layer-3 TUN device (``IFF_TUN | IFF_NO_PI``): every read returns
one IP packet, every write takes one. With ``multi_queue`` the device is created with
``IFF_MULTI_QUEUE`` and :meth:`Tun.open_queue` attaches more queues (one per process later).

With ``vnet_hdr`` (the default) every packet is preceded by a ``struct virtio_net_hdr`` (10
octets). Reads still deliver ordinary packets (the device offers no offloads, so the kernel
segments and checksums before handing packets over), but writes may carry a TCP "super packet"
of many segments that the kernel splits (GSO): :mod:`.gro` builds those from decrypted packets,
which saves one write per segment and lets the receiving TCP stack acknowledge less often (the
wireguard-go ``tun/offload_linux.go`` idea, receive half only).

Link settings (MTU, state, queue length) go through pyroute2; the device itself needs only
/dev/net/tun and the TUNSETIFF ioctl.
"""

from __future__ import annotations

import errno
import fcntl
import os
import socket
import struct
from typing import Any, Dict, List, Optional, Sequence

from .netlink import Netlink

TUN_DEVICE = "/dev/net/tun"

# linux/if_tun.h
TUNSETIFF = 0x400454CA
TUNSETOFFLOAD = 0x400454D0
TUNGETFEATURES = 0x800454CF
TUNSETVNETHDRSZ = 0x400454D8
IFF_TUN = 0x0001
IFF_NO_PI = 0x1000
IFF_MULTI_QUEUE = 0x0100
IFF_VNET_HDR = 0x4000

VNET_HDR_LEN = 10  # struct virtio_net_hdr without num_buffers
VNET_HDR_NONE = bytes(VNET_HDR_LEN)  # no GSO, checksum complete

DEFAULT_MTU = 1400
DEFAULT_TXQLEN = 1000
IFNAMSIZ = 16

_IFREQ = struct.Struct("16sH22x")


class TunError(OSError):
    """Opening or configuring the TUN device failed; the message names the device and step."""


class Tun:
    """One queue of a TUN device; ``fd`` is non-blocking, ready for ``loop.add_reader``."""

    def __init__(
        self,
        name: str = "pyike%d",
        *,
        mtu: Optional[int] = DEFAULT_MTU,
        multi_queue: bool = False,
        vnet_hdr: bool = True,
        up: bool = True,
        txqlen: Optional[int] = DEFAULT_TXQLEN,
        batch: int = 64,
        _configure: bool = True,
    ):
        if len(name.encode()) >= IFNAMSIZ:
            raise TunError(errno.EINVAL, "TUN device name %r: at most %d characters" % (name, IFNAMSIZ - 1))
        flags = IFF_TUN | IFF_NO_PI
        if multi_queue:
            flags |= IFF_MULTI_QUEUE
        if vnet_hdr:
            flags |= IFF_VNET_HDR
        try:
            fd = os.open(TUN_DEVICE, os.O_RDWR | os.O_NONBLOCK | os.O_CLOEXEC)
        except OSError as exc:
            raise TunError(exc.errno, "cannot open %s: %s" % (TUN_DEVICE, exc.strerror)) from None
        try:
            answer = fcntl.ioctl(fd, TUNSETIFF, _IFREQ.pack(name.encode(), flags))
            if vnet_hdr:
                fcntl.ioctl(fd, TUNSETVNETHDRSZ, struct.pack("i", VNET_HDR_LEN))
                # no offloads offered: the kernel hands us complete, checksummed packets
                fcntl.ioctl(fd, TUNSETOFFLOAD, 0)
        except OSError as exc:
            os.close(fd)
            raise TunError(exc.errno, "TUN device %r: TUNSETIFF failed: %s" % (name, exc.strerror)) from None
        self.fd = fd
        self.name = _IFREQ.unpack(answer)[0].rstrip(b"\0").decode()
        self.flags = flags
        self.vnet_hdr = vnet_hdr
        self.mtu = mtu or DEFAULT_MTU
        self._batch = 0
        self._buffers: List[bytearray] = []
        self._views: List[memoryview] = []
        self.set_batch(batch)
        self.closed = False
        if _configure:
            try:
                self.configure(mtu=mtu, up=up, txqlen=txqlen)
            except Exception:
                self.close()
                raise

    def __repr__(self) -> str:
        return "<Tun %s fd=%d mtu=%d vnet_hdr=%s>" % (self.name, self.fd, self.mtu, self.vnet_hdr)

    def fileno(self) -> int:
        return self.fd

    # --- set-up ------------------------------------------------------------------------------
    def set_batch(self, batch: int) -> None:
        """Allocate the receive buffers: at most ``batch`` packets per :meth:`read_batch`."""
        size = max(self.mtu, 1500) + 64 + (VNET_HDR_LEN if self.vnet_hdr else 0)
        self._batch = batch
        self._buffers = [bytearray(size) for _i in range(batch)]
        self._views = [memoryview(buf) for buf in self._buffers]

    def configure(
        self, mtu: Optional[int] = None, up: bool = True, txqlen: Optional[int] = DEFAULT_TXQLEN
    ) -> None:
        """Set MTU, transmit queue length and state via rtnetlink (pyroute2)."""
        changes: Dict[str, Any] = {}
        if mtu:
            changes["mtu"] = mtu
        if txqlen:
            changes["txqlen"] = txqlen
        if up:
            changes["state"] = "up"
        if not changes:
            return

        def apply(ipr) -> bool:
            found = ipr.link_lookup(ifname=self.name)
            if not found:
                return False
            ipr.link("set", index=found[0], **changes)
            return True

        with Netlink() as netlink:
            if not netlink.call(apply):
                raise TunError(errno.ENODEV, "TUN device %r vanished after it was created" % self.name)
        if mtu:
            self.mtu = mtu
        if mtu and len(self._buffers[0]) < mtu + 64:
            self.set_batch(self._batch)

    @property
    def index(self) -> int:
        return socket.if_nametoindex(self.name)

    def open_queue(self) -> Tun:
        """Another queue of this multi-queue device (same name, same flags); not reconfigured."""
        if not self.flags & IFF_MULTI_QUEUE:
            raise TunError(errno.EINVAL, "TUN device %r was not created with multi_queue" % self.name)
        queue = Tun(
            self.name,
            mtu=self.mtu,
            multi_queue=True,
            vnet_hdr=self.vnet_hdr,
            batch=self._batch,
            _configure=False,
        )
        return queue

    def close(self) -> None:
        if not self.closed:
            self.closed = True
            os.close(self.fd)

    def __enter__(self) -> Tun:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # --- packets -----------------------------------------------------------------------------
    def read_batch(self, limit: int = 0) -> List[memoryview]:
        """Up to ``limit`` (default: the batch size) packets that are waiting, without blocking.

        The packets are views of reused buffers: valid until the next call. With ``vnet_hdr``
        the header is stripped (the device offers no offloads, so it says nothing).
        """
        limit = min(limit or self._batch, self._batch)
        fd = self.fd
        readv = os.readv
        buffers = self._buffers
        views = self._views
        skip = VNET_HDR_LEN if self.vnet_hdr else 0
        packets = []
        append = packets.append
        index = 0
        try:
            while index < limit:
                length = readv(fd, (buffers[index],))
                append(views[index][skip:length])
                index += 1
        except BlockingIOError:
            pass
        return packets

    def write(self, packet: bytes) -> bool:
        """Write one IP packet; False (and nothing raised) when the kernel refuses it."""
        try:
            if self.vnet_hdr:
                os.writev(self.fd, (VNET_HDR_NONE, packet))
            else:
                os.write(self.fd, packet)
        except OSError:
            return False
        return True

    def write_batch(self, packets: Sequence[bytes]) -> int:
        """Write every packet (plain IP packets); returns how many the kernel refused."""
        fd = self.fd
        failed = 0
        if self.vnet_hdr:
            writev = os.writev
            header = VNET_HDR_NONE
            for packet in packets:
                try:
                    writev(fd, (header, packet))
                except OSError:
                    failed += 1
        else:
            write = os.write
            for packet in packets:
                try:
                    write(fd, packet)
                except OSError:
                    failed += 1
        return failed

    def write_vnet(self, frames: Sequence[Sequence[bytes]]) -> int:
        """Write frames given as (virtio_net_hdr, packet parts...) buffers; returns refusals."""
        fd = self.fd
        writev = os.writev
        failed = 0
        for frame in frames:
            try:
                writev(fd, frame)
            except OSError:
                failed += 1
        return failed
