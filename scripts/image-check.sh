#!/usr/bin/env bash
# Builds the container images from ./Containerfile (`poller`, and `loadgen` with `--target loadgen`)
# without any container registry or crates.io access during the build, then checks them: non-root user,
# CA certificates, entrypoint; a real SQS mapping run by the poller image's own `poller`, and a run of
# the loadgen image's own `loadgen` against the function simulator (Invoke API, signed), both on this
# machine with moto and `loadgen simulate`.
#
# Needs root and Debian's apt repositories (installs podman, buildah and mmdebstrap). The base images of
# the Containerfile are replaced by local stand-ins made from Debian packages:
#   localhost/poller-runtime-base  bookworm minbase + ca-certificates (for distroless/cc or debian-slim)
#   localhost/poller-builder-base  bookworm minbase + gcc, libc6-dev, ca-certificates + this machine's
#                                  Rust toolchain (for rust:1-slim-bookworm)
# The crates come from this machine's cargo registry (`cargo fetch` first), copied and mounted into the
# build, which runs with CARGO_NET_OFFLINE=true (chroot isolation shares the host network, so offline is
# cargo's setting, not a sandbox).
#
# Containers cannot be *run* where cgroups are unavailable, so the check exports the image's file system
# and runs its entrypoint with chroot as the image's user, on the host network (moto on 127.0.0.1).
#
# Usage: sudo scripts/image-check.sh            (reuses base images and the built image if present)
#        REBUILD=1 sudo scripts/image-check.sh  (rebuilds both images)
# Work files: $IMAGE_CHECK_DIR (default /var/tmp/poller-image-check).
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

[ "$(id -u)" = 0 ] || { echo "image-check.sh: needs root (apt-get, chroot, podman storage)" >&2; exit 1; }

work=${IMAGE_CHECK_DIR:-/var/tmp/poller-image-check}
image=localhost/poller:check
loadgen_image=localhost/loadgen:check
runtime_base=localhost/poller-runtime-base
builder_base=localhost/poller-builder-base
suite=bookworm
mkdir -p "$work"

# vfs: no overlay or fuse needed; chroot isolation: no cgroups or namespaces needed for RUN steps.
podman() { command podman --storage-driver vfs "$@"; }

if ! command -v podman >/dev/null || ! command -v mmdebstrap >/dev/null; then
    apt-get update
    DEBIAN_FRONTEND=noninteractive apt-get install -y podman buildah mmdebstrap
fi

# --- stand-in base images ------------------------------------------------------------------------------
if ! podman image exists "$runtime_base"; then
    echo "== $runtime_base: $suite minbase + ca-certificates" >&2
    rm -rf "$work/runtime-rootfs"
    mmdebstrap --variant=minbase --include=ca-certificates "$suite" "$work/runtime-rootfs"
    tar -C "$work/runtime-rootfs" -c . | podman import \
        --change 'ENV PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' - "$runtime_base"
    rm -rf "$work/runtime-rootfs"
fi

if ! podman image exists "$builder_base"; then
    sysroot=$(rustc --print sysroot)
    echo "== $builder_base: $suite minbase + gcc + the Rust toolchain in $sysroot ($(rustc -V))" >&2
    rm -rf "$work/builder-rootfs"
    mmdebstrap --variant=minbase --include=ca-certificates,gcc,libc6-dev "$suite" "$work/builder-rootfs"
    mkdir -p "$work/builder-rootfs/usr/local/rust" "$work/builder-rootfs/usr/local/cargo"
    cp -a "$sysroot/bin" "$sysroot/lib" "$sysroot/libexec" "$work/builder-rootfs/usr/local/rust/"
    # Same layout as the official rust image: CARGO_HOME=/usr/local/cargo (the registry is mounted there).
    tar -C "$work/builder-rootfs" -c . | podman import \
        --change 'ENV PATH=/usr/local/rust/bin:/usr/local/cargo/bin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
        --change 'ENV CARGO_HOME=/usr/local/cargo' - "$builder_base"
    rm -rf "$work/builder-rootfs"
fi

