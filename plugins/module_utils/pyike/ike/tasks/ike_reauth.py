"""Reauthentication (RFC 7296 §2.8.3), make-before-break.

IKEv2 has no exchange that authenticates an IKE SA again: a new IKE SA is built from scratch. When
`reauth_time` (less up to 10% jitter) has passed since the IKE SA was authenticated, we initiate a new
IKE SA to the same peer (IKE_SA_INIT and IKE_AUTH with the first Child SA), then CREATE_CHILD_SA for
every other Child SA, each with the traffic selectors its predecessor negotiated. The new Child SAs are
twins of the old ones (duplicates.py): installed beside them, taking over their outbound traffic when
the old IKE SA goes. ReauthDone, queued behind all of that on the new IKE SA, retires the old one
(duplicates.retire: its traffic moves, its DELETE follows). If the new IKE SA fails, the old one stays
and we try again REAUTH_RETRY seconds later. An IKE SA rekey keeps the time of the next
reauthentication, and a reauthentication under way goes on with the rekeyed SA (ike_rekey.py).
"""

from __future__ import annotations

import dataclasses
import logging
from typing import List, Optional

from ...wire.payload import Payload
from .. import duplicates, lifetimes
from ..policy import ChildPolicy
from ..sa import DEAD, ESTABLISHED, INSTALLED, REKEYING
from .base import Task
from .child_create import ChildCreate

log = logging.getLogger("pyike.ike")

REAUTH_RETRY = 30.0  # seconds after a failed reauthentication


def start_reauth(engine, old, now: float) -> bool:
    """Build the IKE SA that replaces `old`; False when there is nothing to reauthenticate."""
    policy = engine.policies.get(old.policy.name)
    if policy is None or old.state != ESTABLISHED or old.retiring is not None or old.reauth_by is not None:
        return False
    children: List[ChildPolicy] = []
    for child in old.children:
        if child.state not in (INSTALLED, REKEYING) or child.policy is None:
            continue  # a rekeyed SA: its successor is in the list
        if any(c.name == child.name for c in children):
            continue
        children.append(_negotiated(child))
    new = engine.initiate_sa(policy, children[0] if children else None, now, remote_ip=old.remote[0])
    new.reauth_of, old.reauth_by = old, new
    for child_policy in children[1:]:
        new.tasks.initiate(ChildCreate(engine, new, child_policy), now)
    new.tasks.initiate(ReauthDone(engine, new), now)
    engine.count("reauthentications")
    log.info("%s: reauthenticating as %s (%d Child SA(s))", old.key, new.key, len(children))
    return True


class ReauthDone(Task):
    """Not an exchange: behind every exchange the new IKE SA queued, it retires the old IKE SA."""

    adoptable = True

    @property
    def what(self) -> str:
        return "reauthentication"

    def build_request(self, now: float) -> Optional[List[Payload]]:
        new, old = self.sa, self.sa.reauth_of
        late = _late_children(self.engine, old, new) if old is not None and old.state == ESTABLISHED else []
        if late:
            # Child SAs that came up on the old IKE SA while the new one was built: they are made here too,
            # and the old IKE SA goes after them.
            for child in late:
                new.tasks.initiate(ChildCreate(self.engine, new, _negotiated(child)), now)
            new.tasks.initiate(ReauthDone(self.engine, new), now)
            return None
        new.reauth_of = None
        lifetimes.schedule_reauth(self.engine, new, now)
        if old is None:
            return None  # the old IKE SA went before the new one was done: the new one just stays
        if old.reauth_by is new:
            old.reauth_by = None
        if old.state != ESTABLISHED:
            return None
        missing = [c.name for c in old.children if c.outbound_active and not c.delete_sent
                   and not duplicates.has_twin(self.engine, old, c)]  # fmt: skip
        if missing:
            log.warning(
                "%s: reauthenticated without Child SA(s) %s", new.key, ", ".join(sorted(set(missing)))
            )
        duplicates.retire(self.engine, old, now, "reauthenticated as %s" % new.key)
        return None


def _negotiated(child) -> ChildPolicy:
    """The Child SA's policy with the selectors it negotiated (§2.8.3: the new one covers the same)."""
    return dataclasses.replace(child.policy, local_ts=list(child.local_ts), remote_ts=list(child.remote_ts))


def _late_children(engine, old, new) -> list:
    underway = {
        task.policy.name for task in new.tasks.tasks() if isinstance(task, ChildCreate) and task.policy
    }
    return [
        child
        for child in old.children
        if child.policy is not None
        and not child.going
        and child.name not in underway
        and not any(c.name == child.name for c in new.children)
    ]


def on_established(engine, sa, now: float) -> None:
    """Hook of Engine.established (IKE_AUTH done, either end)."""
    if sa.reauth_of is None:
        lifetimes.schedule_reauth(engine, sa, now)
    else:
        sa.reauth_at = None  # ReauthDone schedules it once the new IKE SA carries everything


def on_dropped(sa, now: Optional[float]) -> None:
    """Hook of Engine.drop_sa, before the IKE SA and its Child SAs go."""
    old = sa.reauth_of
    if old is not None and old.reauth_by is sa:  # the new IKE SA failed: the old one stays, try again later
        old.reauth_by = None
        if old.state == ESTABLISHED and now is not None:
            old.reauth_at = now + REAUTH_RETRY
            log.warning("%s: reauthentication failed; next try in %.0fs", old.key, REAUTH_RETRY)
    new = sa.reauth_by
    if new is not None and new.state != DEAD and new.reauth_of is sa:
        new.reauth_of = None  # the old IKE SA went before the new one was done: the new one just stays
    sa.reauth_by = sa.reauth_of = None
