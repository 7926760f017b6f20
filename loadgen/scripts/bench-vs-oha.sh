#!/usr/bin/env bash
# loadgen versus oha on the same local endpoints, and loadgen's latency against the wire. Method
# and results: docs/benchmarks.md, section "loadgen".
#
# Throughput (MODE=throughput, the default): the simulator with zero latency, on its plain HTTP
# route (POST /http/bench, body {}) and on its Invoke API route (POST
# /2015-03-31/functions/bench/invocations, SigV4-signed by both tools with the same dummy
# credentials). The server runs on CPU 0 and the generator under test on CPU 1 (taskset), so "per
# core" is literal; the figure compared is requests per CPU-second of the generator process
# (user + sys from getrusage), which stays meaningful on a machine shared with other work.
#
# Accuracy (MODE=accuracy): the simulator answers in LATENCY (20 ms by default) and records what
# it measured; tcpdump captures the loopback traffic; loadgen's percentiles (open and closed) are
# compared with the same percentiles on the wire (loadgen/scripts/wire-latency.py) and with the
# simulator's own record. Needs root for tcpdump.
#
# All traffic goes to 127.0.0.1 with dummy credentials; every run is bounded by a request count
# or a duration.
#
# Usage: loadgen/scripts/bench-vs-oha.sh
#   env: MODE, LOADGEN, OHA, N, C, RATE, DURATION, REPEAT, LATENCY
set -euo pipefail

MODE=${MODE:-throughput}
LOADGEN=${LOADGEN:-target/release/loadgen}
OHA=${OHA:-oha}
N=${N:-100000}            # requests per closed-model run
C=${C:-32}                # connections / concurrency
RATE=${RATE:-5000}        # open-model arrival rate
DURATION=${DURATION:-10}  # open-model seconds
REPEAT=${REPEAT:-5}
LATENCY=${LATENCY:-20ms}  # accuracy mode: the simulated function's latency

export AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_PROFILE

work=$(mktemp -d)
sim_args=(simulate --bind 127.0.0.1:0)
[ "$MODE" = accuracy ] && sim_args+=(--latency "$LATENCY" --record)
taskset -c 0 "$LOADGEN" "${sim_args[@]}" >"$work/sim.out" 2>"$work/sim.err" &
sim=$!
trap 'kill "$sim" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do grep -q listening "$work/sim.out" && break; sleep 0.1; done
base="$(sed -n 's/^listening on //p' "$work/sim.out")"
http_url="$base/http/bench"
lambda_url="$base/2015-03-31/functions/bench/invocations"

# Runs a command on CPU 1; prints "wall_seconds cpu_seconds" of that command alone.
measure() {
  python3 - "$@" <<'PY'
import resource, subprocess, sys, time
start = time.monotonic()
subprocess.run(["taskset", "-c", "1", *sys.argv[1:]], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)
wall = time.monotonic() - start
usage = resource.getrusage(resource.RUSAGE_CHILDREN)
print(f"{wall:.3f} {usage.ru_utime + usage.ru_stime:.3f}")
PY
}

row() { # tool mode requests wall cpu
  awk -v t="$1" -v m="$2" -v n="$3" -v w="$4" -v c="$5" \
    'BEGIN { printf "%-8s %-30s %8d %7.2f %7.2f %10.0f %12.0f\n", t, m, n, w, c, n / w, n / c }'
}

oha_http=(-m POST -d '{}' -H 'content-type: application/json' "$http_url")
oha_lambda=(-m POST -d '{}' -H 'content-type: application/octet-stream'
  -H 'x-amz-invocation-type: RequestResponse' -H 'x-amz-log-type: None'
  --aws-sigv4 "aws:amz:$AWS_REGION:lambda" -a "$AWS_ACCESS_KEY_ID:$AWS_SECRET_ACCESS_KEY" "$lambda_url")
lg_http=(--target-url "$http_url")
lg_lambda=(--function bench --endpoint-url "$base" --region "$AWS_REGION")