# --- offline build -----------------------------------------------------------------------------------------
registry_ready=
# build IMAGE TARGET: the Containerfile's stage TARGET as IMAGE, offline, unless it exists (or REBUILD).
build() {
    local image=$1 target=$2
    if [ -z "${REBUILD:-}" ] && podman image exists "$image"; then return; fi
    if [ -z "$registry_ready" ]; then
        cargo fetch --locked
        cargo_home=${CARGO_HOME:-$HOME/.cargo}
        rm -rf "$work/registry"
        mkdir -p "$work/registry"
        cp -a "$cargo_home/registry/index" "$cargo_home/registry/cache" "$work/registry/"
        registry_ready=1
    fi
    echo "== building $image (target $target: a release build; slow on few cores)" >&2
    local start
    start=$(date +%s)
    podman build --isolation chroot \
        --build-arg BUILDER="$builder_base" --build-arg RUNTIME="$runtime_base" \
        --build-arg CARGO_NET_OFFLINE=true \
        --volume "$work/registry:/usr/local/cargo/registry" \
        --target "$target" -f Containerfile -t "$image" .
    echo "== built in $(( $(date +%s) - start )) s" >&2
}
build "$image" poller
build "$loadgen_image" loadgen

# --- image configuration and file system ------------------------------------------------------------------
# unpack IMAGE ENTRYPOINT STATE_DIR ROOTFS: checks IMAGE's configuration (a user that is not root,
# ENTRYPOINT ["ENTRYPOINT"], STATE_DIR owned by that user) and exports its file system to ROOTFS.
# Sets img_user, img_size (bytes) and img_env (the image's environment, one VAR=value per element).
unpack() {
    local image=$1 entry=$2 state=$3 rootfs=$4 entrypoint owner ctr
    img_user=$(podman image inspect --format '{{.Config.User}}' "$image")
    entrypoint=$(podman image inspect --format '{{json .Config.Entrypoint}}' "$image")
    img_size=$(podman image inspect --format '{{.Size}}' "$image")
    echo "image $image: user '$img_user', entrypoint $entrypoint, $(( img_size / 1000000 )) MB" >&2
    case "${img_user%%:*}" in
        "" | 0 | root) echo "FAIL: $image runs as root (User '$img_user')" >&2; exit 1 ;;
    esac
    [ "$entrypoint" = "[\"$entry\"]" ] || { echo "FAIL: $image's entrypoint is $entrypoint, expected [\"$entry\"]" >&2; exit 1; }
    rm -rf "$rootfs"
    mkdir -p "$rootfs"
    ctr=$(podman create "$image")
    podman export "$ctr" | tar -C "$rootfs" -x
    podman rm "$ctr" >/dev/null
    owner=$(stat -c %u:%g "$rootfs$state")
    [ "$owner" = "$img_user" ] || { echo "FAIL: $state in $image belongs to $owner, not $img_user" >&2; exit 1; }
    mapfile -t img_env < <(podman image inspect --format '{{range .Config.Env}}{{println .}}{{end}}' "$image" | sed '/^$/d')
}

rootfs="$work/rootfs"
unpack "$image" poller /var/lib/poller "$rootfs"
user=$img_user size=$img_size image_env=("${img_env[@]}")
[ -s "$rootfs/etc/ssl/certs/ca-certificates.crt" ] || { echo "FAIL: no CA bundle at /etc/ssl/certs/ca-certificates.crt" >&2; exit 1; }

# --- run it against moto and the function simulator -----------------------------------------------------
source scripts/emulator.sh
start_moto
cargo build --quiet -p loadgen --bin loadgen
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json, sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/loadgen" simulate --bind 127.0.0.1:0 > "$work/simulate.out" 2> "$work/simulate.log" &
sim_pid=$!
poller_pid=
trap 'kill "$MOTO_PID" "$sim_pid" $poller_pid 2>/dev/null || true' EXIT
for _ in $(seq 1 300); do
    grep -q '^listening on ' "$work/simulate.out" && break
    sleep 0.1
done
sim_url=$(sed -n 's/^listening on //p' "$work/simulate.out")
[ -n "$sim_url" ] || { echo "FAIL: loadgen simulate did not start; see $work/simulate.log" >&2; exit 1; }

