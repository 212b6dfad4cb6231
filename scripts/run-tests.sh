#!/usr/bin/env bash
# Runs the whole test suite: import layering (import-linter), types (mypy, strict on pklib/), then pytest
# (unit + integration with real etcd, runc, netns, nftables).
set -uo pipefail
cd "$(dirname "$0")/.."
.venv/bin/lint-imports || exit 1
.venv/bin/mypy || exit 1
.venv/bin/python -m pytest -q -p no:cacheprovider "$@"
rc=$?
# pytest exits 5 when nothing was collected: that is a failure for us too.
exit $rc
