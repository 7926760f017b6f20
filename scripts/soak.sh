#!/usr/bin/env bash
# Soak: runs the real `poller` binary on an SQS queue and a Kinesis stream in moto at constant rates for
# DURATION and checks that its memory, latency and backlog stay flat and that nothing is lost
# (docs/soak.md). Nightly CI (.github/workflows/nightly.yml) runs `scripts/soak.sh 30m`. Output:
# out/soak-<unix time>/ (or --out DIR), with junit.xml. Exit code non-zero when a check fails (1) or the
# scenario cannot run (2). Every flag (rates, limits): scripts/soak.sh --help.
#
#   scripts/soak.sh DURATION [--rate MSGS_PER_S] [--stream-rate RECORDS_PER_S] [--out DIR] [LIMITS]
set -euo pipefail
cd "$(dirname "$0")/.."
needs_moto=true
for arg in "$@"; do
    case "$arg" in -h | --help | -V | --version) needs_moto=false ;; esac
done
if [ $# -lt 1 ]; then
    needs_moto=false
fi
if $needs_moto; then
    source scripts/emulator.sh
    start_moto
fi
echo "building ..." >&2
cargo build --quiet -p poller -p e2e --bin poller --bin soak
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/soak" "$@"
