"""Poller benchmark driver, run by scripts/bench-poller.sh (which starts moto and exports its endpoints).

Measures what a user sizing a sidecar needs: CPU time (user + sys) of the poller process per record,
with moto as the source and `loadgen simulate` (0 ms) as the function, side by side with the simplest
Python consumer (boto3 receive 10 -> HTTP POST -> delete batch) on the same kind of queue. moto is the
bottleneck for wall time, so wall-clock throughput says little; CPU time per record does not depend on
how fast moto answers.

Placement: the process under test (poller or baseline) runs alone on CPU `--cpu` (taskset); moto, the
simulator and this driver run on the other CPUs. Every scenario is repeated and reported as median and
spread (min-max).

Usage: python scripts/bench_poller.py --poller target/release/poller --loadgen target/release/loadgen
"""

import argparse
import base64
import collections
import concurrent.futures
import glob
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import uuid

import boto3
import requests

import bench_boto3_consumer

REGION = "us-east-1"
ACCOUNT = "123456789012"
# SendMessageBatch calls in flight while a queue is filled (boto3's default pool holds 10 connections).
FILL_THREADS = 8


def cpu_seconds(pid):
    """CPU seconds (user + sys) of a running process, all its threads including those that have ended,
    with nanosecond resolution: the kernel's CPU-time clock of that process, the clock
    `clock_getcpuclockid(3)` names (Linux encodes it as `(~pid << 3) | CPUCLOCK_SCHED`). It is the clock
    of `CLOCK_PROCESS_CPUTIME_ID`, which the boto3 baseline reads on itself (`time.process_time()`), so
    both sides are measured the same way. /proc/PID/stat counts in 10 ms ticks, ±10 % of a short run."""
    return time.clock_gettime((~pid << 3) | 2)


def system_share(pid):
    """The part of a running process's CPU time spent in the kernel (system calls, and on loopback the
    receiving side's TCP processing, which runs in the sender's system call): sys / (user + sys) from
    /proc/PID/stat. Its ticks are coarse, but their ratio is what is wanted, applied to the precise total."""
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    user, system = int(fields[11]), int(fields[12])
    return system / (user + system) if user + system else 0.0


def peak_rss_mib(pid):
    with open(f"/proc/{pid}/status") as f:
        for line in f:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def wait_for(condition, deadline_s, what, interval=0.25):
    deadline = time.monotonic() + deadline_s
    while time.monotonic() < deadline:
        if condition():
            return
        time.sleep(interval)
    raise SystemExit(f"timed out after {deadline_s}s waiting for {what}")


class Simulator:
    def __init__(self, loadgen, cpus):
        self.proc = subprocess.Popen(
            ["taskset", "-c", cpus, loadgen, "simulate", "--bind", "127.0.0.1:0"],
            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
        )
        line = self.proc.stdout.readline().strip()
        if not line.startswith("listening on "):
            raise SystemExit(f"loadgen simulate did not start: {line!r}")
        self.url = line.removeprefix("listening on ")
        self.http = requests.Session()

    def records_ok(self, function):
        stats = self.http.get(f"{self.url}/_sim/stats").json()
        return stats["functions"].get(function, {}).get("records_ok", 0)

    def stop(self):
        self.proc.send_signal(signal.SIGTERM)
        self.proc.wait(30)


def sqs_body(i):
    return json.dumps({
        "type": "order_created", "orderId": f"o-{i:08d}", "amount": (i * 37) % 5000,
        "currency": "EUR", "customer": {"id": f"c-{i % 9973:06d}", "tier": "gold"},
    })


def make_queue(sqs, name, messages):
    url = sqs.create_queue(QueueName=name, Attributes={"VisibilityTimeout": "60"})["QueueUrl"]

    def send(start):
        entries = [{"Id": str(i), "MessageBody": sqs_body(start + i)} for i in range(min(10, messages - start))]
        sqs.send_message_batch(QueueUrl=url, Entries=entries)

    # moto serves each connection on its own thread: a few batches in flight overlap the round trips.
    with concurrent.futures.ThreadPoolExecutor(FILL_THREADS) as pool:
        list(pool.map(send, range(0, messages, 10)))
    return url


