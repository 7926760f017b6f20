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
# it measured; tcpdump captures the loopback traffic of each run; the percentiles loadgen and oha
# report (open model at ACC_RATE/s with latency correction, closed model at ACC_C in flight) are
# compared with the same percentiles on the wire (loadgen/scripts/wire-latency.py: kernel time
# stamps of each request's and response's first segment) and with the simulator's own record of
# the same requests. The simulator and the generator run at a real-time priority (chrt -f 10) so
# that other work on the machine does not stand between a segment and the tool's clock. Needs
# root (tcpdump, chrt).
#
# All traffic goes to 127.0.0.1 with dummy credentials; every run is bounded by a request count
# or a duration.
#
# Usage: loadgen/scripts/bench-vs-oha.sh
#   env: MODE, LOADGEN, OHA, N, C, RATE, DURATION, REPEAT, LATENCY, ACC_RATE, ACC_DURATION,
#   ACC_C, ACC_N, BASELINE (a second loadgen build, e.g. before a change, run after loadgen in
#   every repetition, in both modes)
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
ACC_RATE=${ACC_RATE:-500}         # accuracy mode, open model: arrivals per second
ACC_DURATION=${ACC_DURATION:-20}  # accuracy mode, open model: seconds
ACC_C=${ACC_C:-16}                # accuracy mode, closed model: requests in flight
ACC_N=${ACC_N:-8000}              # accuracy mode, closed model: requests
BASELINE=${BASELINE:-}            # another loadgen binary, measured in the same runs

export AWS_ACCESS_KEY_ID=AKIDEXAMPLE AWS_SECRET_ACCESS_KEY=wJalrXUtnFEMIK7MDENGbPxRfiCYEXAMPLEKEY
export AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
unset AWS_SESSION_TOKEN AWS_PROFILE

work=$(mktemp -d)
sim_args=(simulate --bind 127.0.0.1:0)
sim_prio=()
[ "$MODE" = accuracy ] && sim_args+=(--latency "$LATENCY" --record) && sim_prio=(chrt -f 10)
"${sim_prio[@]}" taskset -c 0 "$LOADGEN" "${sim_args[@]}" >"$work/sim.out" 2>"$work/sim.err" &
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
  local n=$((RATE * DURATION)) loadgens=("loadgen=$LOADGEN")
  if [ -n "$BASELINE" ]; then loadgens+=("baseline=$BASELINE"); fi
  for _ in $(seq "$REPEAT"); do
    for target in http lambda; do
      local -n oha_args="oha_$target" lg_args="lg_$target"
      read -r w c < <(measure "$OHA" --no-tui -n "$N" -c "$C" "${oha_args[@]}")
      row oha "$target closed c=$C" "$N" "$w" "$c"
      for lg in "${loadgens[@]}"; do
        read -r w c < <(measure "${lg#*=}" run "${lg_args[@]}" --concurrency "$C" --requests "$N" --no-progress --metrics-addr off)
        row "${lg%%=*}" "$target closed c=$C" "$N" "$w" "$c"
      done
      read -r w c < <(measure "$OHA" --no-tui -z "${DURATION}s" -q "$RATE" --latency-correction -c "$C" "${oha_args[@]}")
      row oha "$target open ${RATE}/s" "$n" "$w" "$c"
      for lg in "${loadgens[@]}"; do
        read -r w c < <(measure "${lg#*=}" run "${lg_args[@]}" --rate "$RATE" --duration "${DURATION}s" --max-in-flight "$C" --no-progress --metrics-addr off --allow-dropped)
        row "${lg%%=*}" "$target open ${RATE}/s" "$n" "$w" "$c"
      done
    done
  done
}

# loadgen's percentiles from its JSON report: "p50 p90 p99 p99.9" in ms.
loadgen_percentiles() {
  python3 -c 'import json,sys; l=json.load(sys.stdin)["latency_ms"]; print(l["p50"], l["p90"], l["p99"], l["p99_9"])'
}

# oha's percentiles from its JSON output (seconds): "p50 p90 p99 p99.9" in ms.
oha_percentiles() {
  python3 -c 'import json,sys; l=json.load(sys.stdin)["latencyPercentiles"]; print(*(f"{l[k]*1e3:.3f}" for k in ("p50","p90","p99","p99.9")))'
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

# Accuracy runs: "name|loadgen arguments|oha arguments". Both tools at the same rate or
# concurrency, for the same time or count; oha's open model with its latency correction, which
# times from the scheduled send as loadgen does.
ACCURACY_RUNS=(
  "open ${ACC_RATE}/s ${ACC_DURATION}s|--rate $ACC_RATE --duration ${ACC_DURATION}s --max-in-flight 64|-q $ACC_RATE -z ${ACC_DURATION}s --latency-correction -c 64"
  "closed c=$ACC_C n=$ACC_N|--concurrency $ACC_C --requests $ACC_N|-c $ACC_C -n $ACC_N"
)

# One run of each tool for the accuracy mode, given the run's arguments; prints its percentiles.
# Both tools run at a real-time priority (chrt), as the simulator does in this mode: on a machine
# shared with builds, a generator that waits for a CPU after the answer arrived measures the
# machine, not itself.
loadgen_accuracy() { # arguments [binary]
  # shellcheck disable=SC2086
  chrt -f 10 taskset -c 1 "${2:-$LOADGEN}" run "${lg_http[@]}" $1 --no-progress --metrics-addr off --allow-dropped --json | loadgen_percentiles
}
oha_accuracy() {
  # shellcheck disable=SC2086
  chrt -f 10 taskset -c 1 "$OHA" --no-tui --output-format json $1 "${oha_http[@]}" | oha_percentiles
}

# One tool's run under tcpdump: prints its own percentiles, the wire's and the simulator's.
capture() { # name tool command...
  local name=$1 tool=$2 port=${base##*:} own
  shift 2
  tcpdump -i lo -w "$work/run.pcap" -s 128 -U "tcp port $port" 2>"$work/tcpdump.err" &
  local dump=$!
  for _ in $(seq 50); do grep -qs listening "$work/tcpdump.err" && break; sleep 0.1; done
  own=$("$@")
  # tcpdump has written every segment (-U): stop it and let it close the file.
  kill -INT "$dump"
  wait "$dump" || true
  # shellcheck disable=SC2086
  printf "%-24s %-14s %8s %8s %8s %8s\n" "$name" "$tool" $own
  # shellcheck disable=SC2046
  printf "%-24s %-14s %8s %8s %8s %8s %6s\n" "$name" "wire ($tool)" \
    $(python3 "$(dirname "$0")/wire-latency.py" "$work/run.pcap" "$port" | cut -d' ' -f3,5,7,9,11)
  # shellcheck disable=SC2046
  printf "%-24s %-14s %8s %8s %8s %8s\n" "$name" "sim ($tool)" $(simulator_percentiles)
}

accuracy() {
  printf "%-24s %-14s %8s %8s %8s %8s %6s\n" run source p50 p90 p99 p99.9 conns
  for _ in $(seq "$REPEAT"); do
    for spec in "${ACCURACY_RUNS[@]}"; do
      IFS='|' read -r name lg oha <<<"$spec"
      capture "$name" loadgen loadgen_accuracy "$lg"
      if [ -n "$BASELINE" ]; then capture "$name" baseline loadgen_accuracy "$lg" "$BASELINE"; fi
      capture "$name" oha oha_accuracy "$oha"
    done
  done
}

"$MODE"
