"""Measure the poller's memory and CPU for the sizing table in docs/deploy/README.md.

Runs a `poller` binary (the release one: `cargo build --profile dist -p poller`, or the image's) against
moto and `loadgen simulate` on 127.0.0.1 in three scenarios and samples /proc/PID of the poller:

  idle    one SQS mapping on an empty queue, 60 s
  sqs     one SQS mapping draining N messages (BatchSize 10, no batching window)
  kinesis one Kinesis mapping on a 4-shard stream draining K records (TRIM_HORIZON, BatchSize 100)

Prints peak RSS, CPU seconds, and CPU per 1,000 records. Usage, from the repository root:

  source scripts/emulator.sh && start_moto
  .venv/bin/python docs/deploy/sizing.py target/dist/poller target/debug/loadgen [N [K]]

(moto's SendMessage slows down as a queue grows: keep N at a few thousand.)
"""

import json
import os
import subprocess
import sys
import tempfile
import time
import urllib.request
import uuid

import boto3

TICK = os.sysconf("SC_CLK_TCK")


def sample(pid):
    """(RSS bytes, CPU seconds user+system) of a running process."""
    with open(f"/proc/{pid}/status") as f:
        rss = next(int(line.split()[1]) * 1024 for line in f if line.startswith("VmRSS:"))
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return rss, (int(fields[11]) + int(fields[12])) / TICK


def start_simulator(loadgen):
    sim = subprocess.Popen([loadgen, "simulate", "--bind", "127.0.0.1:0"], stdout=subprocess.PIPE, text=True)
    line = sim.stdout.readline()
    assert line.startswith("listening on "), f"simulator did not start: {line!r}"
    return sim, line.split()[-1]


def records_ok(sim_url, function):
    stats = json.load(urllib.request.urlopen(f"{sim_url}/_sim/stats"))["functions"]
    return stats.get(function, {}).get("records_ok", 0)


def run(poller, sim_url, mapping, done, limit):
    """Run the poller until done() or `limit` seconds; return (peak RSS, CPU s, wall s)."""
    state = tempfile.mkdtemp(prefix="poller-sizing-")
    path = os.path.join(state, "mapping.json")
    with open(path, "w") as f:
        json.dump(mapping, f)
    proc = subprocess.Popen(
        [poller, "run", "--mapping", path, "--lambda-endpoint-url", sim_url, "--state-dir", state,
         "--metrics-addr", "127.0.0.1:0"],
        stdout=subprocess.DEVNULL,
        env={**os.environ, "RUST_LOG": "warn"},
    )
    start = time.monotonic()
    peak, cpu = 0, 0.0
    try:
        while time.monotonic() - start < limit:
            assert proc.poll() is None, f"poller exited with {proc.returncode}"
            rss, cpu = sample(proc.pid)
            peak = max(peak, rss)
            if done():
                break
            time.sleep(0.2)
        else:
            if done is not never:
                sys.exit(f"not done after {limit} s")
        wall = time.monotonic() - start
    finally:
        proc.terminate()
        proc.wait(timeout=60)
    return peak, cpu, wall


def never():
    return False


def report(name, records, peak, cpu, wall):
    per_k = f"{cpu / records * 1000:.3f}" if records else "-"
    rate = f"{records / wall:.0f}" if records else "-"
    print(f"| {name} | {records} | {wall:.0f} | {rate} | {peak / 2**20:.1f} | {cpu:.2f} | {cpu / wall * 100:.1f} | {per_k} |")


def main():
    poller, loadgen = sys.argv[1], sys.argv[2]
    n = int(sys.argv[3]) if len(sys.argv) > 3 else 3000
    k = int(sys.argv[4]) if len(sys.argv) > 4 else 10 * n
    sqs = boto3.client("sqs", region_name="us-east-1")
    kinesis = boto3.client("kinesis", region_name="us-east-1")
    sim, sim_url = start_simulator(loadgen)
    print("| scenario | records | wall s | records/s | peak RSS MiB | CPU s | CPU % (avg) | CPU s / 1,000 records |")
    print("|---|---|---|---|---|---|---|---|")
    try:
        # Idle: an empty queue, long polls only.
        q = sqs.create_queue(QueueName=f"sizing-idle-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        report("SQS, idle", 0, *run(poller, sim_url, {"EventSourceArn": arn, "FunctionName": "idle"}, never, 60))

        # Busy SQS: drain n messages.
        q = sqs.create_queue(QueueName=f"sizing-sqs-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=q, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        body = json.dumps({"type": "order", "pad": "x" * 200})
        for i in range(0, n, 10):
            sqs.send_message_batch(QueueUrl=q, Entries=[{"Id": str(j), "MessageBody": body} for j in range(10)])
        mapping = {"EventSourceArn": arn, "FunctionName": "busy-sqs", "BatchSize": 10}
        report("SQS, draining", n, *run(poller, sim_url, mapping, lambda: records_ok(sim_url, "busy-sqs") >= n, 600))

        # Kinesis, 4 shards: drain n records.
        name = f"sizing-kinesis-{uuid.uuid4().hex[:8]}"
        kinesis.create_stream(StreamName=name, ShardCount=4)
        kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 1})
        arn = kinesis.describe_stream_summary(StreamName=name)["StreamDescriptionSummary"]["StreamARN"]
        for i in range(0, k, 500):
            kinesis.put_records(StreamName=name, Records=[
                {"Data": body.encode(), "PartitionKey": f"k{i + j}"} for j in range(min(500, k - i))])
        mapping = {"EventSourceArn": arn, "FunctionName": "busy-kinesis", "BatchSize": 100,
                   "StartingPosition": "TRIM_HORIZON"}
        report("Kinesis 4 shards, draining", k,
               *run(poller, sim_url, mapping, lambda: records_ok(sim_url, "busy-kinesis") >= k, 600))
    finally:
        sim.terminate()
        sim.wait(timeout=60)


if __name__ == "__main__":
    main()
