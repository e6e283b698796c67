#!/usr/bin/env bash
# Makes localhost/pybase, a Debian bookworm base with Python 3.11 and venv, without a container registry
# (mmdebstrap from Debian's package mirror), for hosts that cannot pull python:3.11-slim-bookworm.
# Usage: container/base_image.sh [IMAGE_NAME]; does nothing when the image already exists.
set -euo pipefail
name="${1:-localhost/pybase}"
if podman image exists "$name"; then
    echo "base image $name: already there"
    exit 0
fi
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
# The hook drops Debian's EXTERNALLY-MANAGED marker: the image installs into its own venv, never with
# the system pip, but tools run in derived images expect a plain Python.
mmdebstrap --mode=root --variant=minbase \
    --include=python3,python3-venv,python-is-python3,ca-certificates \
    --customize-hook='rm -f "$1"/usr/lib/python3*/EXTERNALLY-MANAGED' \
    --customize-hook='rm -rf "$1"/var/lib/apt/lists/* "$1"/var/cache/apt/*' \
    bookworm "$work/rootfs.tar"
podman import --change 'CMD ["python3"]' "$work/rootfs.tar" "$name"
echo "base image $name: made"
