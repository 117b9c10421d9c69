"""The control client and sa_info's waiting logic against a fake daemon."""

from __future__ import annotations

import modules_support
import pytest
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible import client, sas
from modules_support import FakeDaemon

CONNS = [
    {
        "name": "hq",
        "local_address": "192.0.2.1",
        "remote_address": "198.51.100.1",
        "children": ["lan", "voice"],
    },
    {"name": "branch", "local_address": "192.0.2.1", "remote_address": "203.0.113.1", "children": ["net"]},
]


def _ike(name, state="ESTABLISHED", children=()):
    return {
        "name": name,
        "state": state,
        "children": [
            {
                "name": child,
                "state": child_state,
                "bytes_in": 10,
                "bytes_out": 20,
                "packets_in": 1,
                "packets_out": 2,
            }
            for child, child_state in children
        ],
    }


def test_client_tells_refusal_unavailability_and_timeout_apart(tmp_path):
    path = str(tmp_path / "ctl")
    with pytest.raises(client.DaemonUnavailable, match="is it running"):
        client.request(path, "stats")

    def handler(command, args):
        if command == "slow":
            return None  # never answers
        if command == "reload":
            return {"ok": False, "error": "reload refused, the running configuration stays:\nbad"}
        return {"ok": True, "result": {"echo": args}}

    daemon = FakeDaemon(path, handler)
    try:
        assert client.request(path, "stats", {"x": 1}) == {"echo": {"x": 1}}
        with pytest.raises(client.DaemonRefused, match="reload refused"):
            client.request(path, "reload")
        with pytest.raises(client.DaemonTimeout):
            client.request(path, "slow", timeout=0.5)
        assert client.is_answering(path)
    finally:
        daemon.close()
    assert not client.is_answering(path)


def test_up_means_every_configured_child_installed():
    conns = {c["name"]: c for c in CONNS}
    sa_list = [_ike("hq", children=[("lan", "INSTALLED")])]
    assert sas.missing_children("hq", conns, sa_list) == ["voice"]
    assert sas.missing_children("hq/lan", conns, sa_list) == []
    sa_list = [_ike("hq", children=[("lan", "INSTALLED"), ("voice", "REKEYING")])]
    assert sas.missing_children("hq", conns, sa_list) == []
    assert sas.missing_children("hq", conns, [_ike("hq", "CONNECTING")]) == ["lan", "voice"]
    summary = sas.summarize(conns, sa_list)
    assert summary["hq"]["up"] is True and summary["hq"]["ike_state"] == "ESTABLISHED"
    assert summary["hq"]["children"]["lan"] == {
        "state": "INSTALLED",
        "bytes_in": 10,
        "bytes_out": 20,
        "packets_in": 1,
        "packets_out": 2,
    }
    assert summary["branch"] == {
        "local_address": "192.0.2.1",
        "remote_address": "203.0.113.1",
        "ike_state": "DOWN",
        "children": {
            "net": {"state": "DOWN", "bytes_in": 0, "bytes_out": 0, "packets_in": 0, "packets_out": 0}
        },
        "up": False,
    }


class Clock:
    def __init__(self):
        self.now = 0.0

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.now += seconds


def test_wait_initiates_retries_and_succeeds():
    clock = Clock()
    state = {"initiates": []}

    def call(command, args, timeout):
        if command == "list-conns":
            return CONNS
        if command == "list-sas":
            if len(state["initiates"]) >= 2:
                return [_ike("branch", children=[("net", "INSTALLED")])]
            return []
        if command == "initiate":
            state["initiates"].append((clock.now, args))
            if len(state["initiates"]) == 1:
                raise client.DaemonRefused("branch: IKE_AUTH failed: AUTHENTICATION_FAILED")
            return {"message": "up"}
        raise AssertionError(command)

    waiter = sas.Waiter(call, clock=clock, sleep=clock.sleep)
    result, _conns, not_up = waiter.wait(["branch"], 30, initiate=True)
    assert not_up == [] and result[0]["name"] == "branch"
    first, second = state["initiates"]
    assert first[1] == {"conn": "branch", "child": None, "wait": 2.0}
    assert second[0] - first[0] >= sas.RETRY_INTERVAL  # a failure is retried, not hammered


def test_wait_times_out_naming_connections_and_reasons():
    clock = Clock()

    def call(command, args, timeout):
        if command == "list-conns":
            return CONNS
        if command == "list-sas":
            return [_ike("hq", children=[("lan", "INSTALLED")]), _ike("branch", "AUTHENTICATING")]
        if command == "initiate":
            raise client.DaemonRefused("hq: CREATE_CHILD_SA failed: TS_UNACCEPTABLE")
        raise AssertionError(command)

    waiter = sas.Waiter(call, clock=clock, sleep=clock.sleep)
    result, conns, not_up = waiter.wait(["hq", "branch/net"], 10, initiate=True)
    assert not_up == ["hq", "branch/net"]
    message = waiter.failure_message(
        not_up, conns, result, 10, [{"conn": "branch", "what": "IKE_AUTH", "reason": "AUTHENTICATION_FAILED"}]
    )
    assert message == (
        "not up after 10s: hq (IKE SA ESTABLISHED, Child SA voice not installed; initiate: hq: "
        "CREATE_CHILD_SA failed: TS_UNACCEPTABLE), branch/net (IKE SA AUTHENTICATING; IKE_AUTH failed: "
        "AUTHENTICATION_FAILED)"
    )


def test_unknown_targets_fail_at_once():
    waiter = sas.Waiter(lambda command, args, timeout: CONNS if command == "list-conns" else [])
    with pytest.raises(sas.WaitError) as error:
        waiter.wait(["nope", "hq/nochild"], 30)
    assert "nope: no connection named 'nope' in the daemon's configuration (it has: branch, hq)" in str(
        error.value
    )
    assert "hq/nochild: connection 'hq' has no child 'nochild' (it has: lan, voice)" in str(error.value)


def test_check_mode_looks_once():
    calls = []

    def call(command, args, timeout):
        calls.append(command)
        return CONNS if command == "list-conns" else []

    waiter = sas.Waiter(call)
    assert waiter.wait(["hq"], 30, initiate=False, once=True)[2] == ["hq"]
    assert calls == ["list-conns", "list-sas"]


assert modules_support
