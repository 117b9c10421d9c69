# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""SAs as structured data, and waiting until named connections are up (pyike.ipsec.sa_info).

A target is ``CONN`` (up when an ESTABLISHED IKE SA of CONN carries every Child SA the
connection configures) or ``CONN/CHILD`` (that Child SA only). A Child SA counts when it is
INSTALLED or REKEYING (still carrying traffic while its successor is negotiated).

``call(command, args, timeout)`` talks to the daemon (client.request bound to the socket), so the
logic here is tested with a fake daemon.
"""

from __future__ import annotations

import time

from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.client import (
    DaemonRefused,
    DaemonTimeout,
)

UP_CHILD_STATES = ("INSTALLED", "REKEYING")
IN_PROGRESS_IKE_STATES = ("CONNECTING", "AUTHENTICATING")
COUNTERS = ("bytes_in", "bytes_out", "packets_in", "packets_out")
POLL_INTERVAL = 0.25
INITIATE_WAIT = 2.0  # seconds one initiate request may block; retransmits continue in the daemon
RETRY_INTERVAL = 3.0  # a failed initiate (peer not configured yet, wrong PSK) is retried this often


class WaitError(Exception):
    def __init__(self, message, not_up=None):
        super().__init__(message)
        self.not_up = not_up or []


def parse_target(text):
    conn, sep, child = str(text).partition("/")
    return conn, (child if sep else None)


def _best_ike(sas, conn):
    """The IKE SA that says most about `conn`: ESTABLISHED before in-progress before the rest."""
    mine = [sa for sa in sas if sa.get("name") == conn]
    rank = {"ESTABLISHED": 0, "AUTHENTICATING": 1, "CONNECTING": 2}
    mine.sort(key=lambda sa: rank.get(sa.get("state"), 3))
    return mine[0] if mine else None


def _up_children(sas, conn):
    names = set()
    for sa in sas:
        if sa.get("name") == conn and sa.get("state") == "ESTABLISHED":
            for child in sa.get("children", []):
                if child.get("state") in UP_CHILD_STATES:
                    names.add(child.get("name"))
    return names


def missing_children(target, conns, sas):
    """Children of `target` that are not up (empty: the target is up)."""
    conn, child = parse_target(target)
    wanted = [child] if child else list(conns.get(conn, {}).get("children", [])) or [None]
    up = _up_children(sas, conn)
    if wanted == [None]:  # a connection without children: its IKE SA is what counts
        ike = _best_ike(sas, conn)
        return [] if ike and ike.get("state") == "ESTABLISHED" else [None]
    return [name for name in wanted if name not in up]


def dataplane_of(stats):
    """Which dataplane carries ESP and why, from the daemon's C(stats): {mode, setting, reason}."""
    dataplane = stats.get("dataplane") if isinstance(stats, dict) else None
    if not isinstance(dataplane, dict):
        return {"mode": "unknown", "setting": "", "reason": "the daemon did not say"}
    return {key: dataplane.get(key, "") for key in ("mode", "setting", "reason")}


def summarize(conns, sas):
    """{conn: {local_address, remote_address, up, ike_state, children: {child: {state, counters}}}}."""
    summary = {}
    for name, conn in sorted(conns.items()):
        ike = _best_ike(sas, name)
        children = {}
        for child_name in conn.get("children", []):
            children[child_name] = dict({"state": "DOWN"}, **dict.fromkeys(COUNTERS, 0))
        if ike is not None:
            for child in ike.get("children", []):
                children[child.get("name")] = dict(
                    {"state": child.get("state")}, **{key: child.get(key, 0) for key in COUNTERS}
                )
        summary[name] = {
            "local_address": conn.get("local_address"),
            "remote_address": conn.get("remote_address"),
            "ike_state": ike.get("state") if ike else "DOWN",
            "children": children,
            "up": not missing_children(name, conns, sas),
        }
    return summary


def describe(target, conns, sas):
    conn = parse_target(target)[0]
    ike = _best_ike(sas, conn)
    if ike is None:
        return "no IKE SA"
    if ike.get("state") != "ESTABLISHED":
        return "IKE SA %s" % ike.get("state")
    missing = [name for name in missing_children(target, conns, sas) if name]
    return "IKE SA ESTABLISHED, Child SA %s not installed" % ", ".join(missing)


def check_targets(targets, conns):
    problems = []
    for target in targets:
        conn, child = parse_target(target)
        if conn not in conns:
            problems.append(
                "%s: no connection named %r in the daemon's configuration (it has: %s)"
                % (target, conn, ", ".join(sorted(conns)) or "none")
            )
        elif child is not None and child not in conns[conn].get("children", []):
            problems.append(
                "%s: connection %r has no child %r (it has: %s)"
                % (target, conn, child, ", ".join(conns[conn].get("children", [])) or "none")
            )
    return problems


class Waiter:
    def __init__(self, call, clock=time.monotonic, sleep=time.sleep):
        self.call = call
        self.clock = clock
        self.sleep = sleep
        self.reasons = {}  # target -> why its last initiate failed

    def connections(self):
        return {conn["name"]: conn for conn in self.call("list-conns", None, 30.0)}

    def sas(self):
        return self.call("list-sas", None, 30.0)

    def _initiate(self, target, conns, sas, remaining):
        conn, child = parse_target(target)
        ike = _best_ike(sas, conn)
        if ike is not None and ike.get("state") in IN_PROGRESS_IKE_STATES:
            return  # coming up already
        if ike is None or ike.get("state") != "ESTABLISHED":
            requests = [child]
        else:
            requests = [name for name in missing_children(target, conns, sas) if name]
        wait = max(0.5, min(INITIATE_WAIT, remaining))
        for name in requests:
            try:
                self.call("initiate", {"conn": conn, "child": name, "wait": wait}, wait + 5.0)
                self.reasons.pop(target, None)
            except DaemonTimeout:
                pass
            except DaemonRefused as exc:
                message = str(exc)
                if "did not come up within" not in message:
                    self.reasons[target] = message

    def wait(self, targets, timeout, initiate=False, once=False):
        """(sas, conns, not_up) once every target is up, at the deadline, or at once if `once`."""
        conns = self.connections()
        problems = check_targets(targets, conns)
        if problems:
            raise WaitError("wait_for names what the daemon does not know: " + "; ".join(problems), targets)
        deadline = self.clock() + timeout
        attempts = {}
        while True:
            sas = self.sas()
            not_up = [t for t in targets if missing_children(t, conns, sas)]
            now = self.clock()
            if not not_up or once or now >= deadline:
                return sas, conns, not_up
            if initiate:
                for target in not_up:
                    if now - attempts.get(target, -RETRY_INTERVAL) >= RETRY_INTERVAL:
                        attempts[target] = now
                        self._initiate(target, conns, sas, deadline - now)
            self.sleep(POLL_INTERVAL)

    def failure_message(self, not_up, conns, sas, timeout, recent_failures=()):
        parts = []
        for target in not_up:
            conn = parse_target(target)[0]
            reasons = [describe(target, conns, sas)]
            if target in self.reasons:
                reasons.append("initiate: %s" % self.reasons[target])
            seen = set()
            for failure in recent_failures:
                if failure.get("conn") == conn:
                    text = "%s failed: %s" % (failure.get("what"), failure.get("reason"))
                    if text not in seen:
                        seen.add(text)
                        reasons.append(text)
            parts.append("%s (%s)" % (target, "; ".join(reasons[:4])))
        return "not up after %ss: %s" % (timeout, ", ".join(parts))
