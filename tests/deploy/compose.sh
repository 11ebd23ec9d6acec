#!/usr/bin/env bash
# The compose stack (deploy/compose) under podman-compose; called by tests/deploy/run.sh with
# the image it built: compose.sh IMAGE SECRETS_DIR RUN_ID WORK_DIR.
#
# Palisade, the agent, Redis and Prometheus run for real. Their images come from the offline
# Debian base (Redis and Prometheus are Debian packages); Grafana and the OpenTelemetry collector
# have no Debian package, so their provisioning and config files are checked, not run.
set -euo pipefail
IMAGE=$1 SECRETS=$2 RUN_ID=$3 WORK=$4
cd "$(dirname "$0")/../.."
PY=${PALISADE_DEPLOY_PYTHON:-$PWD/target/peers-venv/bin/python}
BASE_IMAGE=localhost/palisade-base:bookworm-minbase

step() { printf '\n--> %s\n' "$*"; }
pass() { printf '    ok: %s\n' "$*"; }
fail() {
  printf '    FAIL: %s\n' "$*" >&2
  exit 1
}
COMPOSE=$(dirname "$PY")/podman-compose
[ -x "$COMPOSE" ] || fail "no $COMPOSE (tests/deploy/requirements.txt)"

step "compose: images for Redis and Prometheus from Debian packages"
deps=localhost/palisade-compose-deps:bookworm
if ! podman image exists "$deps"; then
  printf 'FROM %s\nRUN apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server prometheus >/dev/null && rm -rf /var/lib/apt/lists/*\n' \
    "$BASE_IMAGE" | podman build -q -t "$deps" -f - "$WORK" >/dev/null
fi
printf 'FROM %s\nWORKDIR /prometheus\nENTRYPOINT ["/usr/bin/prometheus"]\n' "$deps" |
  podman build -q -t "localhost/prometheus:$RUN_ID" -f - "$WORK" >/dev/null
pass "redis-server and prometheus (Debian bookworm) in $deps"

