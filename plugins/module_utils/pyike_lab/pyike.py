"""The project's own daemon (python3 -m pyike) inside a lab host, driven with pyikectl."""

from __future__ import annotations

import json
import os
import shlex
import time
from typing import Any, Dict, List, Optional, Sequence

from .lab import Lab, LabError, stop_by_pid_file

MODULE_UTILS = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CONFIG_FILE = "/etc/pyike/pyike.json"
CONTROL_SOCKET = "/run/pyike/pyike.ctl"  # the engine's default (pyike.config.schema.DEFAULT_CONTROL_SOCKET)
PID_FILE = "/run/pyike/pyiked.pid"
LOG_FILE = "/var/log/pyike.log"
HOST_PYTHON = "/usr/bin/python3"  # Debian's interpreter with distro cryptography and pyroute2


def site_to_site(
    name: str,
    local_addr: str,
    remote_addr: str,
    local_id: str,
    remote_id: str,
    psk: str,
    local_ts: List[str],
    remote_ts: List[str],
    ike_proposals: Optional[List[str]] = None,
    esp_proposals: Optional[List[str]] = None,
    start_action: str = "none",
    credentials: Optional[Dict[str, Any]] = None,
    defaults: bool = False,
    **settings: Any,
) -> Dict[str, Any]:
    """An engine configuration with one connection and one child called "net".

    ``credentials`` switches it to certificates: ``{"cert": ..., "private_key": ..., "ca_certs":
    [...]}`` (paths inside the lab host, see :meth:`PyikeDaemon.write_file`; ``auth_method`` and
    ``cert_chain`` may be added); ``psk`` is then ignored. ``defaults``: no ``settings`` section
    at all (listen on 0.0.0.0, the default control socket), as the README's smallest example;
    keyword arguments are then refused.
    """
    conn: Dict[str, Any] = {
        "local": {"address": local_addr, "id": local_id},
        "remote": {"address": remote_addr, "id": remote_id},
        "auth": "psk",
        "psk": psk,
        "ike_proposals": ike_proposals or ["aes256gcm16-prfsha256-x25519"],
        "children": {
            "net": {
                "local_ts": local_ts,
                "remote_ts": remote_ts,
                "esp_proposals": esp_proposals or ["aes256gcm16"],
                "start_action": start_action,
            }
        },
    }
    if credentials is not None:
        del conn["psk"]
        conn["auth"] = "pubkey"
        conn.update(credentials)
    if defaults:
        if settings:
            raise ValueError("site_to_site(defaults=True) takes no settings, got %s" % sorted(settings))
        return {"connections": {name: conn}}
    return {
        "settings": dict({"control_socket": CONTROL_SOCKET, "listen": [local_addr]}, **settings),
        "connections": {name: conn},
    }


