#!/usr/bin/env bash
# Build fleet's cpu image (images/cpu/Dockerfile), the image `fleet submit --tier local --backend docker`
# runs, FROM the local Debian base (scripts/debian_base.sh makes it first if it is missing).
#
#   scripts/cpu_image.sh [TAG]          TAG defaults to ghcr.io/fleet-ci/fleet-cpu:local
#
# The build context is a temporary directory holding only what the image needs: fleet's sources, the torch
# wheel pip resolves for the README's pin (torch==2.13.0 from this machine's pip configuration: its CPU
# build) and this host's extra CA certificates (/usr/local/share/ca-certificates), which the image's pip
# needs where TLS to PyPI passes through a proxy; they stay in the build stage. The build uses host
# networking: an engine started with --bridge=none has no default bridge. Run inside the virtual
# environment (or with a python3 that has pip); FLEET_TORCH overrides the pin, FLEET_BASE_IMAGE the base.
set -euo pipefail
cd "$(dirname "$0")/.."
tag="${1:-ghcr.io/fleet-ci/fleet-cpu:local}"
base="${FLEET_BASE_IMAGE:-fleet-base/debian:bookworm}"
torch="${FLEET_TORCH:-2.13.0}"

scripts/debian_base.sh "$base"
context="$(mktemp -d)"
trap 'rm -rf "$context"' EXIT
mkdir -p "$context/ca" "$context/wheels"
tar --exclude=__pycache__ -c pyproject.toml README.md fleet | tar -x -C "$context"
python3 -m pip download --quiet --no-deps --dest "$context/wheels" "torch==$torch"
for cert in /usr/local/share/ca-certificates/*.crt; do
    if [ -f "$cert" ]; then cp "$cert" "$context/ca/"; fi
done
cp images/cpu/Dockerfile "$context/Dockerfile"
docker build --network host --build-arg "BASE_IMAGE=$base" --tag "$tag" "$context"
echo "cpu image $tag built FROM $base"
