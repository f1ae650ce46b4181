#!/usr/bin/env bash
# README command 2: install what is needed (idempotent), then run the whole test suite.
# Real kernel, real packets: XDP tests load the real program on veths in namespaces they create.
# With CI=true an XDP test that cannot run fails instead of skipping.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
.venv/bin/ruff check .
exec .venv/bin/python -m pytest -q -p no:cacheprovider "$@"
