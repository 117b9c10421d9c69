#!/usr/bin/env bash
# Idempotent set-up of everything `make demo` and `make test` need, on Debian 12 as root:
# distro packages, the dev virtualenv, and the checkout visible as collection pyike.ipsec.
# A second run only checks and returns.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
VENV="${VENV:-$ROOT/.venv}"
BUILD="$ROOT/.build"
PYTHON="${PYTHON:-python3}"

APT_PACKAGES=(
  iproute2 iputils-ping iperf3 tcpdump util-linux procps kmod rsync git make shellcheck openssl nftables
  strongswan-charon strongswan-swanctl libcharon-extra-plugins
  libstrongswan-standard-plugins libstrongswan-extra-plugins
  python3 python3-venv python3-cryptography python3-pyroute2 python3-yaml
  python3-pytest python3-hypothesis
  dbus polkitd python3-dbus python3-gi gir1.2-glib-2.0
  qemu-system-x86 busybox-static
  podman runc debootstrap
)
# firewalld for the lab test of the gateway role on a firewalld host: unpacked, never installed. Installed,
# it would start on the machine itself and put python3-jsonschema into /usr/bin/python3, whose unit tests
# must run without it; the test mounts these files over /usr inside one lab host only.
FIREWALLD_DEBS=(firewalld python3-firewall python3-nftables)

log() { printf 'setup: %s\n' "$*" >&2; }

if [ "$(id -u)" -ne 0 ]; then
  echo "setup: run as root (it installs packages and the lab needs namespaces)" >&2
  exit 1
fi

missing=()
for pkg in "${APT_PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done
if [ "${#missing[@]}" -gt 0 ]; then
  log "installing distro packages: ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  # Installing charon must not leave a daemon running in the root namespaces.
  pkill -x charon 2>/dev/null || true
fi

# The VM lab (make vm-test) boots Debian's stock kernel, which has kernel ESP, under QEMU: that needs a
# /boot/vmlinuz-* whose modules include esp4. This machine's own kernel may have none; installing the
# kernel package boots nothing on the host (it only runs update-initramfs, about a minute).
vm_kernel_found=no
for image in /boot/vmlinuz-*; do
  version="${image#/boot/vmlinuz-}"
  if compgen -G "/lib/modules/$version/kernel/net/ipv4/esp4.ko*" >/dev/null; then vm_kernel_found=yes; fi
done
if [ "$vm_kernel_found" = no ]; then
  log "installing linux-image-amd64 (a kernel with kernel ESP for the VM lab; the host does not boot it)"
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq --no-install-recommends linux-image-amd64 >/dev/null \
    || { apt-get update -qq && apt-get install -y -qq --no-install-recommends linux-image-amd64 >/dev/null; }
fi

firewalld_dir="$BUILD/firewalld"
if [ ! -x "$firewalld_dir/root/usr/sbin/firewalld" ]; then
  log "unpacking ${FIREWALLD_DEBS[*]} into $firewalld_dir/root (for the lab only)"
  rm -rf "$firewalld_dir" && mkdir -p "$firewalld_dir"
  (cd "$firewalld_dir" && { apt-get download -qq "${FIREWALLD_DEBS[@]}" 2>/dev/null \
    || { apt-get update -qq && apt-get download -qq "${FIREWALLD_DEBS[@]}"; }; })
  for deb in "$firewalld_dir"/*.deb; do dpkg-deb -x "$deb" "$firewalld_dir/root"; done
  # The package's postinst picks the polkit policy with update-alternatives; take the server one.
  actions="$firewalld_dir/root/usr/share/polkit-1/actions"
  cp "$actions/org.fedoraproject.FirewallD1.server.policy.choice" "$actions/org.fedoraproject.FirewallD1.policy"
fi

req_hash="$(sha256sum < "$ROOT/requirements-dev.txt" | cut -d' ' -f1)"
if [ ! -x "$VENV/bin/python" ]; then
  log "creating virtualenv $VENV"
  "$PYTHON" -m venv "$VENV"
fi
if [ "$(cat "$VENV/.requirements.sha256" 2>/dev/null)" != "$req_hash" ]; then
  log "installing Python requirements into $VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check -r "$ROOT/requirements-dev.txt"
  echo "$req_hash" > "$VENV/.requirements.sha256"
fi

# The targets' newer cryptography (requirements-target-wheel.txt): a wheel for CPython 3.11 on glibc 2.34 or
# later, fetched once; the engine module installs it beside the engine (option cryptography_wheel).
wheels="$BUILD/wheels"
target_req="$(grep -v '^#' "$ROOT/requirements-target-wheel.txt" | tr -d '[:space:]')"
if ! compgen -G "$wheels/${target_req/==/-}-*.whl" >/dev/null; then
  log "downloading the targets' $target_req wheel into $wheels"
  rm -rf "$wheels" && mkdir -p "$wheels"
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary :all: \
    --platform manylinux_2_34_x86_64 --python-version 3.11 --implementation cp -d "$wheels" "$target_req"
fi

# containers.podman for the podman Molecule scenarios, from the `ansible` release that
# requirements-collections.txt pins with its hash (a wheel from PyPI, never built here; only that
# collection is kept).
collections_pin="$(grep -v '^#' "$ROOT/requirements-collections.txt" | awk 'NF {print $1; exit}')"
podman_collection="$BUILD/collections/ansible_collections/containers/podman"
if [ "$(cat "$podman_collection/.from" 2>/dev/null)" != "$collections_pin" ]; then
  log "unpacking containers.podman from $collections_pin into $BUILD/collections"
  download="$(mktemp -d)"
  trap 'rm -rf "$download"' EXIT
  "$VENV/bin/pip" download -q --disable-pip-version-check --no-deps --only-binary :all: --require-hashes \
    -d "$download" -r "$ROOT/requirements-collections.txt"
  rm -rf "$podman_collection"
  "$VENV/bin/python" - "$download" "$BUILD/collections" <<'PY'
import pathlib
import sys
import zipfile

download, target = sys.argv[1:]
(wheel,) = pathlib.Path(download).glob("*.whl")
prefix = "ansible_collections/containers/podman/"
with zipfile.ZipFile(wheel) as archive:
    members = [name for name in archive.namelist() if name.startswith(prefix) and ".." not in name.split("/")]
    if not any(name == prefix + "MANIFEST.json" for name in members):
        sys.exit("setup: %s holds no containers.podman collection" % wheel.name)
    archive.extractall(target, members)
PY
  rm -rf "$download"
  trap - EXIT
  echo "$collections_pin" > "$podman_collection/.from"
fi

# Ansible finds the collection at <path>/ansible_collections/pyike/ipsec.
mkdir -p "$BUILD/collections/ansible_collections/pyike"
link="$BUILD/collections/ansible_collections/pyike/ipsec"
if [ "$(readlink "$link" 2>/dev/null)" != "$ROOT" ]; then
  rm -rf "$link"
  ln -s "$ROOT" "$link"
fi
# The image of the podman Molecule scenarios, built from Debian's packages (no registry here). Only those
# two scenarios need it: a failed build is a warning, and they fail on the missing image.
if ! bash "$ROOT/scripts/container-image.sh"; then
  log "WARNING: the podman scenarios' image was not built (scripts/container-image.sh said why above)"
fi
log "ready: venv $VENV, ANSIBLE_COLLECTIONS_PATH=$BUILD/collections"