free_port() { "$PY" -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'; }
export PALISADE_IMAGE=$IMAGE REDIS_IMAGE=$deps PROMETHEUS_IMAGE=localhost/prometheus:$RUN_ID
PALISADE_PORT=$(free_port)
PROMETHEUS_PORT=$(free_port)
export PALISADE_PORT PROMETHEUS_PORT
compose_dir=$WORK/compose
# The stack as committed, with the test's generated secrets beside it.
mkdir -p "$compose_dir/deploy" "$compose_dir/deploy/compose/secrets"
cp -r deploy/compose deploy/kubernetes deploy/prometheus deploy/grafana "$compose_dir/deploy/"
cp -p "$SECRETS"/* "$compose_dir/deploy/compose/secrets/"
compose=("$COMPOSE" -p "$RUN_ID" -f "$compose_dir/deploy/compose/compose.yaml")
cleanup() {
  local rc=$? c
  for c in $(podman ps -a --format '{{.Names}}' | grep "^${RUN_ID}_" || true); do
    if ((rc != 0)); then
      echo "=== $c" >&2
      podman logs --tail 30 "$c" >&2 2>&1 || true
    fi
  done
  # With their anonymous volumes; twice, as the agent (sharing Palisade's network namespace)
  # must go before Palisade.
  for _ in 1 2; do
    for c in $(podman ps -a --format '{{.Names}}' | grep "^${RUN_ID}_" || true); do
      podman rm -fv -t 0 "$c" >/dev/null 2>&1 || true
    done
  done
  "${compose[@]}" down -v >/dev/null 2>&1 || true
  podman rmi -f "localhost/prometheus:$RUN_ID" >/dev/null 2>&1 || true
  exit "$rc"
}
trap cleanup EXIT

step "compose: up (palisade, agent, palisade-redis, prometheus)"
"${compose[@]}" up -d palisade-redis palisade agent prometheus >"$WORK/compose-up.log" 2>&1 ||
  { tail -20 "$WORK/compose-up.log"; fail "podman-compose up"; }
for svc in palisade-redis palisade agent prometheus; do
  state=$(podman inspect "${RUN_ID}_${svc}_1" --format '{{.State.Status}}' 2>/dev/null || echo missing)
  [ "$state" = running ] || { tail -20 "$WORK/compose-up.log"; fail "service $svc is $state"; }
done
ready() { podman exec "${RUN_ID}_palisade_1" /usr/local/bin/palisade healthcheck; }
deadline=$((SECONDS + 40))
until ready >/dev/null 2>&1; do
  ((SECONDS < deadline)) || fail "palisade never became ready"
  sleep 0.5
done
pass "palisade ready"

token=${PALISADE_TEST_TOKEN:?the user token run.sh created}
out=$(curl -sS -N -m 30 -X POST "http://127.0.0.1:$PALISADE_PORT/agent" -H "authorization: Bearer $token" \
  -H 'content-type: application/json' \
  -d '{"threadId":"compose-1","runId":"r1","messages":[{"id":"m1","role":"user","content":"hello compose"}],"tools":[],"context":[],"state":{},"forwardedProps":{}}')
grep -q '"type":"RUN_FINISHED"' <<<"$out" || fail "no RUN_FINISHED through the compose stack: $(head -c 300 <<<"$out")"
pass "streamed run through Palisade (agent in Palisade's network namespace)"

# Limits live in Redis: every request ran the limiter's script there. (Its keys expire as soon as
# a counter is back to full, so counting keys would race; the script's call count does not.)
calls=$(podman exec "${RUN_ID}_palisade-redis_1" redis-cli info commandstats |
  sed -n 's/^cmdstat_evalsha:calls=\([0-9]*\),.*/\1/p')
((${calls:-0} > 0)) || fail "the limiter never ran its script in Redis: the limits are not shared"
pass "rate limits counted in Redis ($calls script call(s))"

# Prometheus scrapes Palisade and has loaded the alert rules.
prom=http://127.0.0.1:$PROMETHEUS_PORT
deadline=$((SECONDS + 60))
until [[ $(curl -s "$prom/api/v1/targets") == *'"health":"up"'* ]]; do
  ((SECONDS < deadline)) || fail "Prometheus never scraped Palisade: $(curl -s "$prom/api/v1/targets" | head -c 400)"
  sleep 1
done
rules=$(curl -s "$prom/api/v1/rules" | "$PY" -c 'import json,sys; print(sum(len(g["rules"]) for g in json.load(sys.stdin)["data"]["groups"]))')
((rules > 0)) || fail "Prometheus loaded no alert rules"
series=$(curl -s "$prom/api/v1/query" --data-urlencode 'query=palisade_requests_total' | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["result"]))')
deadline=$((SECONDS + 30))
while ((series == 0)); do
  ((SECONDS < deadline)) || fail "palisade_requests_total never reached Prometheus"
  sleep 1
  series=$(curl -s "$prom/api/v1/query" --data-urlencode 'query=palisade_requests_total' | "$PY" -c 'import json,sys; print(len(json.load(sys.stdin)["data"]["result"]))')
done
pass "Prometheus: target up, $rules alert rules loaded, palisade_requests_total has $series series"

step "compose: Grafana and collector files (no Debian package to run them)"
"$PY" - "$compose_dir/deploy" <<'PYEOF'
import json, sys, yaml, os
d = sys.argv[1]
compose = yaml.safe_load(open(f"{d}/compose/compose.yaml"))
services = compose["services"]
assert {"palisade", "agent", "palisade-redis", "prometheus", "grafana", "otel-collector"} <= set(services)
# Every bind-mounted file exists (a typo here would only show at `up`).
for name, svc in services.items():
    for v in svc.get("volumes", []):
        src = v.split(":")[0]
        if src.startswith("."):
            path = os.path.normpath(os.path.join(d, "compose", src))
            assert os.path.exists(path), f"{name}: {src} does not exist"
col = yaml.safe_load(open(f"{d}/compose/otel-collector.yaml"))
for pipe in col["service"]["pipelines"].values():
    for kind in ("receivers", "processors", "exporters"):
        for item in pipe.get(kind, []):
            assert item in col[kind], f"collector pipeline uses undefined {kind[:-1]} {item}"
ds = yaml.safe_load(open(f"{d}/compose/grafana/datasources.yaml"))
assert ds["datasources"][0]["url"] == "http://prometheus:9090"
prov = yaml.safe_load(open(f"{d}/compose/grafana/dashboards.yaml"))
mount = [v for v in services["grafana"]["volumes"] if "palisade.json" in v][0]
assert mount.split(":")[1].startswith(prov["providers"][0]["options"]["path"]), "dashboard not where the provider looks"
json.load(open(f"{d}/grafana/palisade.json"))
env = services["palisade"]["environment"]
assert env["PALISADE_TRACING__ENDPOINT"].startswith("http://otel-collector:"), "traces not sent to the collector"
PYEOF
pass "compose file, collector pipeline, Grafana datasource and dashboard provisioning consistent"
