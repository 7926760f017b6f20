#!/usr/bin/env bash
# loadgen versus oha on the same local endpoint: the simulator's plain HTTP route with zero
# latency (POST /http/bench, body {}). Method and results: docs/benchmarks.md, section "loadgen".
#
# The server runs on CPU 0 and the generator under test on CPU 1 (taskset), so "per core" is
# literal; CPU time (user + sys of the generator process) is reported too, which stays
# meaningful on a machine shared with other work. All traffic goes to 127.0.0.1; every run is
# bounded by a request count or a duration.
#
# Usage: loadgen/scripts/bench-vs-oha.sh   (env: LOADGEN, OHA, N, C, RATE, DURATION, REPEAT)
set -euo pipefail

LOADGEN=${LOADGEN:-target/release/loadgen}
OHA=${OHA:-oha}
N=${N:-100000}          # requests per closed-model run
C=${C:-32}              # connections / concurrency
RATE=${RATE:-5000}      # open-model arrival rate
DURATION=${DURATION:-10}  # open-model seconds
REPEAT=${REPEAT:-3}

work=$(mktemp -d)
taskset -c 0 "$LOADGEN" simulate --bind 127.0.0.1:0 >"$work/sim.out" 2>"$work/sim.err" &
sim=$!
trap 'kill "$sim" 2>/dev/null; rm -rf "$work"' EXIT
for _ in $(seq 50); do grep -q listening "$work/sim.out" && break; sleep 0.1; done
url="$(sed -n 's/^listening on //p' "$work/sim.out")/http/bench"

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
    'BEGIN { printf "%-8s %-28s %8d %7.2f %7.2f %10.0f %12.0f\n", t, m, n, w, c, n / w, n / c }'
}

printf "%-8s %-28s %8s %7s %7s %10s %12s\n" tool mode requests wall_s cpu_s req/s req/cpu-s
for _ in $(seq "$REPEAT"); do
  read -r w c < <(measure "$OHA" --no-tui -n "$N" -c "$C" -m POST -d '{}' -H 'content-type: application/json' "$url")
  row oha "closed c=$C" "$N" "$w" "$c"
  read -r w c < <(measure "$LOADGEN" run --target-url "$url" --concurrency "$C" --requests "$N" --no-progress)
  row loadgen "closed c=$C" "$N" "$w" "$c"
  n=$((RATE * DURATION))
  read -r w c < <(measure "$OHA" --no-tui -z "${DURATION}s" -q "$RATE" --latency-correction -c "$C" -m POST -d '{}' -H 'content-type: application/json' "$url")
  row oha "open ${RATE}/s (corrected)" "$n" "$w" "$c"
  read -r w c < <(measure "$LOADGEN" run --target-url "$url" --rate "$RATE" --duration "${DURATION}s" --max-in-flight "$C" --no-progress)
  row loadgen "open ${RATE}/s (corrected)" "$n" "$w" "$c"
done
