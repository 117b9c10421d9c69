"""Traps with the kernel dataplane (no XFRM acquires yet): the stand-in initiates at once, again after each
failure with a doubling back-off up to its ceiling, watches the child once it is up, backs off from a
peer that keeps closing it, survives an initiate that raises, and goes with a terminate."""

from __future__ import annotations

from pyike.runtime.actions import STAND_IN_DELAYS, STAND_IN_WATCH, TrapStandIns


class RecordingLoop:
    """call_soon/call_later kept in a list; `run_due` runs them in order (time is the test's)."""

    def __init__(self):
        self.calls = []

    def call_soon(self, fn, *args):
        return self.call_later(0.0, fn, *args)

    def call_later(self, delay, fn, *args):
        handle = Handle(delay, fn, args)
        self.calls.append(handle)
        return handle

    def run_due(self):
        calls, self.calls = self.calls, []
        for handle in calls:
            if not handle.cancelled:
                handle.fn(*handle.args)
        return [handle.delay for handle in calls if not handle.cancelled]


class Handle:
    def __init__(self, delay, fn, args):
        self.delay, self.fn, self.args, self.cancelled = delay, fn, args, False

    def cancel(self):
        self.cancelled = True


def stand_ins_with(up):
    """A stand-in whose initiate records and answers False (up already) for the children in ``up``."""
    loop, initiated = RecordingLoop(), []

    def initiate(conn, child):
        if (conn, child) in up:
            return False
        initiated.append((conn, child))
        return True

    return TrapStandIns(initiate, loop), loop, initiated


def test_a_stand_in_initiates_backs_off_after_failures_and_watches_once_up():
    up = set()
    stand_ins, loop, initiated = stand_ins_with(up)
    stand_ins.install("vpn", "net", "dpd_action")
    assert initiated == [] and loop.run_due() == [0.0] and initiated == [("vpn", "net")]
    delays = []
    for _failure in range(12):
        stand_ins.failed("vpn")
        stand_ins.failed("vpn")  # a second failure report before the retry adds no second timer
        delays += loop.run_due()
    assert delays[:4] == [2.0, 4.0, 8.0, 16.0] and max(delays) == STAND_IN_DELAYS[1] == delays[-1]
    assert len(initiated) == 13
    stand_ins.failed("other")  # another connection's failure changes nothing here
    assert loop.run_due() == []
    up.add(("vpn", "net"))
    stand_ins.child_up("vpn", "net")
    assert loop.run_due() == [STAND_IN_WATCH] and len(initiated) == 13  # up: only watched
    assert loop.run_due() == [STAND_IN_WATCH]  # and watched again
    up.clear()  # the child went without a failure (the peer deleted it): the next look initiates
    assert loop.run_due() == [STAND_IN_WATCH] and len(initiated) == 14
    stand_ins.failed("vpn")
    assert loop.run_due() == [2.0]  # the back-off started again from its first step once the child was up


def test_a_peer_that_keeps_closing_the_child_meets_the_back_off():
    stand_ins, loop, initiated = stand_ins_with(set())
    stand_ins.install("vpn", "net", "close_action")
    loop.run_due()
    delays = []
    for _close in range(4):
        stand_ins.install("vpn", "net", "close_action")  # the engine's InstallTrap after each close
        delays += loop.run_due()
    assert delays == [2.0, 4.0, 8.0, 16.0] and len(initiated) == 5


def test_an_initiate_that_raises_is_retried_later_and_a_terminate_ends_the_stand_in():
    loop = RecordingLoop()
    calls = []

    def initiate(conn, child):
        calls.append(conn)
        raise KeyError(conn)

    stand_ins = TrapStandIns(initiate, loop)
    stand_ins.install("vpn", "net", "start_action")
    assert loop.run_due() == [0.0] and loop.run_due() == [2.0] and loop.run_due() == [4.0] and len(calls) == 3
    stand_ins.remove()
    assert loop.run_due() == [] and len(calls) == 3
