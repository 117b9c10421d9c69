"""The daemon's glue and its control socket, without root: the real Daemon with its engine, a dataplane
over a fake TUN and real UDP sockets on 127.0.0.1, a real unix control socket.

* every engine event is acted on in isolation: one that fails is logged with the SA it concerns and
  counted, and the rest of the batch still happens (engine and dataplane must not disagree);
* the control socket answers hostile or broken requests with an error and keeps no state for them.
"""

from __future__ import annotations

import asyncio
import json
import logging
import math
import socket
import threading
import time

import pytest
from pyike.ike.events import ChildSaUp, SendDatagram
from pyike.runtime.control import ControlError, ControlRefused, ControlServer, call
from test_runtime_lifetimes import LEFT_IP, RIGHT_IP, Pod, free_ports


@pytest.fixture
def pod():
    """A daemon for 127.0.0.1 whose peer 127.0.0.2 never answers (its sockets are closed)."""
    ports, endpoints = free_ports()
    for endpoint in endpoints[2:]:
        endpoint.close()
    left = Pod(LEFT_IP, RIGHT_IP, ports, endpoints[:2], {})
    yield left
    left.close()


def broken_child_sa_up(conn="s2s"):
    """A ChildSaUp the daemon cannot act on: a key is missing (make_cipher raises TypeError)."""
    return ChildSaUp(
        conn=conn,
        child="net",
        ike_sa=conn + "#1",
        spi_in=0xC0FFEE01,
        spi_out=0xC0FFEE02,
        encr_id=20,  # AES-GCM-16
        key_length=256,
        integ_id=None,
        esn=False,
        encr_key_in=bytes(36),
        integ_key_in=b"",
        encr_key_out=None,
        integ_key_out=b"",
        local=(LEFT_IP, 500),
        remote=(RIGHT_IP, 500),
    )


# --- item 9: one failing event must not cost the rest of the batch ------------------------------------


def test_an_event_that_fails_is_logged_counted_and_the_rest_of_the_batch_still_happens(pod, caplog):
    receiver = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    receiver.bind((RIGHT_IP, 0))
    receiver.settimeout(5)
    try:
        ike_port = pod.dataplane.endpoints[0].local
        pod.engine.events.extend(
            [broken_child_sa_up(), SendDatagram(b"after the broken event", ike_port, receiver.getsockname())]
        )
        with caplog.at_level(logging.ERROR, logger="pyike.daemon"):
            pod.daemon._flush(wake_timer=False)
        assert receiver.recvfrom(100)[0] == b"after the broken event"
    finally:
        receiver.close()
    stats = asyncio.run(pod.daemon._stats({}))
    assert stats["event_errors"] == 1
    (record,) = [r for r in caplog.records if r.levelno >= logging.ERROR]
    message = record.getMessage()
    assert "ChildSaUp" in message and "s2s/net" in message and "c0ffee01" in message, message
    assert "TypeError" in (record.exc_text or "") or record.exc_info[0] is TypeError
    (failure,) = stats["recent_failures"]
    assert failure["conn"] == "s2s" and "TypeError" in failure["reason"]


# --- item 10: the control commands validate what they are given --------------------------------------


def run(coroutine, guard=10.0):
    """Run a handler; the guard only turns a hang into a failure (a handler must never hang)."""

    async def guarded():
        return await asyncio.wait_for(coroutine, guard)

    return asyncio.run(guarded())


def test_timed_out_initiate_waiters_are_removed(pod):
    for _attempt in range(5):
        with pytest.raises(ControlError, match="did not come up within"):
            run(pod.daemon._initiate({"conn": "s2s", "wait": 0.01}))
    assert pod.daemon._waiters == []


@pytest.mark.parametrize(
    "wait", ["nan", "10", math.nan, math.inf, -1, 0, 10**9, True, [1], {"a": 1}], ids=repr
)
def test_initiate_refuses_a_wait_that_is_not_a_sane_number_of_seconds(pod, wait):
    if isinstance(wait, float) and not math.isfinite(wait):
        wait = json.loads(json.dumps(wait))  # what the control socket's JSON parser produces: NaN, Infinity
    with pytest.raises(ControlError, match='"wait" must be a number of seconds'):
        run(pod.daemon._initiate({"conn": "s2s", "wait": wait}))
    assert pod.daemon._waiters == [] and not pod.engine.sas  # nothing was started


@pytest.mark.parametrize(
    "command, args, complaint",
    [
        ("initiate", {"conn": ["s2s"]}, '"conn" must be a string'),
        ("initiate", {"conn": "s2s", "child": 5}, '"child" must be a string'),
        ("initiate", {"conn": "x" * 100_000}, '"conn" must be a string of at most'),
        ("initiate", {"conn": "s2s", "wiat": 3}, "unknown argument"),
        ("terminate", {"conn": {"a": 1}}, '"conn" must be a string'),
        ("terminate", {}, '"conn" is required'),
        ("rekey", {"conn": "s2s", "ike": "yes"}, '"ike" must be true or false'),
        ("rekey", {"conn": "s2s", "reauth": 1}, '"reauth" must be true or false'),
        ("list-sas", {"verbose": True}, "unknown argument"),
    ],
)
def test_arguments_of_the_wrong_type_get_a_clear_error(pod, command, args, complaint):
    handler = pod.daemon._handlers()[command]
    with pytest.raises(ControlError, match=complaint):
        run(handler(args))


# --- item 10: the control socket itself -----------------------------------------------------------------


