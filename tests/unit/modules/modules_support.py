"""Shared by the module tests: import path for ansible_collections.pyike.ipsec, and a fake daemon.

The modules import their helpers as ``ansible_collections.pyike.ipsec.plugins.module_utils...``;
a temporary ``ansible_collections/pyike/ipsec`` symlink to the checkout makes that importable
without Ansible (so these tests also run under the hosts' /usr/bin/python3).
"""

from __future__ import annotations

import atexit
import json
import os
import shutil
import socket
import sys
import tempfile
import threading
from pathlib import Path

REPO = Path(__file__).resolve().parents[3]
ENGINE_DIR = REPO / "plugins" / "module_utils" / "pyike"
MODULE_UTILS = "ansible_collections.pyike.ipsec.plugins.module_utils"


def _collections_root():
    root = Path(tempfile.mkdtemp(prefix="pyike-collections-"))
    (root / "ansible_collections" / "pyike").mkdir(parents=True)
    (root / "ansible_collections" / "pyike" / "ipsec").symlink_to(REPO)
    return root


COLLECTIONS_ROOT = _collections_root()
atexit.register(shutil.rmtree, str(COLLECTIONS_ROOT), True)
if str(COLLECTIONS_ROOT) not in sys.path:
    sys.path.insert(0, str(COLLECTIONS_ROOT))


class FakeDaemon:
    """A control socket that answers each request with handler(command, args) -> answer dict."""

    def __init__(self, path, handler):
        self.path = str(path)
        self.handler = handler
        self.requests = []
        self._server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._server.bind(self.path)
        self._server.listen(8)
        self._server.settimeout(0.2)
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self):
        while not self._stop.is_set():
            try:
                conn, _addr = self._server.accept()
            except socket.timeout:
                continue
            except OSError:
                return
            with conn:
                data = b""
                while not data.endswith(b"\n"):
                    chunk = conn.recv(65536)
                    if not chunk:
                        break
                    data += chunk
                request = json.loads(data.decode())
                self.requests.append((request["command"], request.get("args") or {}))
                answer = self.handler(request["command"], request.get("args") or {})
                if answer is None:  # a daemon that never answers
                    self._stop.wait(1.0)
                else:
                    conn.sendall(json.dumps(answer).encode() + b"\n")

    def commands(self):
        return [command for command, _args in self.requests]

    def close(self):
        self._stop.set()
        self._server.close()
        self._thread.join(2)
        try:
            os.unlink(self.path)
        except OSError:
            pass
