#!/usr/bin/env bash
# Makes a Debian bookworm base image without any image registry: debootstrap writes a
# minimal root filesystem (what debian:bookworm-slim holds), `docker import` turns it into
# an image. The root filesystem is cached as a tarball, so only the first run downloads.
#   scripts/docker_base.sh [TAG]    default tag: ollamapy-base:bookworm
# Needs root, debootstrap (apt-get install debootstrap) and a running Docker daemon
# (DOCKER_HOST is honoured). DEBIAN_MIRROR picks the mirror; OLLAMAPY_DOCKER_CACHE the cache.
set -euo pipefail
tag=${1:-ollamapy-base:bookworm}
cache=${OLLAMAPY_DOCKER_CACHE:-$HOME/.cache/ollamapy-docker}
tarball=$cache/bookworm-minbase.tar
mkdir -p "$cache"
if [ ! -s "$tarball" ]; then
  root=$(mktemp -d "$cache/rootfs.XXXXXX")
  trap 'rm -rf "$root"' EXIT
  echo ">>> debootstrap bookworm (minbase) into $root"
  debootstrap --variant=minbase bookworm "$root" "${DEBIAN_MIRROR:-http://deb.debian.org/debian}" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log" >&2; exit 1; }
  rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
  tar -C "$root" --numeric-owner -cf "$tarball.tmp" .
  mv "$tarball.tmp" "$tarball"
fi
docker import "$tarball" "$tag" >/dev/null
echo "$tag"
