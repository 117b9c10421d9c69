"""Traps with the kernel dataplane (start_action, close_action and dpd_action trap): XFRM policies whose
template has no state yet, and the kernel's acquires. A mixin of :class:`.kernel_dataplane.KernelDataplane`.

A trap installs, per pair of its selectors, the out, in and fwd policies a Child SA of those selectors
would have, with a reqid of its own and no SPI (RFC 4301 §4.4.1: PROTECT, no SA yet). An outbound
packet that meets the out policy finds no state for the template: the kernel drops it, keeps a larval
state for the template (net.core.xfrm_acq_expires, 30 s, during which it asks no more) and multicasts
XFRM_MSG_ACQUIRE (RFC 4301 §5.1: invoke key management). :class:`.xfrm.XfrmEvents` reads it and
the trap's owner (runtime/traps.py) initiates the child. The in and fwd policies drop plaintext from
the remote selectors meanwhile.

The kernel knows a policy by its selector and direction, not its priority, so a Child SA negotiated with
the trap's selectors takes the trap's policies over (XFRM_MSG_UPDPOLICY) and its reqid: its outbound
state then replaces the larval one (xfrm_state_add() deletes the acquire state of the same template).
When the Child SA goes, its policies turn back into the trap's. A Child SA with narrowed selectors has
policies of its own, preferred for their priority. strongSwan's kernel-netlink shares policies alike.
Routes to the remote selectors (table 220) are set as for a Child SA, so the gateway's own first packet
meets the trap too.
"""

from __future__ import annotations

import dataclasses
import logging
from typing import Any, Callable, List, Optional, Tuple

from .children import DataplaneError, _selectors
from .xfrm import PolicySpec
from .xfrm_selectors import policy_specs

log = logging.getLogger("pyike.kernel")

ANY = {False: "0.0.0.0", True: "::"}  # noqa: S104 - a template's unspecified source, not a bind
OnAcquire = Callable[[str], None]  # the packet's flow, "10.1.0.10 -> 10.2.0.10"


class KernelTrap:
    __slots__ = ("name", "on_acquire", "policies", "reqid", "routes")

    def __init__(self, name: str, reqid: int, on_acquire: OnAcquire) -> None:
        self.name = name
        self.reqid = reqid
        self.on_acquire = on_acquire
        self.policies: List[PolicySpec] = []
        self.routes: List[Tuple[str, Optional[str]]] = []


class KernelTraps:
    """install_trap / remove_trap and the acquires (mixed into KernelDataplane, which sets up ``_traps``
    and reads the kernel's events)."""

    def install_trap(self, name: str, local_ts: Any, remote_ts: Any, local: Optional[str], peer: Optional[str],
                     on_acquire: OnAcquire, route_source: Any = None, if_id: int = 0) -> None:  # fmt: skip
        """Policies and routes of a trap; ``on_acquire`` is called for each of the kernel's acquires.
        On failure nothing of it stays installed."""
        if name in self._traps:
            raise DataplaneError("trap %r is installed already" % name)
        if not peer:
            raise DataplaneError(
                "%s: a trap in kernel mode needs the peer's address (none configured or resolved yet)" % name
            )
        local = local or ANY[":" in peer]  # the kernel then takes the route's source
        trap = KernelTrap(name, self._reqid(), on_acquire)
        local_sel, remote_sel = _selectors(local_ts), _selectors(remote_ts)
        specs = policy_specs(local_sel, remote_sel, local, peer, trap.reqid, if_id=if_id)
        for spec in specs:
            other = self._trap_policy(spec)
            if other is not None:  # the kernel has one policy per selector and direction
                raise DataplaneError("trap %s: its selectors %s -> %s are trap %s's already"
                                     % (name, spec.selector.src, spec.selector.dst, other[0]))  # fmt: skip
        self._traps[name] = trap
        try:
            for spec in specs:
                if self._child_policy(spec) is None:  # a Child SA holds it now; it reverts to this one later
                    self.xfrm.add_policy(spec)
                trap.policies.append(spec)
            if not if_id:  # route-based: the interface's routes lead in
                trap.routes = self._add_routes(name, remote_sel, peer, local, route_source)
        except (OSError, ValueError):
            self._remove_trap(trap)
            raise

    def remove_trap(self, name: str) -> None:
        trap = self._traps.get(name)
        if trap is not None:
            self._remove_trap(trap)

    def _remove_trap(self, trap: KernelTrap) -> None:
        self._traps.pop(trap.name, None)
        self._remove_routes(trap.name, trap.routes)
        trap.routes = []
        for spec in trap.policies:
            if self._child_policy(spec) is None:
                self._quietly(self.xfrm.delete_policy, spec.selector, spec.direction)
        trap.policies = []

    # --- policies shared by a trap and a Child SA ----------------------------------------------
    def _trap_reqid(self, name: Optional[str], specs: List[PolicySpec]) -> Optional[int]:
        """The reqid of trap ``name`` for a Child SA whose policies are ``specs``: only when they are
        exactly the trap's (a narrowed child must not share the reqid, or the trap's wider policies
        would send and accept traffic outside the negotiated selectors through its states) and no
        other installed child has it."""
        trap = self._traps.get(name) if name else None
        if trap is None or any(child.reqid == trap.reqid for child in self._children.values()):
            return None
        if {_policy_key(spec) for spec in specs} != {_policy_key(spec) for spec in trap.policies}:
            return None
        return trap.reqid

    def _trap_policy(self, spec: PolicySpec) -> Optional[Tuple[str, PolicySpec]]:
        """(trap name, its policy) for the kernel policy ``spec`` names, if a trap has it."""
        key = _policy_key(spec)
        for trap in self._traps.values():
            for mine in trap.policies:
                if _policy_key(mine) == key:
                    return trap.name, mine
        return None

    def _child_policy(self, spec: PolicySpec) -> Optional[PolicySpec]:
        key = _policy_key(spec)
        for child in self._children.values():
            for theirs in child.policies:
                if _policy_key(theirs) == key:
                    return theirs
        return None

    def _acquired(self, acquire: Any) -> None:
        """An XFRM_MSG_ACQUIRE (:class:`.xfrm.AcquireInfo`): tell the trap whose reqid it names."""
        trap = next((t for t in self._traps.values() if t.reqid == acquire.reqid), None)
        if trap is None:
            return  # another daemon's policy, or a trap removed meanwhile
        try:
            trap.on_acquire(acquire.flow)
        except Exception:  # the trap owner's bug must not stop the dataplane
            log.exception("%s: the acquire for %s failed", trap.name, acquire.flow)


def _policy_key(spec: PolicySpec) -> Tuple[str, tuple]:
    """How the kernel knows a policy: direction and selector."""
    return spec.direction, dataclasses.astuple(spec.selector)
