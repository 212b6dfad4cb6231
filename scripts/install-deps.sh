#!/usr/bin/env bash
# Installs everything pkube needs on a fresh Debian machine: system packages
# (etcd, runc, conmon, nftables, busybox-static, registry for tests, python3-pip for
# the tests' local Python base image) and a
# Python venv with pkube installed in editable mode. Idempotent.
set -euo pipefail
cd "$(dirname "$0")/.."

APT_PACKAGES="etcd-server etcd-client runc conmon nftables busybox-static python3-pip docker-registry conntrack iproute2 util-linux e2fsprogs nginx-light chromium chromium-driver libfaketime"
missing=""
for p in $APT_PACKAGES; do
  dpkg -s "$p" >/dev/null 2>&1 || missing="$missing $p"
done
# npm (the dashboard's browser packages): Debian's, unless a Node.js that brings its own is installed (NodeSource's
# nodejs conflicts with Debian's npm package)
command -v npm >/dev/null 2>&1 || missing="$missing nodejs npm"
if [ -n "$missing" ]; then
  echo ">> installing system packages:$missing"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq $missing >/dev/null
fi

if [ ! -x .venv/bin/python ]; then
  echo ">> creating .venv"
  python3 -m venv .venv
fi
echo ">> installing pkube into .venv"
# compat: a plain path in a .pth; the default editable finder costs every Python start (each pkctl command) ~10 ms
.venv/bin/pip install -q --disable-pip-version-check -e '.[test,bench]' --config-settings editable_mode=compat
echo ">> installing the dashboard's browser packages (dashboard/web/package-lock.json)"
(cd dashboard/web && npm ci --no-audit --no-fund --silent)
