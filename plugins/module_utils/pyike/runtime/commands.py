"""The daemon's control commands (pyikectl): the handlers behind runtime/control.py's JSON protocol.

A mixin of runtime.daemon.Daemon, whose engine, dataplane, traps and waiters they read and drive.
"""

from __future__ import annotations

import asyncio
import time
from typing import Any, Dict, List, Optional

from .control import ControlError, bool_arg, check_args, seconds_arg, text_arg

DEFAULT_INITIATE_WAIT = 10.0  # seconds `initiate` waits for the Child SA unless told otherwise
MAX_INITIATE_WAIT = 600.0  # a waiting `initiate` holds a control connection (control.MAX_CONNECTIONS)


class Commands:
    """The control commands of the daemon (mixed into Daemon)."""

    def _handlers(self):
        return {
            "list-conns": self._list_conns,
            "list-sas": self._list_sas,
            "list-traps": self._list_traps,
            "initiate": self._initiate,
            "terminate": self._terminate,
            "rekey": self._rekey,
            "reload": self._reload_command,
            "stats": self._stats,
        }

    async def _list_conns(self, args: Dict[str, Any]) -> List[Dict[str, Any]]:
        check_args("list-conns", args, ())
        traps = {(t["conn"], t["child"]): t for t in self._traps()}
        return [
            dict(
                self.actions.describe_peer(name),
                name=name,
                local_address=policy.local_address,
                remote_address=policy.remote_text,
                children=sorted(policy.children),
                dpd_action=policy.dpd_action,
                child_actions={
                    child.name: {
                        "start_action": child.start_action,
                        "close_action": child.close_action,
                        "trap": traps[(name, child.name)]["state"] if (name, child.name) in traps else None,
                    }
                    for child in policy.children.values()
                },
            )
            for name, policy in sorted(self.engine.policies.items())
        ]

    async def _list_sas(self, args: Dict[str, Any]) -> List[Dict[str, Any]]:
        check_args("list-sas", args, ())
        sas = self.engine.describe_sas(time.monotonic())
        for ike in sas:
            for child in ike["children"]:
                child_id = self._children.get(int(child["spi_in"], 16))
                stats = self.dataplane.child_stats(child_id) if child_id else {}
                for key in ("bytes_in", "packets_in", "bytes_out", "packets_out"):
                    child[key] = stats.get(key, 0)
        return sas

    async def _list_traps(self, args: Dict[str, Any]) -> List[Dict[str, Any]]:
        """Traps with their origin, selectors, acquire state and counters (runtime/traps.py)."""
        check_args("list-traps", args, ())
        return self._traps()

    def _traps(self) -> List[Dict[str, Any]]:
        traps = self.actions.traps
        return traps.describe() if traps is not None else []

    async def _initiate(self, args: Dict[str, Any]) -> Dict[str, Any]:
        check_args("initiate", args, ("conn", "child", "wait"))
        conn, child = text_arg(args, "conn"), text_arg(args, "child", required=False)
        wait = seconds_arg(args, "wait", DEFAULT_INITIATE_WAIT, 0.0, MAX_INITIATE_WAIT)
        if self._child_installed(conn, child):
            return {"message": "%s is already up" % conn}
        future = asyncio.get_running_loop().create_future()
        waiter = (conn, child, future)
        self._waiters.append(waiter)
        try:
            try:
                self.engine.initiate(conn, child, time.monotonic())
            except (KeyError, ValueError) as exc:
                raise ControlError(str(exc).strip("'\"")) from None
            self._flush()
            try:
                error = await asyncio.wait_for(future, wait)
            except asyncio.TimeoutError:
                raise ControlError(
                    "%s did not come up within %gs (retransmits continue in the background)" % (conn, wait)
                ) from None
        finally:
            if waiter in self._waiters:  # timed out, refused, or the client went away
                self._waiters.remove(waiter)
        if error is not None:
            raise ControlError("%s: %s failed: %s" % (conn, error.what, error.reason))
        return {
            "message": "initiate completed successfully: %s%s is up" % (conn, "/" + child if child else "")
        }

    def _child_installed(self, conn: str, child: Optional[str]) -> bool:
        for ike in self.engine.describe_sas(time.monotonic()):
            if ike["name"] == conn and ike["state"] == "ESTABLISHED":
                if any(child in (None, c["name"]) for c in ike["children"]):
                    return True
        return False

    async def _terminate(self, args: Dict[str, Any]) -> Dict[str, Any]:
        check_args("terminate", args, ("conn",))
        conn = text_arg(args, "conn")
        if conn not in self.engine.policies:
            raise ControlError("no connection named %r" % conn)
        count = self.engine.terminate(conn, time.monotonic())
        self.actions.terminated(conn)
        self._flush()
        return {"message": "terminated %d IKE SA(s) of %s" % (count, conn)}

    async def _rekey(self, args: Dict[str, Any]) -> Dict[str, Any]:
        check_args("rekey", args, ("conn", "child", "ike", "reauth"))
        conn, child = text_arg(args, "conn"), text_arg(args, "child", required=False)
        ike, reauth = bool_arg(args, "ike"), bool_arg(args, "reauth")
        if conn not in self.engine.policies:
            raise ControlError("no connection named %r" % conn)
        now = time.monotonic()
        if reauth:
            count = self.engine.reauthenticate(conn, now)
            self._flush()
            if not count:
                raise ControlError("%s has no established IKE SA to reauthenticate" % conn)
            return {"message": "reauthenticating %d IKE SA(s) of %s" % (count, conn)}
        if ike:
            count = self.engine.rekey_ike(conn, now)
            what = "IKE SA"
        else:
            count = self.engine.rekey_child(conn, child, now)
            what = "Child SA"
        self._flush()
        if not count:
            raise ControlError("%s has no established %s to rekey" % (conn, what))
        return {"message": "rekeying %d %s(s) of %s" % (count, what, conn)}

    async def _reload_command(self, args: Dict[str, Any]) -> Dict[str, Any]:
        check_args("reload", args, ())
        return await self._reload(raise_errors=True)

    def _dataplane_choice(self) -> Dict[str, str]:
        choice = getattr(self, "dataplane_choice", None)
        return choice.as_dict() if choice is not None else {"mode": "userspace", "setting": "", "reason": ""}

    async def _stats(self, args: Dict[str, Any]) -> Dict[str, Any]:
        check_args("stats", args, ())
        return {
            "uptime_seconds": round(time.monotonic() - self._started, 1),
            "event_errors": self.event_errors,
            "control": {
                "active": self.control.active if self.control else 0,
                "busy_refusals": self.control.busy_refusals if self.control else 0,
            },
            "ike": dict(self.engine.counters),
            "ike_sas": len(self.engine.sas),
            "half_open": self.engine.guard.describe(),  # RFC 7296 §2.6 flood protection
            # the counters, and which dataplane carries ESP and why (settings.dataplane)
            "dataplane": dict(self.dataplane.stats(), **self._dataplane_choice()),
            "traps": self._traps(),
            "recent_failures": [
                {
                    "conn": f.conn,
                    "what": f.what,
                    "reason": f.reason,
                    "seconds_ago": round(time.monotonic() - at, 1),
                }
                for at, f in self.failures[-10:]
            ],
        }
