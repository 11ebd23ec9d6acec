#!/usr/bin/env bash
# User-space instructions per request, nginx vs pingora with nothing in it (bench-pingora, the
# floor under Palisade) vs Palisade (bare and full pipeline), counted by
# valgrind's callgrind: a figure the machine's other load cannot move (docs/performance.md,
# "Instructions per request"). On 127.0.0.1 only; a bounded number of requests per setup.
#
#   bash tests/bench/instructions.sh                  # 2,000 requests per setup
#   BENCH_REQUESTS=500 bash tests/bench/instructions.sh
#   BENCH_BIN=/path/to/release bash tests/bench/instructions.sh   # binaries built elsewhere
#   BENCH_CALLGRIND_DIR=/tmp/cg bash tests/bench/instructions.sh   # keep each setup's dump there
#                                                                  # (callgrind_annotate reads it)
#
# Each proxy starts under callgrind with instrumentation off; once it is ready, instrumentation
# is switched on, a warm-up of requests fills the caches, the counters are zeroed, the measured
# requests run (keep-alive, 4 connections), and the counters are dumped and divided by the
# number of requests. Needs valgrind, nginx and python3 (valgrind and nginx are installed with
# apt-get when missing and running as root).
set -euo pipefail
ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
cd "$ROOT"

REQUESTS="${BENCH_REQUESTS:-2000}"
CONNS=4
WARMUP=400
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="${BENCH_BIN:-$TARGET_DIR/release}"

die() { echo "instructions: $*" >&2; exit 1; }
log() { echo "instructions: $*" >&2; }
(( REQUESTS >= CONNS )) || die "BENCH_REQUESTS must be at least $CONNS"

