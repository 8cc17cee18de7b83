#!/usr/bin/env bash
# Installs everything and runs the whole test suite: lint, types, import rules, then pytest
# (unit tests, API tests through a real server and the official clients, and integration
# tests with the bundled real models).
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/install.sh
# Registry tests run against Debian's CNCF distribution server (and htpasswd for basic auth).
# The key tests check our ed25519 files against OpenSSH and OpenSSL.
# The deployment tests (tests/deploy) run Debian's HAProxy in front of replicas and check
# the systemd unit with systemd-analyze.
if ! command -v docker-registry >/dev/null 2>&1 || ! command -v htpasswd >/dev/null 2>&1 \
  || ! command -v ssh-keygen >/dev/null 2>&1 || ! command -v openssl >/dev/null 2>&1 \
  || ! command -v haproxy >/dev/null 2>&1 || ! command -v systemd-analyze >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo ">>> installing docker-registry, apache2-utils, openssh-client, openssl, haproxy, systemd for the registry and deployment tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq docker-registry apache2-utils openssh-client openssl haproxy systemd >/dev/null
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
    systemctl disable --now haproxy >/dev/null 2>&1 || true
  fi
fi
# tests/deploy/test_docker.py builds and runs the Docker image (a few minutes): it needs
# Debian's docker.io (the test starts its own dockerd) and debootstrap (for the base image).
if ! command -v dockerd >/dev/null 2>&1 || ! command -v debootstrap >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo ">>> installing docker.io and debootstrap for the Docker test"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends docker.io debootstrap >/dev/null
    systemctl disable --now docker.service docker.socket >/dev/null 2>&1 || true
  fi
fi
# The page tests (tests/ui) drive Debian's Chromium with Playwright (no browser download).
if ! command -v chromium >/dev/null 2>&1; then
  if [ "$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then
    echo ">>> installing chromium for the page tests"
    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null
  fi
fi
exec bash scripts/check --all "$@"