def queue_empty(sqs, url):
    attrs = sqs.get_queue_attributes(
        QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    )["Attributes"]
    return attrs["ApproximateNumberOfMessages"] == "0" and attrs["ApproximateNumberOfMessagesNotVisible"] == "0"


def make_stream(kinesis, name, shards, records):
    kinesis.create_stream(StreamName=name, ShardCount=shards)
    kinesis.get_waiter("stream_exists").wait(StreamName=name, WaiterConfig={"Delay": 0.2})
    for start in range(0, records, 500):
        batch = []
        for i in range(start, min(start + 500, records)):
            data = json.dumps({"type": "click" if i % 2 == 0 else "view", "n": i, "page": f"/p/{i % 97}"})
            batch.append({"Data": data.encode(), "PartitionKey": f"k{i % 64}"})
        kinesis.put_records(StreamName=name, Records=batch)


# What one poller run measured, before the poller was stopped. `mark` is (records, cpu_seconds) at the
# first check that saw `mark_at` records done (None without `progress`); `instructions` the instructions
# the poller executed after the mark, with `--callgrind` (else None).
Measured = collections.namedtuple("Measured", "cpu wall rss mark system_share instructions")


def run_poller(args, label, mapping, target_args, done, deadline_s, idle_s=None, progress=None, mark_at=1, poller=None):
    """Start the poller pinned to one CPU, wait for `done()` (or, for an idle run, `idle_s` seconds),
    and return what was measured (`Measured`).

    With `progress` (records done so far), `mark` is (records, cpu_seconds) at the first check that
    saw at least `mark_at` records done: what comes after it is the steady state, without start-up
    (credentials, TLS roots, GetQueueUrl, leases, iterators, ...) and, with a larger `mark_at`, the
    lanes' ramp-up. For an idle run, `mark` is (0, the CPU time of the first 5 s: start-up).

    With `--callgrind DIR` the poller runs under valgrind's callgrind, which counts the instructions
    it executes in user space: the same for the same binary and work whatever else the machine does,
    so two builds can be compared on a noisy machine (the kernel's part and the CPU time are not
    measured this way; under callgrind the poller is some 50 times slower)."""
    with tempfile.TemporaryDirectory() as state:
        path = os.path.join(state, "mapping.json")
        with open(path, "w") as f:
            json.dump(mapping, f)
        log = open(os.path.join(args.log_dir, f"poller-{label}.log"), "w")
        command = [poller or args.poller, "run", "--mapping", path, "--state-dir", state, "--metrics-addr", "off",
                   *target_args]
        dumps = args.callgrind and os.path.join(args.callgrind, label)
        if dumps:
            command = ["valgrind", "--tool=callgrind", "--dump-instr=no", f"--callgrind-out-file={dumps}.%p", *command]
        proc = subprocess.Popen(
            ["taskset", "-c", args.cpu, *command],
            stdout=subprocess.DEVNULL, stderr=log, env={**os.environ, "RUST_LOG": "warn"},
        )
        started = time.monotonic()
        # Profile: sample the poller's stacks (`--perf-call-graph fp` needs a build with
        # -Cforce-frame-pointers=yes; `dwarf` unwinds any release build from its unwind tables).
        # `perf record -p` follows only the threads that exist when it attaches: let the runtime start.
        if args.perf_dir:
            time.sleep(1)
        call_graph = [] if args.perf_call_graph == "none" else ["--call-graph", args.perf_call_graph]
        perf = args.perf_dir and subprocess.Popen(
            ["perf", "record", "-q", "-F", os.environ.get("PERF_FREQ", "999"), *call_graph, "-p", str(proc.pid),
             "-o", os.path.join(args.perf_dir, f"{label}.perf.data")],
            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
        )
        try:
            mark = None
            if idle_s is None:
                def finished():
                    nonlocal mark
                    if progress and mark is None:
                        count = progress()
                        if count >= mark_at:
                            mark = (count, cpu_seconds(proc.pid))
                            if dumps:
                                # Count from here: start-up and ramp-up are left out.
                                callgrind_control("-z", proc.pid)
                    return done()

                wait_for(lambda: proc.poll() is not None or finished(), deadline_s, f"{label} to finish",
                         interval=0.05 if progress else 0.25)
                if proc.poll() is not None:
                    raise SystemExit(f"poller exited with {proc.returncode}; see {log.name}")
                cpu, wall = cpu_seconds(proc.pid), time.monotonic() - started
                if dumps:
                    callgrind_control("-d", proc.pid)
            else:
                # Skip start-up (connect, first calls), then measure a quiet stretch.
                time.sleep(5)
                cpu0, t0 = cpu_seconds(proc.pid), time.monotonic()
                mark = (0, cpu0)
                time.sleep(idle_s)
                cpu, wall = cpu_seconds(proc.pid) - cpu0, time.monotonic() - t0
            rss, sys_share = peak_rss_mib(proc.pid), system_share(proc.pid)
            instructions = callgrind_total(f"{dumps}.{proc.pid}.*") if dumps and mark else None
        finally:
            if perf:
                perf.send_signal(signal.SIGINT)
                perf.wait(60)
            proc.send_signal(signal.SIGTERM)
            proc.wait(60)
            log.close()
    return Measured(cpu, wall, rss, mark, sys_share, instructions)