throughput() {
  printf "%-8s %-30s %8s %7s %7s %10s %12s\n" tool mode requests wall_s cpu_s req/s req/cpu-s
  local n=$((RATE * DURATION))
  for _ in $(seq "$REPEAT"); do
    for target in http lambda; do
      local -n oha_args="oha_$target" lg_args="lg_$target"
      read -r w c < <(measure "$OHA" --no-tui -n "$N" -c "$C" "${oha_args[@]}")
      row oha "$target closed c=$C" "$N" "$w" "$c"
      read -r w c < <(measure "$LOADGEN" run "${lg_args[@]}" --concurrency "$C" --requests "$N" --no-progress --metrics-addr off)
      row loadgen "$target closed c=$C" "$N" "$w" "$c"
      read -r w c < <(measure "$OHA" --no-tui -z "${DURATION}s" -q "$RATE" --latency-correction -c "$C" "${oha_args[@]}")
      row oha "$target open ${RATE}/s" "$n" "$w" "$c"
      read -r w c < <(measure "$LOADGEN" run "${lg_args[@]}" --rate "$RATE" --duration "${DURATION}s" --max-in-flight "$C" --no-progress --metrics-addr off --allow-dropped)
      row loadgen "$target open ${RATE}/s" "$n" "$w" "$c"
    done
  done
}

# loadgen's percentiles from its JSON report: "p50 p90 p99 p99.9" in ms.
loadgen_percentiles() {
  python3 -c 'import json,sys; l=json.load(sys.stdin)["latency_ms"]; print(l["p50"], l["p90"], l["p99"], l["p99_9"])'
}

# The simulator's record of the last run: "p50 p90 p99 p99.9" of duration_ms, then clears it.
simulator_percentiles() {
  python3 - "$base" <<'PY'
import json, math, sys, urllib.request
base = sys.argv[1]
log = json.load(urllib.request.urlopen(base + "/_sim/invocations"))
values = sorted(i["duration_ms"] for i in log)
at = lambda q: values[max(1, math.ceil(q * len(values))) - 1]
print(*(f"{at(q):.3f}" for q in (0.5, 0.9, 0.99, 0.999)))
urllib.request.urlopen(urllib.request.Request(base + "/_sim/reset", method="POST"))
PY
}

accuracy() {
  local port=${base##*:}
  printf "%-34s %-10s %8s %8s %8s %8s\n" run source p50 p90 p99 p99.9
  for model in "open 200/s 20s:--rate 200 --duration 20s --max-in-flight 64" \
               "closed c=8 n=4000:--concurrency 8 --requests 4000"; do
    local name=${model%%:*} args=${model#*:}
    for _ in $(seq "$REPEAT"); do
      tcpdump -i lo -w "$work/run.pcap" -s 128 -U "tcp port $port" 2>/dev/null &
      local dump=$!
      sleep 1
      # shellcheck disable=SC2086
      read -r p50 p90 p99 p999 < <(taskset -c 1 "$LOADGEN" run "${lg_http[@]}" $args --no-progress --metrics-addr off --json | loadgen_percentiles)
      sleep 1
      kill -INT "$dump"; wait "$dump" || true
      printf "%-34s %-10s %8s %8s %8s %8s\n" "$name" loadgen "$p50" "$p90" "$p99" "$p999"
      read -r _ p50 _ p90 _ p99 _ p999 < <(python3 "$(dirname "$0")/wire-latency.py" "$work/run.pcap" "$port" | cut -d' ' -f2-)
      printf "%-34s %-10s %8s %8s %8s %8s\n" "$name" wire "$p50" "$p90" "$p99" "$p999"
      read -r p50 p90 p99 p999 < <(simulator_percentiles)
      printf "%-34s %-10s %8s %8s %8s %8s\n" "$name" simulator "$p50" "$p90" "$p99" "$p999"
    done
  done
}

"$MODE"
