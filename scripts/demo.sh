#!/usr/bin/env bash
# README command 1: install what is needed (idempotent), then run the demo on a veth lab made on the spot.
set -euo pipefail
cd "$(dirname "$0")/.."
scripts/setup.sh
exec .venv/bin/xdpgw demo "$@"
