"""Reauthentication (RFC 7296 §2.8.3), make-before-break. A mixin of the Engine.

IKEv2 has no exchange that authenticates an IKE SA again: a new IKE SA is built from scratch. When
`reauth_time` (less up to 10% jitter) has passed since the IKE SA was authenticated, we initiate a new
IKE SA to the same peer (IKE_SA_INIT and IKE_AUTH with the first Child SA), then CREATE_CHILD_SA for
every other Child SA, each with the traffic selectors its predecessor negotiated. The new Child SAs are
twins of the old ones (duplicates.py): installed beside them, taking over their outbound traffic when
the old IKE SA goes. Once every exchange on the new IKE SA is done, the old IKE SA is deleted with its
Child SAs. If the new IKE SA fails, the old one stays and we try again REAUTH_RETRY seconds later.

An IKE SA rekey (§2.18) keeps the time of the next reauthentication, as strongSwan does.
"""

from __future__ import annotations

import dataclasses
import logging
from dataclasses import dataclass, field
from typing import List, Optional

from .duplicates import DuplicatesMixin
from .policy import ChildPolicy
from .sa import DEAD, ESTABLISHED, INSTALLED, REKEYING, IkeSa

log = logging.getLogger("pyike.ike")

REAUTH_RETRY = 30.0  # seconds after a failed reauthentication


@dataclass
class Reauth:
    """Carried by the new IKE SA while it replaces `old`."""

    old: IkeSa
    children: List[ChildPolicy] = field(default_factory=list)  # after IKE_AUTH, with CREATE_CHILD_SA
    started: bool = False  # the CREATE_CHILD_SA requests are queued


class ReauthMixin(DuplicatesMixin):
    # --- scheduling ------------------------------------------------------------------------
    def _schedule_reauth(self, sa: IkeSa, now: float) -> None:
        reauth_time = sa.policy.reauth_time
        sa.reauth_at = (
            now + reauth_time - self._jitter(reauth_time) if reauth_time and reauth_time > 0 else None
        )

    def _reauth_deadlines(self, sa: IkeSa) -> List[float]:
        deadlines = []
        if sa.reauth_at is not None and sa.reauth_by is None:
            deadlines.append(sa.reauth_at)
        if self._reauth_ready(sa):
            deadlines.append(sa.established_at or sa.created_at)  # at once
        return deadlines

    def _reauth_timers(self, sa: IkeSa, now: float) -> None:
        if self._reauth_ready(sa):
            self._finish_reauth(sa, now)
        if sa.reauth_at is not None and now >= sa.reauth_at and sa.reauth_by is None:
            sa.reauth_at = None
            self._start_reauth(sa, now)

    # --- commands --------------------------------------------------------------------------
    def reauthenticate(self, conn: str, now: float) -> int:
        """Reauthenticate the established IKE SAs of `conn` now; returns how many were started."""
        started = 0
        for sa in list(self.sas.values()):
            if (
                sa.policy.name == conn
                and sa.state == ESTABLISHED
                and sa.reauth_by is None
                and sa.reauth is None
                and sa.retiring is None
            ):
                if self._start_reauth(sa, now):
                    started += 1
        return started

    # --- the new IKE SA ----------------------------------------------------------------------
    def _start_reauth(self, old: IkeSa, now: float) -> bool:
        policy = self.policies.get(old.policy.name)
        if policy is None or old.state != ESTABLISHED or old.retiring is not None:
            return False
        children: List[ChildPolicy] = []
        for child in old.children:
            if child.state not in (INSTALLED, REKEYING) or child.delete_sent or child.policy is None:
                continue  # a rekeyed SA: its successor is in the list
            if any(c.name == child.name for c in children):
                continue
            # §2.8.3: the new Child SAs cover what the old ones negotiated
            children.append(
                dataclasses.replace(
                    child.policy, local_ts=list(child.local_ts), remote_ts=list(child.remote_ts)
                )
            )
        new = self._initiate_sa(policy, children[0] if children else None, now, remote_ip=old.remote[0])
        new.reauth = Reauth(old, children[1:])
        old.reauth_by = new
        self._count("reauthentications")
        log.info("%s: reauthenticating as %s (%d Child SA(s))", old.key, new.key, len(children))
        return True

    def _reauth_established(self, new: IkeSa, now: float) -> None:
        """Hook: the new IKE SA is up (its first Child SA follows); queue the other Child SAs."""
        reauth: Optional[Reauth] = new.reauth
        if reauth is None or reauth.started:
            return
        reauth.started = True
        new.reauth_at = None
        for child_policy in reauth.children:
            self._start_create_child(new, child_policy, now)

    def _reauth_ready(self, new: IkeSa) -> bool:
        reauth = new.reauth
        return (
            reauth is not None
            and reauth.started
            and new.state == ESTABLISHED
            and new.pending is None
            and not new.queued
        )

    def _finish_reauth(self, new: IkeSa, now: float) -> None:
        old = new.reauth.old
        new.reauth = None
        if old.reauth_by is new:
            old.reauth_by = None
        self._schedule_reauth(new, now)
        if old.state != ESTABLISHED:
            return
        missing = [
            c.name
            for c in old.children
            if c.outbound_active and not self._has_twin(old, c) and not c.delete_sent
        ]
        if missing:
            log.warning(
                "%s: reauthenticated without Child SA(s) %s", new.key, ", ".join(sorted(set(missing)))
            )
        self._retire_ike_sa(old, now, "reauthenticated as %s" % new.key)

    # --- hooks ---------------------------------------------------------------------------------
    def _ike_sa_established(self, sa: IkeSa, now: float) -> None:
        """Hook of Engine._established (IKE_AUTH done, on either end)."""
        self._schedule_reauth(sa, now)
        self._reauth_established(sa, now)
        self._note_duplicate(sa, now)

    def _ike_sa_dropped(self, sa: IkeSa, now: Optional[float]) -> None:
        """Hook of Engine._drop_sa, before the SA and its Child SAs go."""
        reauth = sa.reauth
        if reauth is not None:  # the new IKE SA failed: the old one stays, try again later
            sa.reauth = None
            old = reauth.old
            if old.reauth_by is sa:
                old.reauth_by = None
                if old.state == ESTABLISHED and now is not None:
                    old.reauth_at = now + REAUTH_RETRY
                    log.warning("%s: reauthentication failed; next try in %.0fs", old.key, REAUTH_RETRY)
        new = sa.reauth_by
        if new is not None and new.state != DEAD and new.reauth is not None and new.reauth.old is sa:
            new.reauth = None  # the old IKE SA went before the new one was done: the new one just stays
            if new.state == ESTABLISHED and now is not None:
                self._schedule_reauth(new, now)
        sa.reauth_by = None

    def _reauth_inherit(self, old: IkeSa, new: IkeSa) -> None:
        """An IKE SA rekey (§2.18): the new IKE SA keeps the reauthentication time and any running one."""
        new.reauth_at = old.reauth_at
        if old.reauth_by is not None and old.reauth_by.reauth is not None:
            new.reauth_by, old.reauth_by = old.reauth_by, None
            new.reauth_by.reauth.old = new
