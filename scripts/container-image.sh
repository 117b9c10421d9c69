#!/usr/bin/env bash
# Build the container image of the podman Molecule scenarios from Debian's packages, without a
# registry: debootstrap a minimal bookworm with what a pyike gateway needs (python3 with its
# cryptography, pyroute2 and yaml; iproute2), ping for the LAN clients and strongSwan (charon with
# kernel-libipsec, swanctl) for the strongSwan peer of molecule/podman_strongswan, then `podman import` it.
#
#   scripts/container-image.sh [IMAGE]     default localhost/pyike-debian:12
#
# Nothing to do if the image exists with the same package list (its label pyike.packages).
#
# Where a registry is reachable, any image with these packages serves as well (PYIKE_MOLECULE_IMAGE).
set -euo pipefail

IMAGE="${1:-localhost/pyike-debian:12}"
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
PACKAGES=python3,python3-cffi-backend,python3-cryptography,python3-pyroute2,python3-yaml,iproute2,iputils-ping
PACKAGES+=,strongswan-charon,strongswan-swanctl,libcharon-extra-plugins,libstrongswan-standard-plugins,libstrongswan-extra-plugins

log() { printf 'container-image: %s\n' "$*" >&2; }

if podman image exists "$IMAGE" \
  && [ "$(podman image inspect --format '{{index .Labels "pyike.packages"}}' "$IMAGE")" = "$PACKAGES" ]; then
  exit 0
fi
# debootstrap takes the mirror apt already uses (a local mirror in CI, for example), unless told otherwise.
if [ -z "${DEBIAN_MIRROR:-}" ]; then
  apt_mirror="$({ sed -n 's/^URIs: *//p' /etc/apt/sources.list.d/*.sources
    sed -nE 's/^deb +(\[[^]]*\] +)?//p' /etc/apt/sources.list /etc/apt/sources.list.d/*.list; } 2>/dev/null \
    | awk '{print $1}' | grep -v security | head -n 1 || true)"
  if [ -n "$apt_mirror" ]; then MIRROR="$apt_mirror"; fi
fi
old_id="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
root="$(mktemp -d /var/tmp/pyike-image.XXXXXX)"
trap 'rm -rf "$root"' EXIT
log "debootstrap bookworm from $MIRROR into $root (about a minute and a half)"
# python3-cffi-backend by name: debootstrap cannot resolve the virtual python3-cffi-backend-api-* packages.
debootstrap --variant=minbase --include="$PACKAGES" bookworm "$root" "$MIRROR" >/dev/null
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
log "importing it as $IMAGE"
tar -C "$root" -c . | podman import --quiet --change 'CMD ["sleep", "infinity"]' \
  --change "LABEL pyike.packages=$PACKAGES" - "$IMAGE" >/dev/null
if [ -n "$old_id" ]; then podman image rm "$old_id" >/dev/null 2>&1 || true; fi
