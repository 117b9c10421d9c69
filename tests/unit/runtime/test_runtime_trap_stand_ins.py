"""Traps with the kernel dataplane (no XFRM acquires yet): the stand-in initiates at once, again after each
failure with a doubling back-off up to its ceiling, stops once the child is up, and goes with a terminate."""

from __future__ import annotations

from pyike.runtime.actions import STAND_IN_DELAYS, TrapStandIns


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


def test_a_stand_in_initiates_backs_off_after_failures_and_stops_when_up():
    loop, initiated = RecordingLoop(), []
    stand_ins = TrapStandIns(lambda conn, child: initiated.append((conn, child)), loop)
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
    stand_ins.remove(keep=lambda conn, child, _origin: (conn, child) != ("vpn", "net"))  # the child is up
    stand_ins.failed("vpn")
    assert loop.run_due() == [] and len(initiated) == 13


def test_a_terminate_cancels_the_pending_retry():
    loop, initiated = RecordingLoop(), []
    stand_ins = TrapStandIns(lambda conn, child: initiated.append((conn, child)), loop)
    stand_ins.install("vpn", "net", "close_action")
    loop.run_due()
    stand_ins.failed("vpn")
    stand_ins.remove()
    assert loop.run_due() == [] and initiated == [("vpn", "net")]
