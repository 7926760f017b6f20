#!/usr/bin/env bash
# Soak: runs the real `poller` binary on an SQS queue in moto at a constant rate for DURATION and checks
# that its memory, latency and backlog stay flat and that nothing is lost (docs/soak.md). Nightly CI runs
# `scripts/soak.sh 30m`. Output: out/soak-<unix time>/ (or --out DIR). Exit code non-zero when a check
# fails (1) or the scenario cannot run (2).
#
#   scripts/soak.sh DURATION [--rate MSGS_PER_S] [--out DIR]      e.g. scripts/soak.sh 30m --rate 150
set -euo pipefail
cd "$(dirname "$0")/.."
if [ $# -lt 1 ]; then
    echo "usage: scripts/soak.sh DURATION [--rate MSGS_PER_S] [--out DIR]   (DURATION: 30m, 90s, 1h30m, ...)" >&2
    exit 2
fi
source scripts/emulator.sh
start_moto
echo "building ..." >&2
cargo build --quiet -p poller -p e2e --bin poller --bin soak
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/soak" "$@"