queue=image-check-$$
count=20
mkdir -p "$rootfs/tmp"
cat > "$rootfs/tmp/mapping.json" <<EOF
{ "EventSourceArn": "arn:aws:sqs:us-east-1:123456789012:$queue", "FunctionName": "image-check",
  "BatchSize": 5, "FunctionResponseTypes": ["ReportBatchItemFailures"] }
EOF
# The image's entrypoint (`poller`, found on the image's PATH) as the image's user, with the image's
# environment plus the test's: moto's endpoint, dummy credentials, no instance metadata, a free metrics
# port. env and chroot exec the next program, so a background run's $! is the poller itself.
in_image=(env -i "${image_env[@]}"
    AWS_ENDPOINT_URL_SQS="$AWS_ENDPOINT_URL_SQS" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing
    AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true POLLER_METRICS_ADDR=127.0.0.1:0
    chroot --userspec="$user" "$rootfs" poller)
"${in_image[@]}" validate /tmp/mapping.json

.venv/bin/python - "$queue" "$count" <<'EOF'
import sys, boto3
sqs = boto3.client("sqs", region_name="us-east-1")
url = sqs.create_queue(QueueName=sys.argv[1])["QueueUrl"]
for i in range(int(sys.argv[2])):
    sqs.send_message(QueueUrl=url, MessageBody=f"message {i}")
EOF

"${in_image[@]}" run --mapping /tmp/mapping.json --lambda-endpoint-url "$sim_url" > "$work/poller.out" 2> "$work/poller.log" &
poller_pid=$!

# Done when the function has processed every message and the queue is empty (deleted after success).
.venv/bin/python - "$queue" "$count" "$sim_url" <<'EOF'
import json, sys, time, urllib.request, boto3
queue, count, sim = sys.argv[1], int(sys.argv[2]), sys.argv[3]
sqs = boto3.client("sqs", region_name="us-east-1")
url = sqs.get_queue_url(QueueName=queue)["QueueUrl"]
deadline = time.monotonic() + 180
while True:
    stats = json.load(urllib.request.urlopen(f"{sim}/_sim/stats"))["functions"].get("image-check", {})
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    left = int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])
    if stats.get("records_ok", 0) >= count and left == 0:
        print(f"the image's poller processed {stats['records_ok']} records; queue empty", file=sys.stderr)
        break
    if time.monotonic() > deadline:
        sys.exit(f"FAIL: after 180 s: function stats {stats}, {left} messages left in the queue")
    time.sleep(0.5)
EOF

kill -TERM "$poller_pid"
wait "$poller_pid" || { echo "FAIL: poller exited with $?; see $work/poller.log" >&2; exit 1; }
poller_pid=
cat "$work/poller.out"

# --- the loadgen image: configuration, and a run of its own `loadgen` against the simulator ---------------
lg_rootfs="$work/loadgen-rootfs"
unpack "$loadgen_image" loadgen /var/lib/loadgen "$lg_rootfs"
lg_user=$img_user lg_size=$img_size lg_env=("${img_env[@]}")
lg_requests=200
# The image's entrypoint as the image's user, in the image's working directory (chroot starts in /, so
# --out-dir is given in full: /var/lib/loadgen is where a relative one lands in a container).
env -i "${lg_env[@]}" AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 \
    AWS_EC2_METADATA_DISABLED=true \
    chroot --userspec="$lg_user" "$lg_rootfs" loadgen \
    run --function image-check --endpoint-url "$sim_url" -c 4 -n "$lg_requests" \
        --threshold 'error_rate < 1%' --out-dir /var/lib/loadgen/report --metrics-addr off \
    > "$work/loadgen.out" 2> "$work/loadgen.log" \
    || { echo "FAIL: the image's loadgen exited with $?; see $work/loadgen.log" >&2; exit 1; }
.venv/bin/python - "$lg_rootfs/var/lib/loadgen/report/report.json" "$lg_requests" <<'EOF'
import json, sys
report, expected = json.load(open(sys.argv[1])), int(sys.argv[2])
total = report["requests"]
if total != expected:
    sys.exit(f"FAIL: the image's loadgen report counts {total} requests, expected {expected}")
print(f"the image's loadgen sent {total} signed invocations; report.json written", file=sys.stderr)
EOF
echo "image-check: OK ($image, $(( size / 1000000 )) MB; $loadgen_image, $(( lg_size / 1000000 )) MB)" >&2