def callgrind_control(option, pid):
    subprocess.run(["callgrind_control", option, str(pid)], check=True, capture_output=True, timeout=60)


def callgrind_total(pattern):
    """The instructions counted in the last dump matching `pattern` (its `summary:` or `totals:` line)."""
    last = max(glob.glob(pattern), key=lambda path: int(path.rsplit(".", 1)[1]))
    with open(last) as f:
        for line in f:
            if line.startswith(("summary:", "totals:")):
                return int(line.split()[1])
    raise SystemExit(f"no instruction total in {last}")


def sqs_scenario(args, sim, sqs, name, batch_size, window, target, poller=None):
    def run(rep):
        function = f"{name}-{rep}-{uuid.uuid4().hex[:6]}"
        url = make_queue(sqs, function, args.messages)
        mapping = {
            "EventSourceArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{function}",
            "FunctionName": function, "BatchSize": batch_size,
        }
        if window:
            mapping["MaximumBatchingWindowInSeconds"] = window
        target_args = (["--http-url", f"{sim.url}/http/{{function}}"] if target == "http"
                       else ["--lambda-endpoint-url", sim.url])
        done = lambda: sim.records_ok(function) >= args.messages and queue_empty(sqs, url)
        m = run_poller(args, function, mapping, target_args, done, args.deadline,
                       progress=lambda: sim.records_ok(function), mark_at=args.steady_from * args.messages,
                       poller=poller)
        sqs.delete_queue(QueueUrl=url)
        if args.callgrind:
            return m.instructions / (args.messages - m.mark[0]), m.cpu, m.wall, m.rss
        steady = (args.messages - m.mark[0]) / (m.cpu - m.mark[1]) if m.mark and m.cpu > m.mark[1] else None
        return args.messages / m.cpu, m.cpu, m.wall, m.rss, steady, m.system_share
    return run


def baseline_scenario(args, sim, sqs):
    def run(rep):
        function = f"boto3-{rep}-{uuid.uuid4().hex[:6]}"
        url = make_queue(sqs, function, args.messages)
        out = subprocess.run(
            ["taskset", "-c", args.cpu, sys.executable, os.path.join(os.path.dirname(__file__), "bench_boto3_consumer.py"),
             url, f"{sim.url}/http/{function}", str(args.messages)],
            check=True, capture_output=True, text=True, timeout=args.deadline,
        )
        result = json.loads(out.stdout)
        sqs.delete_queue(QueueUrl=url)
        return (args.messages / result["cpu_seconds"], result["cpu_seconds"], result["wall_seconds"],
                result["peak_rss_mib"], None, result["system_seconds"] / result["cpu_seconds"])
    return run


