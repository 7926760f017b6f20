#!/usr/bin/env bash
# The "throttle → DLQ trap" benchmark (docs/benchmarks.md): a function with reserved concurrency 2 and
# 50 ms latency, 2,000 messages in a queue with maxReceiveCount 2, drained by the release `poller` in
# each --sqs-throttle-mode (hold, the default, and aws). Prints, per mode: messages in the dead-letter
# queue, throttles per processed message, drain time. Everything on 127.0.0.1 (moto server, `loadgen
# simulate`); each run is bounded in time.
#
#   scripts/bench-throttle.sh [VISIBILITY_TIMEOUT_S]     (default 3, the least the simulator's 3 s timeout allows)
set -euo pipefail
cd "$(dirname "$0")/.."
VT=${1:-3}
source scripts/emulator.sh
start_moto
echo "building (release) ..." >&2
cargo build --quiet --release -p poller -p loadgen
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
export BENCH_BIN="$target_dir/release" BENCH_VT="$VT"
.venv/bin/python - <<'EOF'
import json, os, signal, subprocess, tempfile, time, uuid, urllib.request
import boto3

MESSAGES, MAX_RECEIVE_COUNT, RESERVED, LATENCY = 2000, 2, 2, "50ms"
DEADLINE_S = 900  # per mode: the drain must end by then
VT = int(os.environ["BENCH_VT"])
BIN = os.environ["BENCH_BIN"]
sqs = boto3.client("sqs", endpoint_url=os.environ["POLLER_TEST_ENDPOINT"], region_name="us-east-1")

def depth(url):
    a = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"])["Attributes"]
    return int(a["ApproximateNumberOfMessages"]) + int(a["ApproximateNumberOfMessagesNotVisible"])

def run(mode):
    name = f"bench-{mode}-{uuid.uuid4().hex[:8]}"
    dlq = sqs.create_queue(QueueName=name + "-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(MAX_RECEIVE_COUNT)})
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": str(VT), "RedrivePolicy": policy})["QueueUrl"]
    arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    for i in range(0, MESSAGES, 10):
        sqs.send_message_batch(QueueUrl=url, Entries=[{"Id": str(j), "MessageBody": f"m-{i + j}"} for j in range(10)])
    sim = subprocess.Popen([f"{BIN}/loadgen", "simulate", "--bind", "127.0.0.1:0", "--latency", LATENCY,
                            "--reserved-concurrency", str(RESERVED)], stdout=subprocess.PIPE, text=True)
    sim_url = sim.stdout.readline().split()[-1]
    state = tempfile.mkdtemp(prefix="bench-throttle-")
    mapping = os.path.join(state, "mapping.json")
    with open(mapping, "w") as f:
        json.dump({"EventSourceArn": arn, "FunctionName": "bench", "BatchSize": 10}, f)
    started = time.monotonic()
    poller = subprocess.Popen([f"{BIN}/poller", "run", "-m", mapping, "--lambda-endpoint-url", sim_url,
                               "--endpoint-url", os.environ["POLLER_TEST_ENDPOINT"], "--region", "us-east-1",
                               "--state-dir", state, "--metrics-addr", "off", "--sqs-throttle-mode", mode],
                              stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        while depth(url) > 0:
            if time.monotonic() - started > DEADLINE_S:
                raise SystemExit(f"{mode}: queue not drained after {DEADLINE_S} s")
            time.sleep(0.2)
        drain_s = time.monotonic() - started
    finally:
        poller.send_signal(signal.SIGTERM)
        summary = poller.communicate(timeout=60)[0].strip()
    stats = json.load(urllib.request.urlopen(f"{sim_url}/_sim/stats"))["functions"]["bench"]
    sim.send_signal(signal.SIGTERM)
    sim.wait(timeout=60)
    dead = depth(dlq)
    processed = stats["records_ok"]
    print(f"| {mode} | {dead} | {processed} | {stats['throttles']} | {stats['throttles'] / max(processed, 1):.3f} "
          f"| {stats['invocations']} | {drain_s:.1f} s |", flush=True)
    print(f"  poller: {summary}", flush=True)

print(f"visibility timeout {VT} s, {MESSAGES} messages, maxReceiveCount {MAX_RECEIVE_COUNT}, "
      f"reserved concurrency {RESERVED}, latency {LATENCY}, BatchSize 10")
print("| mode | messages in DLQ | processed | throttles | throttles per processed message | invocations | drain time |")
print("|---|---|---|---|---|---|---|")
for mode in ["hold", "aws"]:
    run(mode)
EOF