missing=()
command -v valgrind >/dev/null || missing+=(valgrind)
command -v nginx >/dev/null || [[ -x /usr/sbin/nginx ]] || missing+=(nginx)
if ((${#missing[@]})); then
    [[ "$(id -u)" == 0 ]] || die "missing ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}"
    log "installing ${missing[*]}"
    # Keep the nginx package from starting its system service (port 80) while installing.
    printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; } >&2 ||
        { rm -f /usr/sbin/policy-rc.d; die "apt-get install ${missing[*]} failed"; }
    rm -f /usr/sbin/policy-rc.d
fi
NGINX=$(command -v nginx || echo /usr/sbin/nginx)

if [[ -z "${BENCH_BIN:-}" ]]; then
    log "building release binaries"
    cargo build --release -p palisade-proxy --bin palisade >&2
    cargo build --release -p palisade-e2e --bin bench-upstream --bin bench-token --bin bench-pingora >&2
fi
for b in palisade bench-upstream bench-token bench-pingora; do
    [[ -x "$BIN/$b" ]] || die "no $BIN/$b (build it, or point BENCH_BIN at the directory holding it)"
done

TMP=$(mktemp -d)
PIDS=()
cleanup() {
    for pid in "${PIDS[@]}"; do kill -- "-$pid" 2>/dev/null || kill "$pid" 2>/dev/null || true; done
    rm -rf "$TMP"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# A process in its own group, so cleanup stops valgrind and what it runs.
start() {
    local name=$1; shift
    setsid "$@" >"$TMP/$name.log" 2>&1 &
    PIDS+=($!)
    STARTED_PID=$!
}
wait_http() {
    local url=$1 pid=$2 code
    for _ in $(seq 600); do
        code=$(curl -s -o /dev/null -w '%{http_code}' "$url" || true)
        [[ "$code" != 000 ]] && return 0
        kill -0 "$pid" 2>/dev/null || return 1
        sleep 0.2
    done
    return 1
}

mapfile -t P < <("$BIN/bench-upstream" ports 5)
((${#P[@]} == 5)) || die "could not pick free loopback ports"
UP=${P[0]} NG=${P[1]} PAL=${P[2]} ADMIN=${P[3]} PG=${P[4]}
TOKEN=$("$BIN/bench-token" "$TMP")
[[ -n "$TOKEN" && -s "$TMP/jwks.json" ]] || die "bench-token wrote no token or no JWKS"

start upstream "$BIN/bench-upstream" --threads 1 --port "$UP"
wait_http "http://127.0.0.1:$UP/small" "$STARTED_PID" || die "the upstream did not start"

# The client: exactly $2 keep-alive requests over $CONNS connections; fails on any non-200.
cat >"$TMP/client.py" <<'EOF'
import http.client, sys, threading
port, total, conns, token = int(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), sys.argv[4]
headers = {"Authorization": "Bearer " + token} if token else {}
failures = []
def run(n):
    try:
        c = http.client.HTTPConnection("127.0.0.1", port, timeout=60)
        for _ in range(n):
            c.request("GET", "/small", headers=headers)
            r = c.getresponse(); r.read()
            if r.status != 200:
                failures.append(r.status)
    except Exception as e:
        failures.append(repr(e))
threads = [threading.Thread(target=run, args=(total // conns,)) for _ in range(conns)]
[t.start() for t in threads]; [t.join() for t in threads]
if failures:
    sys.exit(f"{len(failures)} of {total} requests or connections failed (first: {failures[0]})")
EOF
SENT=$(( REQUESTS / CONNS * CONNS ))

# measure NAME PORT READY_URL TOKEN CMD...: prints instructions per request.
measure() {
    local name=$1 port=$2 ready=$3 token=$4; shift 4
    local out="$TMP/cg-$name.out"
    start "$name" valgrind --tool=callgrind --instr-atstart=no --callgrind-out-file="$out" "$@"
    local pid=$STARTED_PID
    wait_http "$ready" "$pid" || { cat "$TMP/$name.log" >&2; die "$name did not start"; }
    callgrind_control -i on "$pid" >/dev/null
    python3 "$TMP/client.py" "$port" "$WARMUP" "$CONNS" "$token" || die "$name: warm-up failed"
    callgrind_control -z "$pid" >/dev/null
    python3 "$TMP/client.py" "$port" "$SENT" "$CONNS" "$token" || die "$name: measured run failed"
    callgrind_control -d "$pid" >/dev/null
    local dump=""
    for _ in $(seq 100); do
        dump=$(ls "$out".* 2>/dev/null | head -n1 || true)
        [[ -n "$dump" && -s "$dump" ]] && break
        sleep 0.1
    done
    [[ -n "$dump" ]] || die "$name: callgrind wrote no dump"
    sleep 0.5
    if [[ -n "${BENCH_CALLGRIND_DIR:-}" ]]; then
        mkdir -p "$BENCH_CALLGRIND_DIR" && cp "$dump" "$BENCH_CALLGRIND_DIR/callgrind.$name.out"
    fi
    kill -- "-$pid" 2>/dev/null || true
    local total
    total=$(callgrind_annotate "$dump" 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",", "", $1); print $1; exit}')
    [[ -n "$total" ]] || die "$name: no total in $dump"
    echo $(( total / SENT ))
}

mkdir -p "$TMP/nginx/logs"
cat >"$TMP/nginx/nginx.conf" <<EOF
worker_processes 1;
daemon off;
master_process off;
error_log $TMP/nginx/logs/error.log warn;
pid $TMP/nginx/nginx.pid;
events { worker_connections 1024; }
http {
  access_log off;
  upstream bench { server 127.0.0.1:$UP; keepalive 64; }
  server {
    listen 127.0.0.1:$NG;
    location / { proxy_pass http://bench; proxy_http_version 1.1; proxy_set_header Connection ""; }
  }
}
EOF

palisade_config() {
    local pipeline=$1
    cat <<EOF
listeners:
  - {name: bench, address: "127.0.0.1:$PAL"}
admin: {address: "127.0.0.1:$ADMIN"}
server: {threads: 1, drain_timeout: 1s, log_format: json, log_level: warn, max_connections_per_ip: 0}
upstreams:
  bench: {address: "127.0.0.1:$UP", connect_timeout: 2s}
routes:
  - name: small
    match: {path_prefix: /small, methods: [GET]}
    upstream: bench
    auth: $([[ $pipeline == full ]] && echo required || echo optional)
EOF
    [[ $pipeline == full ]] || return 0
    cat <<EOF
authentication:
  issuers:
    - {issuer: "https://bench.local", audiences: [palisade], algorithms: [ES256], keys: {jwks_file: "$TMP/jwks.json"}}
authorization:
  policy_sets:
    - {name: main, path: "$ROOT/policies", mode: enforce}
rate_limits:
  limits:
    - {name: bench, scope: principal, requests: 1000000000, per: 1m}
guardrails: {default_rule_set: default}
audit:
  file: {path: "$TMP/audit/audit.jsonl", fsync: batch}
EOF
}
palisade_config bare >"$TMP/bare.yaml"
palisade_config full >"$TMP/full.yaml"
for c in bare full; do
    "$BIN/palisade" validate -c "$TMP/$c.yaml" >/dev/null || die "palisade rejected its $c config"
done

log "nginx ($SENT requests under callgrind)"
NGINX_I=$(measure nginx "$NG" "http://127.0.0.1:$NG/small" "" "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx/nginx.conf")
log "pingora with nothing in it (bench-pingora)"
PINGORA_I=$(measure pingora "$PG" "http://127.0.0.1:$PG/small" "" "$BIN/bench-pingora" --port "$PG" --upstream "127.0.0.1:$UP")
log "palisade, bare"
BARE_I=$(measure bare "$PAL" "http://127.0.0.1:$PAL/small" "" "$BIN/palisade" run -c "$TMP/bare.yaml")
log "palisade, full pipeline"
FULL_I=$(measure full "$PAL" "http://127.0.0.1:$PAL/small" "$TOKEN" "$BIN/palisade" run -c "$TMP/full.yaml")

ratio() { awk -v a="$1" -v b="$2" 'BEGIN { printf "%.1f", a / b }'; }
printf '\n| setup | instructions / request | ÷ nginx |\n|---|---|---|\n'
printf '| nginx (plain proxy) | %s | 1 |\n' "$NGINX_I"
printf '| pingora, nothing in it | %s | %s |\n' "$PINGORA_I" "$(ratio "$PINGORA_I" "$NGINX_I")"
printf '| palisade, bare | %s | %s |\n' "$BARE_I" "$(ratio "$BARE_I" "$NGINX_I")"
printf '| palisade, full pipeline | %s | %s |\n' "$FULL_I" "$(ratio "$FULL_I" "$NGINX_I")"
printf '\n(%s requests per setup, user space only; SHA-256 runs without the CPU'"'"'s SHA extensions under valgrind.)\n' "$SENT"
