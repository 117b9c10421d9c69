# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""A client for the daemon's control socket that tells apart why a request did not succeed.

The protocol is the daemon's (pyike/runtime/control.py): one JSON request line per connection,
``{"command": ..., "args": {...}}``, answered by ``{"ok": true, "result": ...}`` or
``{"ok": false, "error": "..."}``. The modules need to know whether the daemon *refused* a request
(a reload of a bad file: restore the old one) or could not be asked at all (not running). The
client is the engine's own (pyike.runtime.control.call); this module names it for the modules.
"""

from __future__ import annotations

from ..pyike.runtime.control import ControlError as DaemonError
from ..pyike.runtime.control import ControlRefused as DaemonRefused
from ..pyike.runtime.control import ControlTimeout as DaemonTimeout
from ..pyike.runtime.control import ControlUnavailable as DaemonUnavailable
from ..pyike.runtime.control import call as request

__all__ = ["DaemonError", "DaemonRefused", "DaemonTimeout", "DaemonUnavailable", "is_answering", "request"]


def is_answering(path, timeout=5.0):
    """True when a daemon answers `stats` on `path`."""
    try:
        request(path, "stats", timeout=timeout)
    except DaemonError:
        return False
    return True