class PyikeDaemon:
    """pyike in one lab host; `python` picks the interpreter (the hosts' by default)."""

    def __init__(self, lab: Lab, host: str, python: str = HOST_PYTHON, site_dirs: Sequence[str] = ()):
        self.lab = lab
        self.host = host
        self.python = python
        # searched after the engine, before the interpreter's own packages: e.g. a newer cryptography
        # unpacked from a wheel, as the engine module installs it (install.py, cryptography_wheel)
        self.pythonpath = ":".join([MODULE_UTILS, *site_dirs])
        self.control_socket = CONTROL_SOCKET  # the configuration's, once start() has written one

    def _sh(self, script: str, input_data: Optional[bytes] = None, timeout: float = 30.0) -> str:
        return self.lab.run_in(self.host, ["/bin/sh", "-c", script], input_data=input_data, timeout=timeout)

    def write_config(self, config: Dict[str, Any]) -> None:
        self.control_socket = (config.get("settings") or {}).get("control_socket", CONTROL_SOCKET)
        self._sh(
            "umask 077 && mkdir -p %s && cat > %s.tmp && mv %s.tmp %s"
            % (os.path.dirname(CONFIG_FILE), CONFIG_FILE, CONFIG_FILE, CONFIG_FILE),
            input_data=json.dumps(config, indent=1).encode(),
        )

    def write_file(self, path: str, data: bytes, mode: str = "0600") -> None:
        """A file inside the lab host (certificates 0644, private keys 0600 as the loader demands)."""
        self.lab.write_file(self.host, path, data, mode)

    def write_raw_config(self, text: str) -> None:
        self._sh(
            "umask 077 && mkdir -p %s && cat > %s" % (os.path.dirname(CONFIG_FILE), CONFIG_FILE),
            text.encode(),
        )

    def start(
        self, config: Optional[Dict[str, Any]] = None, timeout: float = 15.0, before_exec: str = ""
    ) -> None:
        """Start the daemon and wait until its control socket exists.

        ``before_exec``: shell commands that the daemon's own process runs before it becomes the
        daemon (``$$`` is its PID), e.g. to join a cgroup.
        """
        self.launch(config, before_exec)
        self.wait_ready(timeout)

    def launch(self, config: Optional[Dict[str, Any]] = None, before_exec: str = "") -> None:
        """Start the daemon without waiting for it (then :meth:`wait_ready`): several daemons then start
        at once, which matters where a start takes tens of seconds (the VM lab)."""
        if config is not None:
            self.write_config(config)
        impaired = bool(((config or {}).get("settings") or {}).get("impair"))
        command = "PYTHONPATH=%s exec %s -m pyike daemon --config %s%s" % (
            shlex.quote(self.pythonpath),
            shlex.quote(self.python),
            CONFIG_FILE,
            " --allow-impair" if impaired else "",  # lab tests that inject faults (settings.impair)
        )
        if before_exec:
            command = "%s; %s" % (before_exec, command)
        # A daemon killed with SIGKILL leaves its control socket: readiness below is its new one.
        self._sh(
            "mkdir -p /run/pyike && rm -f %s && setsid sh -c 'echo $$ > %s; %s' </dev/null >>%s 2>&1 &"
            % (shlex.quote(self.control_socket), PID_FILE, command.replace("'", "'\\''"), LOG_FILE)
        )

    def wait_ready(self, timeout: float = 15.0) -> None:
        """Wait until the launched daemon's control socket exists; LabError with its log if it died or
        the time ran out. The polls back off to 0.2 s: each is a process in the lab host, which competes
        with the starting daemon for the CPU."""
        deadline = time.monotonic() + timeout
        pause = 0.02
        while time.monotonic() < deadline:
            # The pid file may not be written yet right after the start: only a recorded PID that
            # no longer runs means the daemon died.
            state = self._sh(
                "test -S %s && echo up && exit; test -s %s || { echo starting; exit; }; "
                "kill -0 $(cat %s) 2>/dev/null && echo starting || echo dead"
                % (shlex.quote(self.control_socket), PID_FILE, PID_FILE)
            ).strip()
            if state == "up":
                return
            if state == "dead":
                break
            time.sleep(pause)
            pause = min(pause * 2, 0.2)
        raise LabError("lab host %s: pyike daemon did not start; log:\n%s" % (self.host, self.log()[-3000:]))

    def ctl(self, *args: str, timeout: float = 30.0) -> str:
        return self.lab.run_in(
            self.host,
            [
                "env",
                "PYTHONPATH=" + self.pythonpath,
                self.python,
                "-m",
                "pyike",
                "ctl",
                "--socket",
                self.control_socket,
                *args,
            ],
            timeout=timeout,
        )

    def sas(self) -> List[Dict[str, Any]]:
        return json.loads(self.ctl("list-sas", "--json"))

    def stats(self) -> Dict[str, Any]:
        return json.loads(self.ctl("stats", "--json"))

    def process(self) -> Dict[str, float]:
        """The daemon process's resident memory (VmRSS, KiB) and CPU time so far (user + system, s),
        read from /proc inside the lab host (its PID namespace numbers the daemon)."""
        text = self._sh(
            "pid=$(cat %s) && grep VmRSS /proc/$pid/status && cat /proc/$pid/stat" % PID_FILE
        ).splitlines()
        rss_kib = int(text[0].split()[1])
        fields = text[1].rsplit(")", 1)[1].split()  # after "(comm)": state is field 3, utime 14, stime 15
        ticks = int(fields[11]) + int(fields[12])
        return {"rss_kib": rss_kib, "cpu_seconds": ticks / os.sysconf("SC_CLK_TCK")}

    def log(self) -> str:
        return self._sh("cat %s 2>/dev/null || true" % LOG_FILE)

    def stop(self) -> None:
        """Stop the daemon (SIGTERM, then SIGKILL); a lab host that is already gone counts as stopped."""
        stop_by_pid_file(self.lab, self.host, PID_FILE)
