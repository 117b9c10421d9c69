"""What a fuzz input did to its engine: a fingerprint of the engine's state, and the invariants checked after
every input that changed it.

The fingerprint covers whatever later inputs could depend on: SAs and their states, message IDs, the
request in flight, the cached response, children, reassembly, the half-open table and guard, timers that
the engine sets from random draws (counted through the harness' random source).  An input that leaves it
unchanged was dropped (or answered statelessly), so the next mutant can use the same engine; one that
changes it forces a rebuild, so that every mutant meets the state its original message met.
"""

from __future__ import annotations

import contextlib
import logging
import re
from typing import List, Optional, Tuple

from pyike.ike.sa import AUTHENTICATING, CONNECTING, DEAD, ESTABLISHED

# Far enough to pass every timeout (half-open 30 s, five retransmissions ~83 s, reassembly 30 s,
# IKE_FOLLOWUP_KE), short of the lifetimes that start new exchanges (child rekey 3600 s less jitter).
HORIZON_STEP = 100.0
HORIZON_STEPS = 25


def _child(child) -> tuple:
    return (child.name, child.spi_in, child.spi_out, child.state, child.outbound_active, child.replaced_by,
            child.rekey_at, child.expire_at)  # fmt: skip


def _task(task) -> tuple:
    """A task by its kind and the state of its exchange that later inputs can meet."""
    return (type(task).__name__, task.exchange, getattr(task, "collision", None) is not None,
            getattr(task, "followups", None) is not None, getattr(task, "waiter", None) is not None,
            getattr(task, "cookie", b""), getattr(task, "cookie_tries", 0), getattr(task, "ke_tries", 0))  # fmt: skip


def _sa(sa) -> tuple:
    pending = sa.tasks.pending
    reassembler = sa.reassembler
    return (
        sa.key,
        sa.state,
        sa.spi_i,
        sa.spi_r,
        sa.tasks.next_request_id,
        sa.tasks.next_peer_request_id,
        None if pending is None else (pending.message_id, pending.exchange, pending.tries, pending.next_at),
        None if sa.tasks.last_response is None else sa.tasks.last_response.message_id,
        tuple(_task(t) for t in sa.tasks.tasks()),
        tuple(sorted((link, _task(t)) for link, t in sa.tasks.waiting.items())),
        tuple(_child(c) for c in sa.children),
        sa.intermediate_done,
        len(sa.additional_kes),
        sa.peer_id,
        sa.policy.name,
        None if reassembler is None else _reassembler(reassembler),
        sa.reauth_by is not None,
        sa.reauth_of is not None,
        sa.retiring,
        sa.delete_by,
        sa.duplicate_at,
        sa.local,
        sa.remote,
        sa.last_received_at,
        sa.established_at,
        sa.rekey_at,
        sa.reauth_at,
        sa.next_keepalive_at,
        sa.ike_auth_mid,
        sa.fragmentation,
        sa.max_datagram,
        None if sa.peer_hashes is None else tuple(sa.peer_hashes),
        len(sa.peer_certreq),
        sa.peer_auth,
    )


def _reassembler(reassembler) -> tuple:
    """Partial messages (fragment numbers held) and the Message IDs last completed: a completed message
    makes later fragments with its Message ID duplicates, so it is state like any other."""
    partial = tuple(sorted((direction, message_id, p.exchange, p.total, tuple(sorted(p.pieces)), p.size)
                           for direction, (message_id, p) in reassembler._partial.items()))  # fmt: skip
    return (partial, tuple(sorted(reassembler._completed.items())))


def fingerprint(engine, drawn: List[int]) -> tuple:
    return (
        tuple(sorted((spi, _sa(sa)) for spi, sa in engine.sas.items())),
        tuple(sorted((key, half.key) for key, half in engine.half_open.items())),
        engine.guard.total,
        tuple(sorted(engine.guard._per_ip.items())),
        engine.fragment_budget.used
        if hasattr(engine.fragment_budget, "used")
        else repr(engine.fragment_budget),
        tuple(sorted(engine.restarts.items())),
        engine._serial,
        drawn[0],
    )


Problem = Tuple[str, str]  # (what kind of violation, for grouping; the text with the details)


