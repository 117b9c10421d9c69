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
MIRROR="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"  # e.g. a local mirror in CI
PACKAGES=python3,python3-cffi-backend,python3-cryptography,python3-pyroute2,python3-yaml,iproute2,iputils-ping
PACKAGES+=,strongswan-charon,strongswan-swanctl,libcharon-extra-plugins,libstrongswan-standard-plugins,libstrongswan-extra-plugins

log() { printf 'container-image: %s\n' "$*" >&2; }

if podman image exists "$IMAGE" \
  && [ "$(podman image inspect --format '{{index .Labels "pyike.packages"}}' "$IMAGE")" = "$PACKAGES" ]; then
  exit 0
fi
old_id="$(podman image inspect --format '{{.Id}}' "$IMAGE" 2>/dev/null || true)"
root="$(mktemp -d /var/tmp/pyike-image.XXXXXX)"
trap 'rm -rf --one-file-system "$root"' EXIT
log "debootstrap bookworm from $MIRROR into $root (about a minute)"
# python3-cffi-backend by name: debootstrap cannot resolve the virtual python3-cffi-backend-api-* packages.
# The keyring makes a mirror that is not Debian's (or not signed) fail instead of warn.
if ! debootstrap --variant=minbase --keyring=/usr/share/keyrings/debian-archive-keyring.gpg \
  --include="$PACKAGES" bookworm "$root" "$MIRROR" >"$root.log" 2>&1; then
  tail -n 20 "$root.log" >&2
  [ -f "$root/debootstrap/debootstrap.log" ] && tail -n 20 "$root/debootstrap/debootstrap.log" >&2
  log "debootstrap failed (set DEBIAN_MIRROR to a reachable Debian mirror)"
  rm -f "$root.log"
  exit 1
fi
rm -f "$root.log"
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
log "importing it as $IMAGE"
tar -C "$root" -c . | podman import --quiet --change 'CMD ["sleep", "infinity"]' \
  --change "LABEL pyike.packages=$PACKAGES" - "$IMAGE" >/dev/null
if [ -n "$old_id" ]; then podman image rm "$old_id" >/dev/null 2>&1 || true; fi
