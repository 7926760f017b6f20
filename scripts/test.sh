#!/usr/bin/env bash
# Runs every test of the workspace: unit, property and end-to-end tests against a real moto server and the
# function simulator, all on 127.0.0.1. Installs and starts what it needs itself.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator.sh
start_moto
# End-to-end tests run the `poller` binary; `cargo test` only rebuilds it when the poller package's own
# tests are selected, so `-p e2e --test …` would otherwise run a stale binary.
cargo build --quiet -p poller --bin poller
cargo test --workspace "$@"
