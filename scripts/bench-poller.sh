#!/usr/bin/env bash
# Poller benchmark: CPU time of the poller process per record, with moto as the source and `loadgen
# simulate` (0 ms) as the function, against the simplest boto3 consumer. Method and results:
# docs/benchmarks.md#poller. Extra arguments go to scripts/bench_poller.py (`--help` lists them, e.g.
# `--repeat 5`, `--only sqs-http,boto3`, `--messages 5000`).
#
# Builds the release binaries unless POLLER_BIN and LOADGEN_BIN name existing ones. The process under
# test runs alone on CPU $BENCH_CPU (default 0); moto and the simulator on the others.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/emulator.sh

BENCH_CPU=${BENCH_CPU:-0}
OTHER_CPUS=${OTHER_CPUS:-$(python3 -c "import os; c=sorted(os.sched_getaffinity(0)-{$BENCH_CPU}); print(','.join(map(str,c)) or '$BENCH_CPU')")}
if [ -z "${POLLER_BIN:-}" ] || [ -z "${LOADGEN_BIN:-}" ]; then
    cargo build --release --quiet -p poller -p loadgen
    target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
    POLLER_BIN=${POLLER_BIN:-$target_dir/release/poller}
    LOADGEN_BIN=${LOADGEN_BIN:-$target_dir/release/loadgen}
fi

start_moto
# moto is the bottleneck for wall time: keep it off the measured CPU.
taskset -a -p -c "$OTHER_CPUS" "$MOTO_PID" > /dev/null
mkdir -p .emulator/bench
echo "poller: $POLLER_BIN; pinned to CPU $BENCH_CPU; moto and simulator on CPU $OTHER_CPUS" >&2
taskset -c "$OTHER_CPUS" .venv/bin/python scripts/bench_poller.py --poller "$POLLER_BIN" --loadgen "$LOADGEN_BIN" \
    --cpu "$BENCH_CPU" --other-cpus "$OTHER_CPUS" --log-dir .emulator/bench "$@"