def round_trips_scenario(args, sim, sqs):
    """The three HTTP round trips per ten messages alone, made by oha, a Rust HTTP load generator
    that does nothing else: no signing, no JSON, no event, no bookkeeping. Two ReceiveMessage calls
    on an empty queue stand for the receive and the delete (moto answers `{}`: smaller answers than
    the real ones), and one POST of a real ten-record event (built as the boto3 loop builds it, from
    messages just received) to the simulator, each with `--round-trip-connections` connections, as
    the poller starts with five lanes. The result, in records per CPU-second as if every ten
    records cost these three requests, is a lower bound on what any consumer pays for the same
    exchanges on this machine: it places the goal against the round trips' own cost."""
    def run(rep):
        oha = args.oha or shutil.which("oha")
        if not oha:
            raise SystemExit("the round-trips scenario needs oha (https://github.com/hatoo/oha): "
                             "`cargo install oha`, then --oha PATH or oha on PATH")
        function = f"round-trips-{rep}-{uuid.uuid4().hex[:6]}"
        url = make_queue(sqs, function, 10)
        messages = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, AttributeNames=["All"],
                                       MessageAttributeNames=["All"]).get("Messages", [])
        batches = args.messages // 10
        with tempfile.TemporaryDirectory() as work:
            receive, post = os.path.join(work, "receive.json"), os.path.join(work, "event.json")
            with open(receive, "w") as f:
                json.dump({"QueueUrl": url, "MaxNumberOfMessages": 10, "WaitTimeSeconds": 0}, f)
            with open(post, "w") as f:
                json.dump(bench_boto3_consumer.event(messages), f)
            # moto routes by the credential scope of `Authorization` (it does not check signatures).
            to_moto = ["-H", "content-type: application/x-amz-json-1.0", "-H", "x-amz-target: AmazonSQS.ReceiveMessage",
                       "-H", "x-amzn-query-mode: true", "-H", "authorization: AWS4-HMAC-SHA256 Credential=testing/"
                       f"20260101/{REGION}/sqs/aws4_request, SignedHeaders=host, Signature=0",
                       "-D", receive, os.environ["POLLER_TEST_ENDPOINT"] + "/"]
            to_function = ["-H", "content-type: application/json", "-D", post, f"{sim.url}/http/{function}"]
            cpu = system = 0.0
            wall = time.monotonic()
            for requests_, target in ((2 * batches, to_moto), (batches, to_function)):
                proc = subprocess.Popen(["taskset", "-c", args.cpu, oha, "--no-tui", "-n", str(requests_),
                                         "-c", str(args.round_trip_connections), "-m", "POST", *target],
                                        stdout=subprocess.DEVNULL)
                # This oha run's own resource usage (taskset execs oha in the same process).
                timer = threading.Timer(args.deadline, proc.kill)
                timer.start()
                _, status, usage = os.wait4(proc.pid, 0)
                timer.cancel()
                proc.returncode = os.waitstatus_to_exitcode(status)
                if proc.returncode:
                    raise SystemExit(f"oha failed (exit {proc.returncode}): {' '.join(target)}")
                cpu += usage.ru_utime + usage.ru_stime
                system += usage.ru_stime
            wall = time.monotonic() - wall
        if sim.records_ok(function) != 10 * batches:
            raise SystemExit(f"round trips: the simulator counted {sim.records_ok(function)} records, not {10 * batches}")
        sqs.delete_queue(QueueUrl=url)
        # No peak RSS: the child's high-water mark includes the driver's pages from before the exec.
        return 10 * batches / cpu, cpu, wall, None, None, system / cpu
    return run


# The stream every Kinesis run reads with `--fill-once`.
FILLED_ONCE = {}


