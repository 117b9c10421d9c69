"""firewalld inside one lab host, from the packages scripts/setup.sh unpacks into .build/firewalld/root.

The package files are mounted over /usr/{lib,sbin,bin,share} in the host's own mount namespace (one
overlay each, so the host's copy-on-write /usr/local stays), its configuration is copied into the host's
copy-on-write /etc, and the host gets its own system D-Bus (private /run) and firewalld, which manages the
nftables of the host's network namespace only. Nothing of the machine is touched.
"""

from __future__ import annotations

import shlex

from conftest import REPO

FIREWALLD_ROOT = REPO / ".build" / "firewalld" / "root"


def unavailable() -> str:
    if not (FIREWALLD_ROOT / "usr" / "sbin" / "firewalld").exists():
        return "firewalld is not unpacked in %s: run make setup" % FIREWALLD_ROOT
    return ""


def start_firewalld(lab, host: str, timeout: float = 60) -> None:
    root = shlex.quote(str(FIREWALLD_ROOT))
    script = "\n".join(
        [
            "set -e",
            *(
                "mount -t overlay overlay -o lowerdir=%s/usr/%s:/usr/%s /usr/%s" % (root, d, d, d)
                for d in ("lib", "sbin", "bin", "share")
            ),
            "cp -a %s/etc/firewalld /etc/" % root,
            "mkdir -p /run/dbus /var/log",
            "dbus-daemon --system --fork",
            "firewalld",  # forks; logs to /var/log/firewalld
            "for i in $(seq %d); do" % int(timeout * 5),
            '  [ "$(firewall-cmd --state 2>/dev/null)" = running ] && exit 0; sleep 0.2',
            "done",
            "echo 'firewalld did not come up:' >&2; tail -20 /var/log/firewalld >&2; exit 1",
        ]
    )
    lab.run_in(host, ["/bin/sh", "-c", script], timeout=timeout + 30)


def restart_firewalld(lab, host: str, timeout: float = 60) -> None:
    """Stop firewalld (its nftables table goes) and start it again from its permanent configuration."""
    script = "\n".join(
        [
            "pid=$(cat /run/firewalld.pid 2>/dev/null || cat /var/run/firewalld.pid)",
            "kill $pid; for i in $(seq 100); do kill -0 $pid 2>/dev/null || break; sleep 0.1; done",
            "firewalld",
            "for i in $(seq %d); do" % int(timeout * 5),
            '  [ "$(firewall-cmd --state 2>/dev/null)" = running ] && exit 0; sleep 0.2',
            "done",
            "tail -20 /var/log/firewalld >&2; exit 1",
        ]
    )
    lab.run_in(host, ["/bin/sh", "-c", script], timeout=timeout + 30)
