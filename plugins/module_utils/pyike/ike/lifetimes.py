"""When SAs are rekeyed, reauthenticated and deleted: lifetimes with jitter (RFC 7296 §2.8) and volume
lifetimes (RFC 4301 §4.4.2.1, RFC 4303 §3.3.3). timers.py starts the tasks when they are due.

Time lifetimes follow strongSwan: a rekey at rekey_time less up to 10% at random (so that both ends
rarely rekey at once, §2.8.1), a hard lifetime at rekey_time + 10%. Byte and packet limits likewise: the
soft limit is rekey_bytes less up to 10% at random, the hard one life_bytes, by default rekey_bytes + 10%;
a life_bytes alone rekeys at life_bytes / 1.1 rather than cutting the tunnel (as VyOS derives it). The
engine never sees packets: each Child SA's limits go to the runtime (ChildSaUp.limits), which calls
Engine.child_volume_reached when one is crossed. Without extended sequence numbers the outbound SA stops
at 2^32-1 (RFC 4303 §3.3.3); the engine asks for a rekey SEQ_REKEY_MARGIN packets before.

Every state ends by a deadline: a Child SA replaced by a rekey (REKEYED) that the peer does not delete,
or whose DELETE is never answered, goes at its `expire_at`, one retransmission span later.
"""

from __future__ import annotations

from typing import List, Tuple

from .events import VolumeLimits
from .sa import INSTALLED, REKEYED, ChildSa, IkeSa

HARD_LIFETIME_FACTOR = 1.1  # strongSwan: life_time = rekey_time * 110% by default
JITTER_FRACTION = 0.1  # strongSwan: rand_time = over_time = 10% of rekey_time
RETRY_DELAY = 2.0  # seconds (plus jitter) before an exchange the peer refused for now goes again (§2.25)
FAILURE_DELAY = 10 * RETRY_DELAY  # seconds before an IKE SA rekey that failed outright goes again
SEQ_MAX = 0xFFFFFFFF  # the last sequence number of an ESP SA without ESN (RFC 4303 §2.2)
SEQ_REKEY_MARGIN = 1 << 24  # rekey this many packets before it: minutes even at a million packets/s
LIFE_FACTOR_NUM, LIFE_FACTOR_DEN = 11, 10  # life = rekey + 10% (strongSwan's default), and back


def jitter(engine, span: float) -> float:
    fraction = int.from_bytes(engine.random_bytes(2), "big") / 65535.0
    return span * JITTER_FRACTION * fraction


# --- Child SAs -----------------------------------------------------------------------------------------
def schedule_child(engine, child: ChildSa, now: float) -> None:
    rekey_time = child.policy.rekey_time if child.policy is not None else 0
    if rekey_time and rekey_time > 0:
        child.rekey_at = now + rekey_time - jitter(engine, rekey_time)
        child.expire_at = now + child_life_time(child)


def child_life_time(child: ChildSa) -> float:
    """The hard lifetime in seconds (0: none): the latest the engine deletes the Child SA."""
    rekey_time = child.policy.rekey_time if child.policy is not None else 0
    return rekey_time * HARD_LIFETIME_FACTOR if rekey_time and rekey_time > 0 else 0.0


def retry_at(engine, now: float, expire_at=None, spread: float = RETRY_DELAY) -> float:
    """When to try again an exchange the peer refused for now (TEMPORARY_FAILURE, a lost collision):
    after RETRY_DELAY plus jitter over `spread`, so two ends that collided do not meet again, and well
    before `expire_at`, the hard lifetime of what the exchange would replace."""
    delay = RETRY_DELAY + jitter(engine, spread)
    if expire_at is not None:
        delay = min(delay, max(0.1, (expire_at - now) / 3))
    return now + delay


def await_peer_delete(engine, child: ChildSa, now: float) -> None:
    """`child` was replaced and the peer deletes it; should that DELETE not come while the peer could
    still be retransmitting it, its expiry deletes it from our side."""
    child.move_to(REKEYED)
    child.rekey_at = None
    deadline = now + engine.retransmit.span()
    child.expire_at = deadline if child.expire_at is None else min(child.expire_at, deadline)


def volume_pair(rekey: int, life: int) -> Tuple[int, int]:
    """(rekey, life) with the missing one derived from the other; (0, 0) without limits."""
    if rekey <= 0 and life <= 0:
        return 0, 0
    if rekey <= 0:
        rekey = max(1, life * LIFE_FACTOR_DEN // LIFE_FACTOR_NUM)
    if life <= 0:
        life = rekey + max(1, rekey * (LIFE_FACTOR_NUM - LIFE_FACTOR_DEN) // LIFE_FACTOR_DEN)
    return rekey, life


def volume_limits(engine, child: ChildSa, esn: bool) -> VolumeLimits:
    policy = child.policy
    limits = VolumeLimits(soft_seq=0 if esn else SEQ_MAX - SEQ_REKEY_MARGIN)
    if policy is None:
        return limits
    for unit in ("bytes", "packets"):
        rekey, life = volume_pair(getattr(policy, "rekey_" + unit), getattr(policy, "life_" + unit))
        if rekey:  # soft <= rekey < life
            setattr(limits, "soft_" + unit, max(1, rekey - int(jitter(engine, rekey))))
            setattr(limits, "hard_" + unit, life)
    return limits


# --- IKE SAs -------------------------------------------------------------------------------------------
def schedule_ike(engine, sa: IkeSa, now: float) -> None:
    rekey_time = sa.policy.rekey_time
    sa.rekey_at = now + rekey_time - jitter(engine, rekey_time) if rekey_time and rekey_time > 0 else None


def schedule_reauth(engine, sa: IkeSa, now: float) -> None:
    reauth_time = sa.policy.reauth_time
    sa.reauth_at = (
        now + reauth_time - jitter(engine, reauth_time) if reauth_time and reauth_time > 0 else None
    )


def deadlines(sa: IkeSa) -> List[float]:
    """When something is due on an established IKE SA (timers.run does it)."""
    out = []
    for child in sa.children:
        if child.state == INSTALLED and child.rekey_at is not None:
            out.append(child.rekey_at)
        if child.expire_at is not None:
            out.append(child.expire_at)
    if sa.rekey_at is not None:
        out.append(sa.rekey_at)
    if sa.reauth_at is not None and sa.reauth_by is None:
        out.append(sa.reauth_at)
    if sa.policy.dpd_delay > 0 and sa.tasks.idle:
        out.append(sa.last_received_at + sa.policy.dpd_delay)
    return out