def kinesis_scenario(args, sim, kinesis, poller=None, label="kinesis"):
    """With `--fill-once`, every run (of every binary) reads the same stream, filled once, from
    TRIM_HORIZON: a fresh function name per run keeps the simulator's counts apart, and the fill, which
    takes moto minutes, is paid once."""
    shared = FILLED_ONCE

    def run(rep):
        function = f"{label}-{rep}-{uuid.uuid4().hex[:6]}"
        if not args.fill_once:
            stream = function
            make_stream(kinesis, stream, args.shards, args.records)
        else:
            if "stream" not in shared:
                shared["stream"] = f"kinesis-shared-{uuid.uuid4().hex[:6]}"
                make_stream(kinesis, shared["stream"], args.shards, args.records)
            stream = shared["stream"]
        mapping = {
            "EventSourceArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{stream}",
            "FunctionName": function, "BatchSize": 500, "StartingPosition": "TRIM_HORIZON",
            "ParallelizationFactor": args.parallelization_factor,
            "FilterCriteria": {"Filters": [{"Pattern": json.dumps({"data": {"type": ["click"]}})}]},
        }
        kept = (args.records + 1) // 2
        done = lambda: sim.records_ok(function) >= kept
        m = run_poller(args, function, mapping, ["--lambda-endpoint-url", sim.url], done, args.deadline,
                       progress=lambda: sim.records_ok(function), poller=poller)
        cpu, mark = m.cpu, m.mark
        if not args.fill_once:
            kinesis.delete_stream(StreamName=stream)
        # CPU before the first delivery (start-up: configuration, credentials, TLS roots, DescribeStreamSummary,
        # ListShards, leases, iterators, the first pages), and the records per CPU-second after it.
        polled_after = args.records * (kept - mark[0]) / kept
        if args.callgrind:
            return m.instructions / polled_after, cpu, m.wall, m.rss
        steady = polled_after / (cpu - mark[1]) if cpu > mark[1] else float("inf")
        print(f"# {label}: {mark[1]:.2f} CPU-s until the first {mark[0]} records were delivered; "
              f"{steady:,.0f} records polled/CPU-s after that", file=sys.stderr, flush=True)
        return args.records / cpu, cpu, m.wall, m.rss
    return run


def idle_scenario(args, sim, sqs, kinesis):
    def run(rep):
        function = f"idle-{rep}-{uuid.uuid4().hex[:6]}"
        url = make_queue(sqs, function, 0)
        make_stream(kinesis, function, 4, 0)
        mappings = {"EventSourceMappings": [
            {"EventSourceArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{function}", "FunctionName": function},
            {"EventSourceArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{function}", "FunctionName": function,
             "StartingPosition": "LATEST"},
        ]}
        cpu, wall, rss, *_ = run_poller(args, function, mappings, ["--lambda-endpoint-url", sim.url], None, None, idle_s=args.idle_seconds)
        sqs.delete_queue(QueueUrl=url)
        kinesis.delete_stream(StreamName=function)
        return 100.0 * cpu / wall, cpu, wall, rss
    return run


def idle_sqs_scenario(args, sim, sqs):
    """One SQS mapping on an empty queue: what the SQS side costs when nothing arrives (long polls
    of 20 s on the idle floor's lanes, the visibility heartbeat, the visibility timeout re-check)."""
    def run(rep):
        function = f"idle-sqs-{rep}-{uuid.uuid4().hex[:6]}"
        url = make_queue(sqs, function, 0)
        mapping = {"EventSourceArn": f"arn:aws:sqs:{REGION}:{ACCOUNT}:{function}", "FunctionName": function}
        cpu, wall, rss, *_ = run_poller(args, function, mapping, ["--lambda-endpoint-url", sim.url], None, None, idle_s=args.idle_seconds)
        sqs.delete_queue(QueueUrl=url)
        return 100.0 * cpu / wall, cpu, wall, rss
    return run


