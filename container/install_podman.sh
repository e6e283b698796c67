#!/usr/bin/env bash
# Installs podman and what it needs to build and run images as root on a Debian host (CI, `make image-test`).
set -euo pipefail
packages=(podman buildah mmdebstrap runc fuse-overlayfs slirp4netns uidmap containernetworking-plugins iptables
          catatonit)
if dpkg-query --show "${packages[@]}" >/dev/null 2>&1; then
    exit 0
fi
apt-get update -q
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "${packages[@]}"
