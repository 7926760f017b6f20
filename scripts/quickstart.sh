#!/usr/bin/env bash
# Quickstart, no AWS account needed: starts moto (SQS emulator) and the function simulator on 127.0.0.1,
# runs the SQS mapping in scenarios/quickstart-sqs.json with the real `poller` binary, prints what happened.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator.sh
start_moto
echo "building (first run takes a few minutes) ..." >&2
cargo build --quiet -p poller -p e2e --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/quickstart"
