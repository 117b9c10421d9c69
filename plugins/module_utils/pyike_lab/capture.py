"""Packet capture on a lab link with tcpdump, to prove what crosses the wire (ESP, not plaintext)."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from typing import List, Optional

from .lab import Lab, nsenter_argv


class Capture:
    """`with Capture(lab, "internet", "inet0") as cap: ...` then `cap.lines` holds tcpdump's one-line summaries."""

    def __init__(self, lab: Lab, host: str, interface: str, bpf_filter: str = ""):
        self.argv = nsenter_argv(
            lab.pid_of(host),
            ["tcpdump", "-i", interface, "-nn", "-l", "-U", "-p", *([bpf_filter] if bpf_filter else [])],
        )
        self.lines: List[str] = []
        self._proc: Optional[subprocess.Popen] = None

    def __enter__(self) -> Capture:
        # A session of its own: nsenter does not pass signals on to tcpdump, so the whole group is signalled.
        self._proc = subprocess.Popen(
            self.argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
        )
        # tcpdump says "listening on ..." on stderr once the socket is open.
        self._proc.stderr.readline()
        time.sleep(0.05)
        return self

    def __exit__(self, *exc_info) -> None:
        time.sleep(0.2)
        os.killpg(self._proc.pid, signal.SIGTERM)
        out, _err = self._proc.communicate(timeout=10)
        self.lines = out.splitlines()

    def count(self, needle: str) -> int:
        return sum(1 for line in self.lines if needle in line)
