# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A client for the daemon's control socket that tells apart why a request did not succeed.

The protocol is the daemon's (pyike/runtime/control.py): one JSON request line per connection,
``{"command": ..., "args": {...}}``, answered by ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``. The modules need to know whether the daemon *refused* a request
(a reload of a bad file: restore the old one) or could not be asked at all (not running).
Standard library only.
"""

from __future__ import annotations

import errno
import json
import socket


class DaemonError(Exception):
    """The request did not succeed; str() says why."""


class DaemonUnavailable(DaemonError):
    """Nothing listens on the control socket: the daemon is not running."""


class DaemonTimeout(DaemonError):
    """The daemon accepted the request but did not answer in time."""


class DaemonRefused(DaemonError):
    """The daemon answered with an error (its message is str(exc))."""


def request(path, command, args=None, timeout=30.0):
    """The daemon's result for `command`; raises a DaemonError subclass otherwise."""
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    sock.settimeout(timeout)
    try:
        try:
            sock.connect(path)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ECONNREFUSED, errno.ENOTSOCK):
                raise DaemonUnavailable(
                    "no pyike daemon answers on %s (%s): is it running?" % (path, exc.strerror or exc)
                ) from None
            raise DaemonError("cannot connect to %s: %s" % (path, exc.strerror or exc)) from None
        sock.sendall(json.dumps({"command": command, "args": args or {}}).encode() + b"\n")
        chunks = []
        while True:
            chunk = sock.recv(65536)
            if not chunk:
                break
            chunks.append(chunk)
    except socket.timeout:
        raise DaemonTimeout(
            "the daemon at %s did not answer %s within %gs" % (path, command, timeout)
        ) from None
    except OSError as exc:
        raise DaemonError("talking to the daemon at %s failed: %s" % (path, exc.strerror or exc)) from None
    finally:
        sock.close()
    if not chunks:
        raise DaemonError("the daemon at %s closed the connection without answering %s" % (path, command))
    try:
        answer = json.loads(b"".join(chunks).decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        raise DaemonError("the daemon's answer to %s is not JSON" % command) from None
    if not isinstance(answer, dict):
        raise DaemonError("the daemon's answer to %s is not a JSON object" % command)
    if not answer.get("ok"):
        raise DaemonRefused(str(answer.get("error") or "the daemon refused %s" % command))
    return answer.get("result")


def is_answering(path, timeout=5.0):
    """True when a daemon answers `stats` on `path`."""
    try:
        request(path, "stats", timeout=timeout)
    except DaemonError:
        return False
    return True
