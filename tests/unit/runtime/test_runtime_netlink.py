"""A slow machine (issue 10, item 12): the netlink helper has no time limit that a starved start can hit,
and the daemon's fatal errors always say what failed (a TimeoutError's message is empty)."""

from __future__ import annotations

import asyncio
import logging
import time

import pytest
from pyike.runtime import netlink
from pyike.runtime.daemon import describe_error
from pyike.runtime.netlink import Netlink


def test_a_slow_netlink_call_is_waited_for_and_logged_not_abandoned(monkeypatch, caplog):
    """The first call imports pyroute2 and opens its socket on the netlink thread: on a starved machine
    that took longer than the 10 s the helper used to allow, and the daemon died printing "pyike: "."""
    monkeypatch.setattr(netlink, "NETLINK_TIMEOUT", 0.05, raising=False)  # the old limit, made short
    monkeypatch.setattr(netlink, "NETLINK_SLOW", 0.05, raising=False)

    def starved_request(ipr):
        time.sleep(0.5)  # what a starved thread looks like from the caller's side
        return ipr.link_lookup(ifname="lo")

    with Netlink() as helper, caplog.at_level(logging.WARNING, logger="pyike.netlink"):
        assert helper.call(starved_request) == [1]
    slow = [r.getMessage() for r in caplog.records if "starved_request" in r.getMessage()]
    assert slow and "still running" in slow[0], caplog.records


def test_an_exception_from_the_netlink_thread_reaches_the_caller_at_once():
    def fails(ipr):
        raise TimeoutError  # the class a time limit raises: it must not be mistaken for one

    with Netlink() as helper, pytest.raises(TimeoutError):
        helper.call(fails)


def test_fatal_errors_are_never_empty():
    with pytest.raises(asyncio.TimeoutError) as caught:  # TimeoutError on Python 3.11: str() is empty
        asyncio.run(asyncio.wait_for(asyncio.sleep(1), 0.01))
    text = describe_error(caught.value)
    assert text.startswith("TimeoutError without a message (raised in "), text
    assert describe_error(OSError(19, "TUN device 'pyike0' vanished")) == "TUN device 'pyike0' vanished"
    assert describe_error(KeyError("x")) == "KeyError: 'x'"
