"""PID 1 of a lab host: prepares the host's private filesystem view, then reaps orphans.

Runs as `python3 holder.py HOSTNAME OVERLAY_DIR STATUS_FD MARKER` under `unshare --net --mount --uts --ipc --pid --fork
--mount-proc`, so it is the first process of fresh namespaces. Once it reports "ready" on STATUS_FD the
lab manager moves links into its network namespace; killing it tears the whole host down, because the
kernel kills every process of a PID namespace whose init dies.
"""

import os
import signal
import subprocess
import sys
import time

MARKER = "pyike-lab-holder"  # appears in argv so the lab can tell its holders from recycled PIDs
COPY_ON_WRITE_DIRS = (
    "/etc",
    "/var/lib",
    "/var/log",
    "/opt",
    "/usr/local",
    # Copy-on-write, not empty: a checkout under /tmp (CI clones there) must stay visible to the
    # host, while what the host writes to /tmp stays its own.
    "/tmp",  # noqa: S108
)  # what packages and installers write
PRIVATE_TMPFS_DIRS = ("/run",)


def _mount(*args):
    subprocess.run(("mount", *args), check=True, capture_output=True, text=True)


def _prepare(hostname, overlay_dir):
    _mount("--make-rprivate", "/")
    for lower in COPY_ON_WRITE_DIRS:
        tag = lower.strip("/").replace("/", "_")
        upper = os.path.join(overlay_dir, tag + ".upper")
        work = os.path.join(overlay_dir, tag + ".work")
        os.makedirs(upper, exist_ok=True)
        os.makedirs(work, exist_ok=True)
        _mount(
            "-t",
            "overlay",
            "overlay",
            "-o",
            "lowerdir=%s,upperdir=%s,workdir=%s" % (lower, upper, work),
            lower,
        )
    for path in PRIVATE_TMPFS_DIRS:
        _mount("-t", "tmpfs", "-o", "mode=0755", "tmpfs", path)
    os.makedirs("/run/lock", exist_ok=True)
    # sysfs shows the mounting process's network namespace: remount it so /sys/class/net is ours.
    subprocess.run(("umount", "-l", "/sys"), check=False, capture_output=True)
    _mount("-t", "sysfs", "sysfs", "/sys")
    with open("/proc/sys/kernel/hostname", "w") as handle:
        handle.write(hostname)
    with open("/etc/hostname", "w") as handle:
        handle.write(hostname + "\n")
    with open("/etc/hosts", "w") as handle:
        handle.write(
            "127.0.0.1\tlocalhost\n127.0.1.1\t%s\n::1\tlocalhost ip6-localhost ip6-loopback\n" % hostname
        )
    subprocess.run(("ip", "link", "set", "lo", "up"), check=True, capture_output=True)


def _reap_forever():
    def stop(_signum, _frame):
        # As PID 1 of the namespace: take every other process of this host with us.
        try:
            os.kill(-1, signal.SIGKILL)
        except OSError:
            pass
        os._exit(0)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    while True:
        try:
            os.waitpid(-1, 0)
        except ChildProcessError:
            time.sleep(0.5)
        except InterruptedError:
            continue


def main(argv):
    hostname, overlay_dir = argv[1], argv[2]
    status = os.fdopen(int(argv[3]), "w")
    try:
        _prepare(hostname, overlay_dir)
    except subprocess.CalledProcessError as exc:
        status.write("error: %s failed: %s\n" % (" ".join(exc.cmd), (exc.stderr or "").strip()))
        status.close()
        return 1
    except OSError as exc:
        status.write("error: %s\n" % exc)
        status.close()
        return 1
    status.write("ready\n")
    status.close()
    os.chdir("/")
    _reap_forever()
    return 0


if __name__ == "__main__":
    raise SystemExit(main(sys.argv))