def idle_kinesis_scenario(args, sim, kinesis):
    """A quiet 4-shard stream alone: what polling each shard once a second costs."""
    def run(rep):
        function = f"idle-kinesis-{rep}-{uuid.uuid4().hex[:6]}"
        make_stream(kinesis, function, 4, 0)
        mapping = {"EventSourceArn": f"arn:aws:kinesis:{REGION}:{ACCOUNT}:stream/{function}", "FunctionName": function,
                   "StartingPosition": "LATEST"}
        cpu, wall, rss, startup, *_ = run_poller(args, function, mapping, ["--lambda-endpoint-url", sim.url], None, None,
                                             idle_s=args.idle_seconds)
        print(f"# idle-kinesis: {startup[1]:.2f} CPU-s in the first 5 s (start-up)", file=sys.stderr, flush=True)
        kinesis.delete_stream(StreamName=function)
        return 100.0 * cpu / wall, cpu, wall, rss
    return run


def in_order(scenarios, rep):
    """The scenarios in the order repetition `rep` runs them: with an anchor, each scenario and its
    `-anchor` twin swap places every other repetition. Whichever of the two runs second was measured
    some 10 % cheaper than the first (the same binary both ways round, SQS Lambda Invoke, 6-7
    repetitions), so a fixed order would bias every ratio by that much."""
    order = list(scenarios)
    if rep % 2:
        for i in range(len(order) - 1):
            if order[i + 1][0] == f"{order[i][0]}-anchor":
                order[i], order[i + 1] = order[i + 1], order[i]
    return order


def summary(values):
    med = statistics.median(values)
    return med, min(values), max(values)