class Served:
    """A ControlServer on its own event loop thread, so the test can talk to it with the real client."""

    def __init__(self, path, handlers, **options):
        self.loop = asyncio.new_event_loop()
        self.server = ControlServer(str(path), handlers, **options)
        self.path = str(path)
        self.thread = threading.Thread(target=self.loop.run_forever, daemon=True)
        self.thread.start()
        asyncio.run_coroutine_threadsafe(self.server.start(), self.loop).result(10)

    def close(self):
        asyncio.run_coroutine_threadsafe(self.server.close(), self.loop).result(10)
        self.loop.call_soon_threadsafe(self.loop.stop)
        self.thread.join(10)
        self.loop.close()


async def _stats(args):
    return {"fine": True}


@pytest.fixture
def served(tmp_path):
    made = []

    def make(**options):
        server = Served(tmp_path / "ctl", {"stats": _stats}, **options)
        made.append(server)
        return server

    yield make
    for server in made:
        server.close()


def raw_request(path, line, timeout=10.0):
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        sock.connect(path)
        sock.sendall(line)
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    finally:
        sock.close()
    return json.loads(b"".join(chunks))


def test_deeply_nested_json_gets_an_error_answer(served):
    server = served()
    depth = 30_000  # far beyond the JSON parser's recursion limit, well inside MAX_REQUEST
    answer = raw_request(server.path, b'{"command": "stats", "args": ' + b"[" * depth + b"]" * depth + b"}\n")
    assert answer["ok"] is False and "nested" in answer["error"]
    assert call(server.path, "stats") == {"fine": True}  # and the server still serves


def test_an_overlong_request_gets_an_error_answer(served):
    server = served()
    answer = raw_request(server.path, b'{"command": "stats", "args": {"x": "' + b"a" * 200_000 + b'"}}\n')
    assert answer["ok"] is False and "longer than" in answer["error"]


def test_an_unknown_command_is_not_echoed_in_full(served):
    server = served()
    with pytest.raises(ControlRefused, match="unknown command") as refused:
        call(server.path, "x" * 60_000)
    assert len(str(refused.value)) < 200


def test_connections_beyond_the_limit_are_told_busy_and_idle_ones_do_not_hold_slots(served):
    server = served(max_connections=3, client_timeout=0.5)
    idle = []
    try:
        for _index in range(3):
            sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            sock.connect(server.path)
            idle.append(sock)
        # the three idle clients hold every slot until their request time runs out
        deadline = time.monotonic() + 10
        while server.server.active < 3 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(ControlRefused, match="busy"):
            call(server.path, "stats", timeout=5)
        # the idle clients are dropped after client_timeout, and their slots come back
        for sock in idle:
            sock.settimeout(10)
            assert sock.recv(100) == b""
        assert call(server.path, "stats", timeout=5) == {"fine": True}
    finally:
        for sock in idle:
            sock.close()
    assert server.server.busy_refusals == 1


def test_the_busy_answer_reaches_a_client_still_sending_its_request(served):
    """The daemon answers "busy" without reading the request and closes: a client whose request is
    larger than the socket buffer gets EPIPE while sending, and must still read the answer."""
    server = served(max_connections=1)
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        holder.connect(server.path)
        deadline = time.monotonic() + 10
        while server.server.active < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        with pytest.raises(ControlRefused, match="busy"):
            call(server.path, "stats", {"padding": "x" * 4_000_000}, timeout=5)
    finally:
        holder.close()


def test_a_client_that_does_not_read_its_answer_does_not_hold_a_slot(served, tmp_path):
    big = {"blob": "x" * (8 * 1024 * 1024)}  # more than the socket buffers hold

    async def huge(args):
        return big

    server = Served(tmp_path / "ctl2", {"huge": huge, "stats": _stats}, max_connections=1, client_timeout=0.5)
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(server.path)
        sock.sendall(b'{"command": "huge"}\n')  # and never reads the answer
        deadline = time.monotonic() + 10
        while server.server.active < 1 and time.monotonic() < deadline:
            time.sleep(0.01)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            try:
                assert call(server.path, "stats", timeout=5) == {"fine": True}
                break
            except ControlRefused as exc:
                assert "busy" in str(exc)
                time.sleep(0.1)
        else:
            raise AssertionError("the slot of a client that never reads was never freed")
    finally:
        sock.close()
        server.close()


def test_pyikectl_and_the_lab_helper_find_the_default_control_socket():
    """The README's smallest configuration has no settings: the daemon's socket is the default one."""
    from pyike.cli import DEFAULT_CONTROL_SOCKET as cli_default
    from pyike.config.schema import DEFAULT_CONTROL_SOCKET
    from pyike_lab.pyike import CONTROL_SOCKET, site_to_site

    assert cli_default == CONTROL_SOCKET == DEFAULT_CONTROL_SOCKET
    smallest = site_to_site(
        "s2s", "192.0.2.1", "198.51.100.1", "a", "b", "psk-0123456789ab", [], [], defaults=True
    )
    assert "settings" not in smallest


def test_impairments_need_the_daemons_allow_impair_flag(tmp_path):
    from pyike.config import parse_config
    from pyike.runtime.daemon import impair_refusal, run_daemon

    config = {"connections": {}, "settings": {"impair": ["drop exchange=IKE_AUTH"]}}
    parsed = parse_config(config, "<test>")
    assert "start the daemon with --allow-impair" in impair_refusal(parsed, allow_impair=False)
    assert impair_refusal(parsed, allow_impair=True) == ""
    path = tmp_path / "pyike.json"
    path.write_text(json.dumps(config))
    path.chmod(0o600)
    assert run_daemon(str(path)) == 2  # refused before anything is opened
