# Sourced by scripts/test.sh and scripts/quickstart.sh: installs moto server (PyPI `moto[server]`) into
# .venv if needed and starts it on a free 127.0.0.1 port. Exports AWS_ENDPOINT_URL_* for the emulated
# services, dummy credentials, and POLLER_TEST_ENDPOINT; stops moto when the calling script exits.

MOTO_VERSION="5.2.5"

ensure_moto() {
    if [ ! -x .venv/bin/moto_server ] || ! .venv/bin/python -c "import moto, sys; sys.exit(moto.__version__ != '$MOTO_VERSION')" 2>/dev/null; then
        echo "installing moto[server]==$MOTO_VERSION into .venv ..." >&2
        python3 -m venv .venv
        .venv/bin/pip install --quiet --disable-pip-version-check "moto[server]==$MOTO_VERSION"
    fi
}

free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

start_moto() {
    ensure_moto
    local port
    port=$(free_port)
    mkdir -p .emulator
    .venv/bin/python scripts/moto_server.py -H 127.0.0.1 -p "$port" > .emulator/moto.log 2>&1 &
    MOTO_PID=$!
    trap 'kill "$MOTO_PID" 2>/dev/null || true' EXIT
    # Until moto listens (importing it takes seconds on a loaded machine), it exits, or 120 s pass.
    local listening=false
    for _ in $(seq 1 1200); do
        if python3 -c "import socket; socket.create_connection(('127.0.0.1', $port), 0.2)" 2>/dev/null; then
            listening=true
            break
        fi
        kill -0 "$MOTO_PID" 2>/dev/null || break
        sleep 0.1
    done
    if [ "$listening" != true ]; then
        echo "moto server did not start listening on 127.0.0.1:$port; see .emulator/moto.log" >&2
        cat .emulator/moto.log >&2
        return 1
    fi
    export POLLER_TEST_ENDPOINT="http://127.0.0.1:$port"
    # Only the emulated services point at moto; the Lambda endpoint is the function simulator.
    for svc in SQS KINESIS DYNAMODB DYNAMODB_STREAMS SNS S3 STS; do
        export "AWS_ENDPOINT_URL_$svc=$POLLER_TEST_ENDPOINT"
    done
    # Dummy credentials, and never the instance-metadata address when something looks for more.
    export AWS_ACCESS_KEY_ID=testing AWS_SECRET_ACCESS_KEY=testing AWS_REGION=us-east-1 AWS_EC2_METADATA_DISABLED=true
    unset AWS_PROFILE AWS_SESSION_TOKEN
    echo "moto server $MOTO_VERSION on $POLLER_TEST_ENDPOINT" >&2
}
