"""Packet capture on a lab link with tcpdump, to prove what crosses the wire (ESP, not plaintext)."""

from __future__ import annotations

import os
import select
import signal
import subprocess
import tempfile
import time
from typing import List, Optional

from .lab import Lab, LabError, nsenter_argv

START_TIMEOUT = 10.0
SETTLE_SECONDS = 0.2


class Capture:
    """`with Capture(lab, "internet", "inet0") as cap: ...` then `cap.lines` holds tcpdump's one-line summaries.

    Or `cap.start()` ... `cap.stop()`. Starting returns once tcpdump listens; a tcpdump that cannot
    start (no such interface, bad filter) raises LabError with what it said. The summaries go to a
    file, not a pipe that nobody reads while the traffic runs (a full pipe would stall tcpdump).
    """

    def __init__(
        self,
        lab: Optional[Lab],
        host: str,
        interface: str,
        bpf_filter: str = "",
        net_pid: Optional[int] = None,
    ):
        """``lab`` None: tcpdump runs in the network namespace of process ``net_pid`` (a container's),
        with this machine's tcpdump, or on this machine itself without ``net_pid``; ``host`` then only
        names the place in messages."""
        self.host = host
        self.where = host if lab is None else "lab host %s" % host  # for messages
        self.interface = interface
        tcpdump = ["tcpdump", "-i", interface, "-nn", "-l", "-U", "-p", *([bpf_filter] if bpf_filter else [])]
        if lab is not None:
            self.argv = nsenter_argv(lab.pid_of(host), tcpdump)
        elif net_pid is not None:
            self.argv = nsenter_argv(net_pid, tcpdump, namespaces=("--net",))  # this machine's tcpdump
        else:
            self.argv = tcpdump
        self.lines: List[str] = []
        self.stderr = ""
        self._proc: Optional[subprocess.Popen] = None
        self._out = None

    def start(self) -> Capture:
        self._out = tempfile.TemporaryFile()
        try:
            # A session of its own: nsenter does not pass signals on to tcpdump, so the whole group is signalled.
            self._proc = subprocess.Popen(
                self.argv, stdout=self._out, stderr=subprocess.PIPE, start_new_session=True
            )
        except OSError as exc:
            self._out.close()
            raise LabError("%s: cannot run %s: %s" % (self.where, self.argv[0], exc)) from None
        # tcpdump says "listening on ..." on stderr once its socket is open, and exits on errors. Read the
        # raw pipe (no buffered reader), so that communicate() later gets everything after it.
        said = b""
        deadline = time.monotonic() + START_TIMEOUT
        while b"listening on" not in said:
            remaining = deadline - time.monotonic()
            chunk = b""
            if remaining > 0 and select.select([self._proc.stderr], [], [], remaining)[0]:
                chunk = os.read(self._proc.stderr.fileno(), 4096)
            if not chunk:
                self.stop(settle=False)
                raise LabError(
                    "%s: tcpdump on %s did not start: %s"
                    % (self.where, self.interface, said.decode(errors="replace").strip() or "no answer")
                )
            said += chunk
        self.stderr = said.decode(errors="replace")
        time.sleep(0.05)
        return self

    def stop(self, settle: bool = True) -> List[str]:
        """Stop tcpdump (after the last packets had a moment to arrive); returns and keeps `lines`."""
        if self._proc is None:
            return self.lines
        if self._proc.poll() is None:
            if settle:
                time.sleep(SETTLE_SECONDS)
            try:
                os.killpg(self._proc.pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        try:
            err = self._proc.communicate(timeout=10)[1]
        except subprocess.TimeoutExpired:
            os.killpg(self._proc.pid, signal.SIGKILL)
            err = self._proc.communicate()[1]
        self._proc = None
        self.stderr += err.decode(errors="replace")
        with self._out:
            self._out.seek(0)
            self.lines = self._out.read().decode(errors="replace").splitlines()
        return self.lines

    def __enter__(self) -> Capture:
        return self.start()

    def __exit__(self, *exc_info) -> None:
        self.stop()

    def count(self, needle: str) -> int:
        return sum(1 for line in self.lines if needle in line)
