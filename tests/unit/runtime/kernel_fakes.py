"""Recording stand-ins for the kernel's XFRM table and the route manager, for KernelDataplane's
bookkeeping tests (what it asks of the kernel, in which order, and what stays after a refusal); the
real kernel answers in the netns and VM tests."""

import dataclasses
import errno
from types import SimpleNamespace

from pyike.runtime.xfrm import XfrmError


class FakeXfrm:
    """The XFRM calls KernelDataplane makes, kept in dicts; ``fail_at`` refuses the Nth request."""

    def __init__(self, fail_at=None, fail_errno=errno.ENOBUFS):
        self.states, self.policies, self.requests = {}, {}, 0
        self.fail_at, self.fail_errno = fail_at, fail_errno
        self.packets_by_spi = {}

    def _request(self, what):
        self.requests += 1
        if self.fail_at is not None and self.requests == self.fail_at:
            raise XfrmError(self.fail_errno, "refused %s" % what)

    def add_state(self, spec, update=False):
        self._request("NEWSA")
        assert spec.spi not in self.states
        self.states[spec.spi] = spec

    def delete_state(self, dst, spi, src=None):
        self._request("DELSA")
        if self.states.pop(spi, None) is None:
            raise XfrmError(errno.ESRCH, "no such state")

    def counters(self, dst, spi, src):  # GETAE
        self._request("GETAE")
        if spi not in self.states:
            raise XfrmError(errno.ESRCH, "no such state")
        packets = self.packets_by_spi.get(spi, 0)
        return SimpleNamespace(bytes=100 * packets, packets=packets, oseq=packets)

    def add_policy(self, spec, update=False):
        self._request("UPDPOLICY" if update else "NEWPOLICY")
        key = (repr(spec.selector), spec.direction)
        if not update and key in self.policies:
            raise XfrmError(errno.EEXIST, "NEWPOLICY: File exists")  # as the kernel answers
        assert not update or key in self.policies  # the daemon updates only what it installed
        self.policies[key] = dataclasses.replace(spec)

    def delete_policy(self, selector, direction):
        self._request("DELPOLICY")
        if self.policies.pop((repr(selector), direction), None) is None:
            raise XfrmError(errno.ENOENT, "no such policy")

    def out_spis(self):
        return {spec.spi for (_sel, direction), spec in self.policies.items() if direction == "out"}

    def close(self):
        pass


class FakeRoutes:
    def __init__(self):
        self.routes = []

    def add(self, network, source=None, via=None, via_source=None):
        assert via_source == "192.0.2.1"
        self.routes.append((network, source, via))

    def remove(self, network, source=None):
        self.routes.remove(next(r for r in self.routes if r[:2] == (network, source)))

    def cleanup(self):
        self.routes = []

    def flush_protocol(self):
        return 0

    def close(self):
        pass
