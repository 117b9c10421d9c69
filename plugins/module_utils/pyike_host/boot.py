# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""What puts the gateway's nftables rules back after a reboot or a reload of the distribution's ruleset.

nftables rules live in the kernel only, and the distribution's ``nftables.service`` loads its own file,
which starts with ``flush ruleset``. So the host keeps the spec (``<state_dir>/nftables.json``), the
command that applies it (``<bin_dir>/pyike-nftables``: nftables.py with this interpreter), and, where
systemd is PID 1, ``pyike-nftables.service``: ordered after nftables.service and firewalld.service,
restarted and reloaded with nftables.service (PartOf, ReloadPropagatedFrom), enabled for boot.
Elsewhere the command has to be run at boot after the ruleset is loaded (the role's documentation says
how).
"""

from __future__ import annotations

import hashlib
import json
import os

from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.common import write_atomic
from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.install import (
    InstallError,
    file_state,
    systemd_argument,
    systemd_program,
)

MARKER = "# Installed by pyike.ipsec.host_network"
COMMAND = "pyike-nftables"
SPEC_FILE = "nftables.json"
UNIT_NAME = "pyike-nftables.service"
UNIT_PATH = "/etc/systemd/system/" + UNIT_NAME


class BootError(Exception):
    pass


def script_text(python, source):
    head = "#!%s\n%s; do not edit (the next run replaces it).\n" % (python, MARKER)
    return head.encode("utf-8") + source


def spec_text(spec):
    document = dict(spec, comment="%s; %s apply reads it" % (MARKER, COMMAND))
    return (json.dumps(document, indent=1, sort_keys=True) + "\n").encode("utf-8")


def unit_text(bin_dir, spec_path):
    try:
        command = "%s apply %s" % (
            systemd_program("bin_dir", bin_dir, COMMAND),
            systemd_argument("state_dir", spec_path),
        )
    except InstallError as exc:
        raise BootError(str(exc)) from None
    lines = [
        "%s; do not edit (the next run replaces it)." % MARKER,
        "[Unit]",
        "Description=pyike.ipsec gateway rules in nftables (IKE and ESP from the peers, tunnelled traffic, MSS)",
        "After=nftables.service firewalld.service",
        "Before=pyiked.service",
        "PartOf=nftables.service",
        "ReloadPropagatedFrom=nftables.service",
        "",
        "[Service]",
        "Type=oneshot",
        "RemainAfterExit=yes",
        "ExecStart=" + command,
        "ExecReload=" + command,
        "",
        "[Install]",
        "WantedBy=multi-user.target",
        "",
    ]
    return "\n".join(lines).encode("utf-8")


def is_ours(path):
    try:
        with open(path, "rb") as handle:
            return MARKER.encode() in handle.read(4096)
    except OSError:
        return False


class SystemdUnit:
    """systemctl for one unit; `run(argv) -> (rc, out, err)` is the module's run_command."""

    def __init__(self, run, name=UNIT_NAME):
        self.run = run
        self.name = name

    def _systemctl(self, *args):
        rc, out, err = self.run(["systemctl", *args])
        return rc, (out or "").strip(), (err or "").strip()

    def _check(self, *args):
        rc, out, err = self._systemctl(*args)
        if rc != 0:
            raise BootError("systemctl %s failed (rc=%d): %s" % (" ".join(args), rc, err or out))

    def is_enabled(self):
        return self._systemctl("is-enabled", self.name)[1] == "enabled"

    def is_active(self):
        return self._systemctl("is-active", self.name)[1] == "active"

    def daemon_reload(self):
        self._check("daemon-reload")

    def enable(self):
        self._check("enable", "--now", self.name)

    def disable(self):
        self._check("disable", "--now", self.name)


def _read(path):
    try:
        with open(path, "rb") as handle:
            return handle.read()
    except OSError:
        return None


def _summary(content):
    if content is None:
        return "(absent)"
    return "%d bytes, sha256 %s" % (len(content), hashlib.sha256(content).hexdigest()[:12])


class BootFiles:
    """Plan and write (or remove) the spec, the command and the unit; `systemd` is a service.Systemd-like
    object for `pyike-nftables.service` or None where systemd is not PID 1."""

    def __init__(self, state_dir, bin_dir, python, source, systemd=None, unit_path=UNIT_PATH):
        self.spec_path = os.path.join(state_dir, SPEC_FILE)
        self.script_path = os.path.join(bin_dir, COMMAND)
        self.unit_path = unit_path
        self.bin_dir = bin_dir
        self.python = python
        self.source = source
        self.systemd = systemd
        self.files = []  # (path, content or None to remove, mode, what)
        self.enable = None  # True: enable the unit, False: disable it, None: leave it

    def plan(self, spec):
        """`spec` None: remove what we installed. Returns the list of changes."""
        wanted = spec is not None
        self.files = [
            (self.spec_path, spec_text(spec) if wanted else None, 0o644, "the nftables spec"),
            (
                self.script_path,
                script_text(self.python, self.source) if wanted else None,
                0o755,
                "the command",
            ),
        ]
        if self.systemd is not None:
            unit = unit_text(self.bin_dir, self.spec_path) if wanted else None
            self.files.append((self.unit_path, unit, 0o644, "the systemd unit"))
        changes = []
        for path, content, mode, what in self.files:
            if content is None:
                if is_ours(path):
                    changes.append("removed %s %s" % (what, path))
            else:
                if os.path.exists(path) and not is_ours(path):
                    raise BootError(
                        "%s exists and was not installed by pyike.ipsec.host_network; move it away first"
                        % path
                    )
                if file_state(path, content, mode) is not None:
                    changes.append("wrote %s %s" % (what, path))
        if self.systemd is not None:
            enabled = self.systemd.is_enabled() and self.systemd.is_active()
            if wanted and not enabled:
                self.enable = True
                changes.append("enabled and started %s" % UNIT_NAME)
            elif not wanted and enabled:
                self.enable = False
                changes.append("disabled %s" % UNIT_NAME)
        return changes

    def diff(self):
        """(before, after) text: the spec as it is and will be, and which other files exist."""
        before, after = [], []
        for path, content, _mode, _what in self.files:
            current = _read(path)
            if path == self.spec_path:
                before.append(
                    "%s:\n%s" % (path, current.decode("utf-8", "replace") if current else "(absent)\n")
                )
                after.append("%s:\n%s" % (path, content.decode("utf-8") if content else "(absent)\n"))
            else:
                before.append("%s: %s\n" % (path, _summary(current)))
                after.append("%s: %s\n" % (path, _summary(content)))
        if self.systemd is not None:
            before.append("%s: %s\n" % (UNIT_NAME, "enabled" if self.enable is None else "not enabled"))
            after.append("%s: %s\n" % (UNIT_NAME, "enabled" if self.enable is not False else "not enabled"))
        return "".join(before), "".join(after)

    def apply(self):
        if self.enable is False:
            self.systemd.disable()
        unit_changed = False
        for path, content, mode, _what in self.files:
            if content is None:
                if is_ours(path):
                    os.unlink(path)
                    unit_changed |= path == self.unit_path
            elif file_state(path, content, mode) is not None:
                directory = os.path.dirname(path)
                if not os.path.isdir(directory):
                    os.makedirs(directory, 0o755)
                write_atomic(path, content, mode)
                unit_changed |= path == self.unit_path
        if self.systemd is not None and unit_changed:
            self.systemd.daemon_reload()
        if self.enable:
            self.systemd.enable()
