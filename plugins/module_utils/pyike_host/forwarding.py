# Copyright: (c) 2026, pyike.ipsec developers
# GNU General Public License v3.0+ (see COPYING or https://www.gnu.org/licenses/gpl-3.0.txt)
# SPDX-License-Identifier: GPL-3.0-or-later
"""IP forwarding for a gateway: a file in /etc/sysctl.d (read at boot by systemd-sysctl or procps) and
the running value in /proc/sys, which belongs to the host's network namespace.

Only the families the tunnels carry are switched on. Nothing is ever switched off: without the file
the next boot keeps the distribution's default, and the running value stays until then.
"""

from __future__ import annotations

import errno
import os

from ansible_collections.pyike.ipsec.plugins.module_utils.pyike_ansible.common import write_atomic

KEYS = {4: "net.ipv4.ip_forward", 6: "net.ipv6.conf.all.forwarding"}
HEADER = (
    "# Installed by pyike.ipsec.host_network: this IPsec gateway forwards between its LANs and the\n"
    "# tunnel. Do not edit; the next run replaces it.\n"
)


def proc_path(key, proc_root="/proc/sys"):
    return os.path.join(proc_root, *key.split("."))


def read_running(key, proc_root="/proc/sys"):
    try:
        with open(proc_path(key, proc_root)) as handle:
            return handle.read().strip()
    except OSError:
        return None


def read_file(path):
    try:
        with open(path, "rb") as handle:
            return handle.read().decode("utf-8", "replace")
    except FileNotFoundError:
        return None


def file_content(versions):
    return HEADER + "".join("%s = 1\n" % KEYS[version] for version in sorted(versions))


class ForwardingError(Exception):
    pass


def plan(versions, path, present=True, proc_root="/proc/sys"):
    """{changes, file: (before, after), running: {key: (before, after)}} for forwarding `versions`."""
    before = read_file(path)
    after = file_content(versions) if present and versions else None
    running = {}
    for version in sorted(versions) if present else []:
        key = KEYS[version]
        current = read_running(key, proc_root)
        if current is None:
            raise ForwardingError(
                "%s does not exist: this host's kernel has no IPv%d (or /proc/sys is not mounted)"
                % (proc_path(key, proc_root), version)
            )
        running[key] = (current, "1")
    changes = []
    if before != after:
        changes.append("%s %s" % ("wrote" if after is not None else "removed", path))
    changes += [
        "set %s = 1 (was %s)" % (key, old) for key, (old, new) in sorted(running.items()) if old != new
    ]
    return {"changes": changes, "file": (before, after), "running": running, "path": path}


def apply(planned, proc_root="/proc/sys"):
    before, after = planned["file"]
    path = planned["path"]
    if before != after:
        if after is None:
            os.unlink(path)
        else:
            directory = os.path.dirname(path)
            if not os.path.isdir(directory):
                os.makedirs(directory, 0o755)
            write_atomic(path, after.encode("utf-8"), 0o644)
    for key, (old, new) in planned["running"].items():
        if old != new:
            try:
                with open(proc_path(key, proc_root), "w") as handle:
                    handle.write(new + "\n")
            except OSError as exc:
                hint = ""
                if (
                    exc.errno == errno.EROFS
                ):  # a container's /proc/sys; the namespace's own value can be set at its start
                    hint = (
                        "; in a container, set it when the container starts (podman/docker run --sysctl %s=%s)"
                        % (
                            key,
                            new,
                        )
                    )
                raise ForwardingError(
                    "cannot set %s = %s (%s): %s%s" % (key, new, proc_path(key, proc_root), exc, hint)
                ) from None


def diff_text(planned):
    """The file and the running values as they are and as they will be."""
    before_file, after_file = planned["file"]
    before = "%s:\n%s" % (planned["path"], before_file if before_file is not None else "(absent)\n")
    after = "%s:\n%s" % (planned["path"], after_file if after_file is not None else "(absent)\n")
    for key, (old, new) in sorted(planned["running"].items()):
        before += "running %s = %s\n" % (key, old)
        after += "running %s = %s\n" % (key, new)
    return before, after
