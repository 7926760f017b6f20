#!/usr/bin/env bash
# Runs every test of the workspace: unit, property and end-to-end tests against a real moto server and the
# function simulator, all on 127.0.0.1. Installs and starts what it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator.sh
start_moto
cargo test --workspace "$@"