def main():
    p = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--poller", required=True)
    p.add_argument("--loadgen", required=True)
    p.add_argument("--cpu", default="0", help="CPU the process under test is pinned to")
    p.add_argument("--other-cpus", default="1", help="CPUs for the simulator")
    p.add_argument("--repeat", type=int, default=3)
    p.add_argument("--messages", type=int, default=20000, help="SQS messages per run")
    p.add_argument("--records", type=int, default=100000, help="Kinesis records per run")
    p.add_argument("--shards", type=int, default=4, help="shards of the Kinesis scenario's stream")
    p.add_argument("--parallelization-factor", type=int, default=1, help="ParallelizationFactor of the Kinesis mapping")
    p.add_argument("--idle-seconds", type=float, default=30.0)
    p.add_argument("--deadline", type=float, default=900.0, help="longest one run may take, seconds")
    p.add_argument("--only", default="", help="comma-separated scenario names (default: all)")
    p.add_argument("--log-dir", default=tempfile.gettempdir())
    p.add_argument("--steady-from", type=float, default=0.2,
                   help="SQS: also report records/CPU-s from this fraction of the records done to the end")
    p.add_argument("--perf-dir", help="record a `perf` profile of every poller run into this directory")
    p.add_argument("--perf-call-graph", default="fp", help="perf's --call-graph: fp (frame-pointer build), dwarf, or none (a flat profile)")
    p.add_argument("--callgrind", metavar="DIR",
                   help="run the poller under valgrind's callgrind (dumps in DIR) and report the instructions it "
                        "executes per record after the mark, instead of CPU time: repeatable on a noisy machine, "
                        "user space only (SQS and Kinesis scenarios)")
    p.add_argument("--fill-once", action="store_true",
                   help="Kinesis: fill one stream and read it from TRIM_HORIZON in every run")
    p.add_argument("--anchor", "--kinesis-anchor", metavar="POLLER",
                   help="also run this poller binary on the same work, beside --poller in every repetition "
                        "(after it in even repetitions, before it in odd ones), for each SQS and Kinesis "
                        "scenario selected (rows NAME-anchor), and report the ratio per repetition")
    p.add_argument("--oha", metavar="PATH", help="oha binary for the round-trips scenario (default: oha on PATH)")
    p.add_argument("--round-trip-connections", type=int, default=5,
                   help="connections of each oha run in the round-trips scenario (the poller's initial SQS lanes)")
    args = p.parse_args()

    endpoint = os.environ["POLLER_TEST_ENDPOINT"]
    sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=REGION)
    kinesis = boto3.client("kinesis", endpoint_url=endpoint, region_name=REGION)
    sim = Simulator(args.loadgen, args.other_cpus)
    n = args.messages

    def on_records(poller=None, suffix=""):
        """The scenarios that run a poller binary on records (SQS, Kinesis)."""
        anchor = f", anchor {poller}" if poller else ""
        return [
            (f"sqs-http{suffix}", f"SQS, {n:,} messages, BatchSize 10, HTTP target{anchor}", "records/CPU-s",
             sqs_scenario(args, sim, sqs, f"sqs-http{suffix}", 10, 0, "http", poller)),
            (f"sqs-lambda{suffix}", f"SQS, {n:,} messages, BatchSize 10, Lambda Invoke target{anchor}",
             "records/CPU-s", sqs_scenario(args, sim, sqs, f"sqs-lambda{suffix}", 10, 0, "lambda", poller)),
            (f"sqs-window{suffix}", f"SQS, {n:,} messages, BatchSize 100 + 1 s window, Lambda Invoke{anchor}",
             "records/CPU-s", sqs_scenario(args, sim, sqs, f"sqs-window{suffix}", 100, 1, "lambda", poller)),
            (f"kinesis{suffix}", f"Kinesis, {args.records:,} records, {args.shards} shards, ParallelizationFactor "
             f"{args.parallelization_factor}, BatchSize 500, filter keeps half{anchor}",
             "records polled/CPU-s", kinesis_scenario(args, sim, kinesis, poller, f"kinesis{suffix}")),
        ]

    # With an anchor, each scenario is followed by the same work on the anchor binary, in every repetition.
    measured = on_records()
    if args.anchor:
        measured = [s for pair in zip(measured, on_records(args.anchor, "-anchor")) for s in pair]
    scenarios = [
        ("boto3", f"SQS, {n:,} messages: boto3 loop (receive 10, POST, delete batch)", "records/CPU-s",
         baseline_scenario(args, sim, sqs)),
        ("round-trips", f"SQS, {n:,} messages: the round trips alone, by oha (3 requests per 10 messages)",
         "records/CPU-s", round_trips_scenario(args, sim, sqs)),
        *measured,
        ("idle-kinesis", "Idle: quiet 4-shard stream", "% of a core", idle_kinesis_scenario(args, sim, kinesis)),
        ("idle", "Idle: empty SQS queue + quiet 4-shard stream", "% of a core", idle_scenario(args, sim, sqs, kinesis)),
        ("idle-sqs", "Idle: one SQS mapping, empty queue", "% of a core", idle_sqs_scenario(args, sim, sqs)),
    ]
    only = {s for s in args.only.split(",") if s}
    if not only and not (args.oha or shutil.which("oha")):
        print("# no oha on PATH: the round-trips scenario is left out (--oha PATH)", file=sys.stderr)
        scenarios = [s for s in scenarios if s[0] != "round-trips"]
    only |= {f"{key}-anchor" for key in only} if args.anchor else set()
    if args.callgrind:
        # Instructions per record, for the scenarios that run the poller on records only.
        os.makedirs(args.callgrind, exist_ok=True)
        scenarios = [(key, title, "instructions/record" + (" polled" if key.startswith("kinesis") else ""), run)
                     for key, title, _, run in scenarios if key.startswith(("sqs-", "kinesis"))]
    rows = []
    try:
        results = {}
        # Interleave repetitions, so that a noisy stretch of the machine does not hit one scenario only.
        for rep in range(args.repeat):
            for key, _, _, run in in_order(scenarios, rep):
                if only and key not in only:
                    continue
                r = run(rep)
                results.setdefault(key, []).append(r)
                steady = f", steady state {r[4]:,.0f}/CPU-s" if len(r) > 4 and r[4] else ""
                system = f", {r[5]:.0%} of it system" if len(r) > 5 else ""
                rss = f", peak RSS {r[3]:.1f} MiB" if r[3] is not None else ""
                print(f"# {key} run {rep + 1}: {r[0]:,.1f} (cpu {r[1]:.2f}s{system}, wall {r[2]:.1f}s{rss}{steady})",
                      file=sys.stderr, flush=True)
        for key, title, unit, _ in scenarios:
            if key not in results:
                continue
            med, lo, hi = summary([r[0] for r in results[key]])
            cpu = statistics.median(r[1] for r in results[key])
            rss = max((r[3] for r in results[key] if r[3] is not None), default=None)
            rows.append((title, f"{med:,.1f}" if unit.startswith("%") else f"{med:,.0f}",
                         f"{lo:,.1f}-{hi:,.1f}" if unit.startswith("%") else f"{lo:,.0f}-{hi:,.0f}",
                         unit, f"{cpu:.2f}", "-" if rss is None else f"{rss:.0f}"))
    finally:
        sim.stop()
    base = statistics.median(r[0] for r in results["boto3"]) if "boto3" in results else None
    print(f"| Scenario | Median | Spread (min-max, {args.repeat} runs) | Unit | CPU-s (median) | Peak RSS MiB | vs boto3 |")
    print("|---|---|---|---|---|---|---|")
    for (title, med, spread, unit, cpu, rss), key in zip(rows, [k for k, *_ in scenarios if k in results]):
        ratio = ""
        if base and unit == "records/CPU-s" and key != "boto3":
            ratio = f"{statistics.median(r[0] for r in results[key]) / base:.1f}x"
        print(f"| {title} | {med} | {spread} | {unit} | {cpu} | {rss} | {ratio} |")
    for key in results:
        steady = [r[4] for r in results[key] if len(r) > 4 and r[4]]
        if steady:
            med, lo, hi = summary(steady)
            ratio = f", {med / base:.1f}x the boto3 loop" if base else ""
            print(f"{key}: steady state (from {args.steady_from:.0%} of the records done) {med:,.0f} records/CPU-s"
                  f" (spread {lo:,.0f}-{hi:,.0f}{ratio})")
    if base:
        # The kernel's part of the poller's CPU (the three HTTP exchanges' system calls, and on loopback
        # the receiving side's TCP work) is a floor no change to the poller's own code removes: the ratio
        # against the boto3 loop cannot exceed the loop's CPU per record over that floor.
        base_us = 1e6 / base
        for key in ("sqs-http", "sqs-lambda", "sqs-window"):
            if key in results:
                floor_us = statistics.median(r[5] * r[1] / args.messages * 1e6 for r in results[key])
                print(f"{key}: system CPU {floor_us:.1f} us/record (median); the boto3 loop's whole CPU "
                      f"{base_us:.1f} us/record: with no user time at all the poller would be at most "
                      f"{base_us / floor_us:.1f}x the boto3 loop")
    if "round-trips" in results:
        # What the exchanges alone cost (oha), against the goal's budget and the poller's whole cost.
        trips_us = 1e6 / statistics.median(r[0] for r in results["round-trips"])
        budget = f"; 20x the boto3 loop allows {1e6 / (20 * base):.1f} us/record in all" if base else ""
        print(f"round-trips: the three exchanges per ten messages alone (oha) cost {trips_us:.1f} us/record{budget}")
        for key in ("sqs-http", "sqs-lambda", "sqs-window"):
            if key in results:
                poller_us = 1e6 / statistics.median(r[0] for r in results[key])
                print(f"{key}: {poller_us:.1f} us/record, {poller_us / trips_us:.2f}x the round trips alone")
    for key in list(results):
        if f"{key}-anchor" in results:
            # Per repetition: the two binaries ran one after the other, under the same load.
            ratios = [a[0] / b[0] for a, b in zip(results[key], results[f"{key}-anchor"])]
            med, lo, hi = summary(ratios)
            print(f"{key} / {key}-anchor, per repetition: median {med:.2f}x (spread {lo:.2f}-{hi:.2f}x)")


if __name__ == "__main__":
    main()
