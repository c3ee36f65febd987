#!/usr/bin/env bash
# Make the Debian base image that images/cpu/Dockerfile builds FROM, without any registry: debootstrap a
# minimal Debian with Python into a directory, then `docker import` it. Idempotent: when the tag already
# names an image, nothing is done (delete the image to remake it). Needs root (debootstrap) and a running
# Docker engine.
#
#   scripts/debian_base.sh [TAG]        TAG defaults to fleet-base/debian:bookworm
#
# Environment: FLEET_DEBIAN_SUITE (bookworm: its python3 is 3.11, the CPython of the pinned torch wheel),
# FLEET_DEBIAN_MIRROR (http://deb.debian.org/debian).
set -euo pipefail
tag="${1:-fleet-base/debian:bookworm}"
suite="${FLEET_DEBIAN_SUITE:-bookworm}"
mirror="${FLEET_DEBIAN_MIRROR:-http://deb.debian.org/debian}"

if docker image inspect "$tag" >/dev/null 2>&1; then
    echo "base image $tag is already there: kept"
    exit 0
fi
command -v debootstrap >/dev/null || { echo "debootstrap is not installed: apt-get install debootstrap" >&2; exit 2; }

root="$(mktemp -d)"
trap 'rm -rf "$root"' EXIT
chmod 0755 "$root"   # it becomes the image's /: mktemp's 0700 would lock every non-root user out
# minbase: dpkg, apt and essentials only; python3-venv gives the image's virtual environment its pip.
# ca-certificates is the public CA bundle a container's pip verifies PyPI with.
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates "$suite" "$root" "$mirror"
# What a base image need not carry: the package lists and downloaded .debs (apt-get update refetches them).
rm -rf "$root"/var/lib/apt/lists/* "$root"/var/cache/apt/archives/*.deb
tar --numeric-owner -C "$root" -c . | docker import \
    --change 'ENV LANG=C.UTF-8' --change 'CMD ["/bin/bash"]' \
    --message "debootstrap --variant=minbase $suite from $mirror" - "$tag"
echo "base image $tag made from Debian $suite"