def state_invariants(engine, before: Optional[dict] = None) -> List[Problem]:
    """Violations visible right after an input (``before``: message IDs of the SAs before it)."""
    problems = []
    for spi, sa in engine.sas.items():
        if sa.state == DEAD:
            problems.append(("dead_sa_in_table", "%s is DEAD but still in Engine.sas" % sa.key))
        if spi != sa.our_spi:
            problems.append(
                (
                    "sa_table_key",
                    "%s is filed under %s, its SPI is %s" % (sa.key, spi.hex(), sa.our_spi.hex()),
                )
            )
        if sa.initiator and sa.state == AUTHENTICATING and sa.tasks.pending is None and sa.tasks.idle:
            problems.append(("wedged_authenticating", "%s is AUTHENTICATING with no request in flight (nothing "
                             "will retransmit or time it out)" % sa.key))  # fmt: skip
        if before is not None and spi in before:
            old_next = before[spi]
            if sa.tasks.next_peer_request_id > old_next and (
                sa.tasks.last_response is None
                or sa.tasks.last_response.message_id != sa.tasks.next_peer_request_id - 1
            ):
                problems.append(("request_without_response", "%s consumed message ID %d but cached no response "
                                 "for it (the peer's retransmissions go unanswered)" % (sa.key, sa.tasks.next_peer_request_id - 1)))  # fmt: skip
    for (_spi_i, _ip), half in engine.half_open.items():
        if engine.sas.get(half.our_spi) is not half:
            problems.append(("half_open_orphan", "half-open %s is not in Engine.sas" % half.key))
        elif half.state != CONNECTING or half.initiator:
            problems.append(("half_open_state", "half-open %s is %s" % (half.key, half.state)))
    # Half-open: a responder SA that answered IKE_SA_INIT and has not finished IKE_AUTH.  The guard must count
    # every one of them, or a peer can hold more than the per-address limit (issue 10, item 1).
    per_ip: dict = {}
    for sa in engine.sas.values():
        if not sa.initiator and sa.state == CONNECTING:
            per_ip[sa.remote[0]] = per_ip.get(sa.remote[0], 0) + 1
    guard_counts = {ip: engine.guard.count(ip) for ip in set(per_ip) | set(engine.guard._per_ip)}
    if engine.guard.total != sum(per_ip.values()) or any(
        guard_counts[ip] != per_ip.get(ip, 0) for ip in guard_counts
    ):
        problems.append(("half_open_count", "the guard counts %d half-open SAs %s, Engine.sas holds %d responder "
                         "SAs in CONNECTING %s" % (engine.guard.total, dict(engine.guard._per_ip),
                                                   sum(per_ip.values()), per_ip)))  # fmt: skip
    return problems


def message_ids(engine) -> dict:
    return {spi: sa.tasks.next_peer_request_id for spi, sa in engine.sas.items()}


def after_horizon(engine, now: float) -> List[Problem]:
    """Tick far into the future (no peer answers): only ESTABLISHED SAs may remain, nothing half-open."""
    problems = []
    for step in range(1, HORIZON_STEPS + 1):
        engine.tick(now + step * HORIZON_STEP)
        engine.pop_events()
    for sa in engine.sas.values():
        if sa.state != ESTABLISHED:
            role = "initiator" if sa.initiator else "responder"
            problems.append(("sa_outlives_timeouts (%s, IKE SA %s)" % (sa.state, role),
                             "%s still %s %.0f s later, nothing left to time it out"
                             % (sa.key, sa.state, HORIZON_STEP * HORIZON_STEPS)))  # fmt: skip
    if engine.half_open or engine.guard.total:
        problems.append(("half_open_outlives_timeouts", "%d half-open SAs in the table, %d counted by the guard"
                         % (len(engine.half_open), engine.guard.total)))  # fmt: skip
    return problems


CONTROL = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")  # a tab is harmless; newlines and escapes forge log lines


class LogWatch(logging.Handler):
    """Formats every engine log record (INFO and up) and notes those with control characters in them:
    peer-supplied text must be escaped before it reaches a log line (issue 10, item 8). Keeps the
    exceptions that the engine caught and logged with their traceback (its handler errors): for the
    fuzzer those are crashes like any that escaped, only the daemon survives them."""

    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.problems: List[Problem] = []
        self.caught: List[BaseException] = []

    def emit(self, record: logging.LogRecord) -> None:
        if record.exc_info and record.exc_info[1] is not None:
            self.caught.append(record.exc_info[1])
        if record.levelno < logging.INFO:
            return
        try:
            text = record.getMessage()
        except Exception as exc:
            self.problems.append(
                ("log_record_unformattable", "%r %% %r: %s" % (record.msg, record.args, exc))
            )
            return
        if CONTROL.search(text):
            self.problems.append(("log_injection (%s)" % record.levelname, "control characters in a log line: %r"
                                  % text[:300]))  # fmt: skip

    def take(self) -> List[Problem]:
        problems, self.problems = self.problems, []
        return problems

    def take_caught(self) -> List[BaseException]:
        caught, self.caught = self.caught, []
        return caught


WATCH = LogWatch()


@contextlib.contextmanager
def watching_logs():
    """Route the engine's log records (INFO and up) to ``WATCH`` only, and put the logger back afterwards
    (the slice runs inside pytest, where other tests read the engine's logs)."""
    logger = logging.getLogger("pyike")
    saved = (logger.level, logger.propagate)
    logger.addHandler(WATCH)
    logger.setLevel(logging.DEBUG)  # the engine logs the traceback of an error it caught at DEBUG
    logger.propagate = False
    try:
        yield WATCH
    finally:
        logger.removeHandler(WATCH)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]
        WATCH.take()
        WATCH.take_caught()
