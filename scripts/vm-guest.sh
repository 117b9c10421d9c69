#!/usr/bin/env bash
# Runs INSIDE the VM lab, started by scripts/vmlab.py through `vng --exec`: gives the lab what the
# VM's shared, read-only root lacks, runs pytest, and leaves its exit code in RESULTS_DIR/rc.
#
#   vm-guest.sh RESULTS_DIR PYTHON [PYTEST_ARGS...]
#   vm-guest.sh RESULTS_DIR PYTHON --script SCRIPT [ARGS...]   (SCRIPT.py runs under PYTHON, others as they are)
#
# RESULTS_DIR is a host directory shared read-write (vng --rwdir); the host reads rc, junit.xml and
# error.txt from it, and writes RESULTS_DIR/shares for it. The lines starting with "vmlab: " are markers
# the host times the phases by.
set -uo pipefail

results="$1"
python="$2"
shift 2
workdir="$PWD"
echo "vmlab: guest-start"

# Where the results go: the shared directory, or during the mounts below its bind mount on /run.
out="$results"
fail() {
  echo "vmlab: guest preparation failed: $*" | tee "$out/error.txt"
  echo 90 >"$out/rc"
  exit 90
}

touch "$results/.writable" 2>/dev/null || fail "results directory $results is not writable in the VM"

# The root share has no cache: every lookup crosses the emulated virtio device. The directories in
# $results/shares (written by vmlab.py: 9p tag, path, how) do not change during a run, so a cached view
# of them is safe, and Python starts about five times faster. "overlay": a writable overlay on tmpfs, as
# virtme-ng has /usr; "ro": read-only. The results directory may lie below one of them: its mount is
# kept on /run meanwhile and moved back on top afterwards.
mkdir -p /run/vmlab-results || fail "cannot create /run/vmlab-results"
mount --bind "$results" /run/vmlab-results || fail "cannot bind-mount $results on /run/vmlab-results"
out=/run/vmlab-results
while IFS=$'\t' read -r tag path how; do
  cache="/run/vmlab-cache/$tag"
  mkdir -p "$cache" "$cache.upper" "$cache.work" || fail "cannot create $cache"
  mount -t 9p -o ro,trans=virtio,version=9p2000.L,msize=524288,cache=loose "$tag" "$cache" 2>"$out/mount.err" \
    || fail "cannot mount the 9p share $tag ($path): $(cat "$out/mount.err")"
  case "$how" in
    overlay) mount -t overlay -o "lowerdir=$cache,upperdir=$cache.upper,workdir=$cache.work" "vmlab-$tag" "$path" ;;
    ro) mount --bind "$cache" "$path" ;;
    *) fail "unknown way $how to mount $path in $results/shares" ;;
  esac 2>"$out/mount.err" || fail "cannot mount the cached $path: $(cat "$out/mount.err")"
done <"$results/shares"
mount --move /run/vmlab-results "$results" || fail "cannot move the results directory back to $results"
out="$results"
touch "$results/.writable" 2>/dev/null || fail "results directory $results is not writable after the mounts"
cd "$workdir" || fail "cannot enter $workdir again"

# Kernel ESP and everything the lab's namespaces use. Debian builds these as modules; /sys/module/NAME
# exists for built-in ones too.
MODULES=(tun veth bridge esp4 esp6 xfrm_user xfrm_interface)
modprobe -a "${MODULES[@]}" 2>"$results/modprobe.err" \
  || fail "modprobe ${MODULES[*]} in kernel $(uname -r): $(cat "$results/modprobe.err")"
for module in "${MODULES[@]}"; do
  [ -d "/sys/module/$module" ] || fail "module $module is not loaded after modprobe (kernel $(uname -r))"
done
[ -c /dev/net/tun ] || fail "/dev/net/tun does not exist although tun is loaded"

# Unix sockets (control sockets, VICI, pid files) cannot live on the 9p share: the lab's state and every
# lab host's private /run are on tmpfs. virtme-ng mounts /run as tmpfs; check it rather than trust it.
[ "$(stat -f -c %T /run)" = tmpfs ] || fail "/run is not a tmpfs in the VM ($(stat -f -c %T /run))"
mkdir -p /run/pyike-lab /run/vmlab-home || fail "cannot create directories on /run"
# Copy-on-write over the read-only root: the lab holders overlay /etc, /var/lib, /var/log, /opt,
# /usr/local and /tmp again per host, and tools write to them.
for dir in /etc /var/lib /var/log /opt /usr/local /tmp; do
  probe="$dir/.vmlab-write-probe"
  { : >"$probe" && rm -f "$probe"; } 2>/dev/null || fail "$dir is not writable in the VM"
done

export PYIKE_VM_LAB=1 PYTHONDONTWRITEBYTECODE=1 HOME=/run/vmlab-home
echo "vmlab: prepared kernel $(uname -r), modules ${MODULES[*]}"

# The checkout is on the read-only share: no cache directory, no bytecode. Hypothesis's pytest plugin is
# 70% of pytest's start (0.75 of 1.1 s on the host, tens of seconds here) and no VM test uses it.
if [ "${1:-}" = --script ]; then  # a program (a benchmark, Molecule), not pytest
  shift
  case "$1" in
    *.py) "$python" "$@" ;;
    *) PATH="$(dirname "$python"):$PATH" "$@" ;;  # e.g. scripts/molecule.sh: molecule and ansible-* of the venv
  esac
else
  "$python" -m pytest -p no:cacheprovider -p no:hypothesispytest --durations=0 --junitxml="$results/junit.xml" "$@"
fi
rc=$?
echo "$rc" >"$results/rc"
echo "vmlab: tests-done rc=$rc"
exit "$rc"
