#!/usr/bin/env bash
# The deployment tests: the container image, the Kubernetes sidecar manifests and the compose
# stack, each run for real with podman (docs/deployment.md describes what they check).
#
#   bash tests/deploy/run.sh        (as root; tests/run.sh installs podman & co. and calls it)
#
# Needs: podman with runc (settings: tests/deploy/containers.conf), debootstrap, kubectl (kustomize v5),
# nsenter, curl, and a Python with tests/deploy/requirements.txt ($PALISADE_DEPLOY_PYTHON, or the
# venv tests/run.sh makes). Nothing is pulled from a registry: the runtime base image is made
# with debootstrap from the Debian mirror apt already uses, and the image takes the binaries
# cargo built (stripped of debug info).
set -euo pipefail
cd "$(dirname "$0")/../.."
ROOT=$PWD

PY=${PALISADE_DEPLOY_PYTHON:-$ROOT/target/peers-venv/bin/python}
export CONTAINERS_CONF=${CONTAINERS_CONF:-$ROOT/tests/deploy/containers.conf}
PROFILE_DIR=${PALISADE_BIN_DIR:-$ROOT/target/debug}
RUN_ID=t$$
WORK=$(mktemp -d "${TMPDIR:-/tmp}/palisade-deploy.XXXXXX")
IMAGE=localhost/palisade:$RUN_ID
BASE_IMAGE=localhost/palisade-base:bookworm-minbase
PLAYED=()
PODS=()

step() { printf '\n--> %s\n' "$*"; }
pass() { printf '    ok: %s\n' "$*"; }
fail() {
  printf '    FAIL: %s\n' "$*" >&2
  exit 1
}

# The names of this run's objects (pods, containers and volumes all start with "$RUN_ID-" or,
# from compose, "${RUN_ID}_"), from the listing "$@" prints.
ours() { "$@" | grep -E "^${RUN_ID}[-_]" || true; }

cleanup() {
  local rc=$?
  if ((rc != 0)); then
    echo "--- container logs (failure) ---" >&2
    for c in $(ours podman ps -a --format '{{.Names}}'); do
      echo "=== $c" >&2
      podman logs --tail 30 "$c" >&2 2>&1 || true
    done
  fi
  # Containers first, with their anonymous volumes (the image's VOLUMEs a container doesn't mount).
  for _ in 1 2; do # twice: a container sharing another's namespace goes first
    for c in $(ours podman ps -a --format '{{.Names}}'); do
      podman rm -fv -t 0 "$c" >/dev/null 2>&1 || true
    done
  done
  for f in "${PLAYED[@]}"; do podman kube down "$f" >/dev/null 2>&1 || true; done
  for p in "${PODS[@]}"; do podman pod rm -f "$p" >/dev/null 2>&1 || true; done
  for v in $(ours podman volume ls --format '{{.Name}}'); do
    podman volume rm -f "$v" >/dev/null 2>&1 || true
  done
  podman rmi -f "$IMAGE" >/dev/null 2>&1 || true
  rm -rf "$WORK"
  exit "$rc"
}
trap cleanup EXIT
# A CI timeout or Ctrl-C still cleans up (the EXIT trap runs on exit, not on a fatal signal).
trap 'exit 143' TERM
trap 'exit 130' INT

for tool in podman debootstrap kubectl nsenter curl; do
  command -v "$tool" >/dev/null || fail "$tool is not installed (tests/run.sh installs it)"
done
[ -x "$PY" ] || fail "no Python at $PY (set PALISADE_DEPLOY_PYTHON or run tests/run.sh)"
"$PY" -c 'import yaml, kubernetes_validate' 2>/dev/null ||
  fail "$PY lacks tests/deploy/requirements.txt"
[ "$(id -u)" = 0 ] || fail "the container tests run podman as root"
for b in palisade palisade-orchestrator; do
  [ -x "$PROFILE_DIR/$b" ] || fail "$PROFILE_DIR/$b is missing: cargo test --workspace --no-run (or cargo build -p palisade-proxy -p palisade-orchestrator)"
done

# Waits until "$@" succeeds (at most $WAIT_S seconds, default 30).
wait_for() {
  local deadline=$((SECONDS + ${WAIT_S:-30}))
  until "$@" >/dev/null 2>&1; do
    ((SECONDS < deadline)) || return 1
    sleep 0.5
  done
}

# The network namespace and IP of a pod (its infra container).
pod_pid() { podman inspect "$(podman pod inspect "$1" --format '{{.InfraContainerID}}')" --format '{{.State.Pid}}'; }
pod_ip() {
  podman inspect "$(podman pod inspect "$1" --format '{{.InfraContainerID}}')" \
    --format '{{range .NetworkSettings.Networks}}{{.IPAddress}}{{end}}'
}
# Runs a command inside a pod's network namespace (as an app next to Palisade would).
in_pod() {
  local pid=$1
  shift
  nsenter -t "$pid" -n "$@"
}

run_input() { # THREAD WORDS: a RunAgentInput whose answer streams WORDS words
  local words
  words=$(printf 'word %.0s' $(seq "$2"))
  printf '{"threadId":"%s","runId":"r-%s","messages":[{"id":"m-%s","role":"user","content":"%s"}],"tools":[],"context":[],"state":{},"forwardedProps":{}}' \
    "$1" "$1" "$1" "${words% }"
}
# POSTs a run to http://$1/agent with token $2; prints the SSE body. Extra args go to curl.
stream_run() {
  local addr=$1 token=$2 thread=$3 words=$4
  shift 4
  curl -sS -N -m 60 -X POST "http://$addr/agent" -H "authorization: Bearer $token" \
    -H 'content-type: application/json' -H 'accept: text/event-stream' \
    -d "$(run_input "$thread" "$words")" "$@"
}
event_types() { { grep -o '"type":"[A-Z_]*"' || true; } | sed 's/"type":"\(.*\)"/\1/' | sort | uniq -c | tr -s ' ' | tr '\n' ' '; }

# --- the runtime base image, made offline ------------------------------------------------------
step "base image ($BASE_IMAGE)"
if ! podman image exists "$BASE_IMAGE"; then
  # The mirror apt already uses (deb822 sources or a classic sources.list), else Debian's.
  mirror=$(cat /etc/apt/sources.list.d/*.sources 2>/dev/null | sed -n 's/^URIs: *\(http[^ ]*\/debian\)$/\1/p' | head -1 || true)
  [ -n "$mirror" ] || mirror=$(awk '$1 == "deb" && $3 == "bookworm" {print $2; exit}' /etc/apt/sources.list 2>/dev/null || true)
  mirror=${mirror:-http://deb.debian.org/debian}
  debootstrap --variant=minbase bookworm "$WORK/rootfs" "$mirror" >"$WORK/debootstrap.log" 2>&1 ||
    { tail -20 "$WORK/debootstrap.log"; fail "debootstrap from $mirror"; }
  rm -rf "$WORK"/rootfs/usr/share/{doc,man,info,locale} "$WORK"/rootfs/var/lib/apt/lists/* \
    "$WORK"/rootfs/var/cache/apt/*
  tar -C "$WORK/rootfs" -c . | podman import -q - "$BASE_IMAGE" >/dev/null
  rm -rf "$WORK/rootfs"
fi
pass "debootstrap minbase bookworm as $BASE_IMAGE"

# --- the image -----------------------------------------------------------------------------
step "image ($IMAGE, target prebuilt)"
ctx=$WORK/context
# The documented offline build: binaries in deploy/docker/bin of a context holding what the
# Dockerfile copies (the repository's own context minus target/ would do; this one is smaller).
mkdir -p "$ctx/deploy"
cp -r deploy/docker "$ctx/deploy/"
cp -r policies "$ctx/"
mkdir -p "$ctx/deploy/docker/bin"
for b in palisade palisade-orchestrator; do
  objcopy --strip-debug "$PROFILE_DIR/$b" "$ctx/deploy/docker/bin/$b"
done
podman build -q --format docker -f "$ctx/deploy/docker/Dockerfile" --target prebuilt \
  --build-arg RUNTIME_IMAGE="$BASE_IMAGE" -t "$IMAGE" "$ctx" >/dev/null
user=$(podman image inspect "$IMAGE" --format '{{.Config.User}}')
[ "$user" = 65532:65532 ] || fail "image USER is '$user', want 65532:65532"
[ "$(podman image inspect "$IMAGE" --format '{{.Config.StopSignal}}')" = SIGTERM ] ||
  fail "STOPSIGNAL is not SIGTERM"
healthcheck=$(podman image inspect "$IMAGE" --format '{{json .Config.Healthcheck.Test}}')
[ "$healthcheck" = '["CMD","/usr/local/bin/palisade","healthcheck"]' ] ||
  fail "HEALTHCHECK is $healthcheck, want palisade healthcheck"
pass "USER 65532:65532, STOPSIGNAL SIGTERM, HEALTHCHECK palisade healthcheck"

# The secrets the image expects, generated here (nothing in the repository).
secrets=$WORK/secrets
mkdir -p "$secrets"
"$PROFILE_DIR/palisade" assertion-key generate --out "$secrets/assertion-key.pem" >/dev/null
"$PROFILE_DIR/palisade" audit keygen "$secrets/audit-checkpoint.key" >/dev/null
mv "$secrets/audit-checkpoint.key.pub" "$WORK/audit-checkpoint.pub" # kept apart from the trail
head -c 32 /dev/urandom | base64 >"$secrets/admin-token"
new_key() { # OWNER ROLE -> prints the token
  "$PROFILE_DIR/palisade" keys create -f "$secrets/keys.yaml" --owner "$1" --role "$2" 2>/dev/null | tail -1
}
USER_TOKEN=$(new_key alice user)
VIEWER_TOKEN=$(new_key victor viewer)
# Readable by the container's user only, as docs/deployment.md says to mount them.
chown 65532:65532 "$secrets"/*
chmod 0400 "$secrets"/*

# --- the image as a two-container pod: run, probe, stream, drain -----------------------------
step "image: sidecar pod (podman pod, read-only root filesystem)"
pod=$RUN_ID-image
PODS+=("$pod")
podman pod create --name "$pod" >/dev/null
# --read-only-tmpfs=false: only what the manifests mount is writable (podman would otherwise
# add tmpfs on /run, /var/tmp and /tmp, hiding a write Kubernetes would refuse).
podman run -d -q --pod "$pod" --name "$pod-agent" --read-only --read-only-tmpfs=false --tmpfs /tmp \
  -v "$RUN_ID-agent-state:/var/lib/palisade/orchestrator" \
  --entrypoint /usr/local/bin/palisade-orchestrator "$IMAGE" -c /etc/palisade/orchestrator.yaml >/dev/null
# (Without systemd, podman cannot schedule the HEALTHCHECK and says so on stderr; the test runs
# the check itself with `podman healthcheck run`.)
podman run -d -q --pod "$pod" --name "$pod-palisade" --read-only --read-only-tmpfs=false --tmpfs /tmp \
  -v "$secrets:/etc/palisade/secrets:ro" -v "$RUN_ID-audit:/var/lib/palisade/audit" \
  "$IMAGE" >/dev/null 2>"$WORK/podman-run.log"
WAIT_S=30 wait_for podman healthcheck run "$pod-palisade" || fail "HEALTHCHECK never passed"
pass "HEALTHCHECK (palisade healthcheck → /readyz) passes"
for c in "$pod-palisade" "$pod-agent"; do
  uid=$(podman top "$c" huser | tail -1 | tr -d ' ')
  [ "$uid" = 65532 ] || fail "$c runs as host uid '$uid', not 65532"
done
pass "both containers run as uid 65532"
ip=$(pod_ip "$pod")
pid=$(pod_pid "$pod")
[ "$(curl -sS -m 5 "http://$ip:9901/readyz" | head -n 1)" = ready ] || fail "/readyz is not 'ready'"
pass "/readyz: ready"
out=$(stream_run "$ip:8080" "$USER_TOKEN" image-1 5)
types=$(event_types <<<"$out")
grep -q RUN_FINISHED <<<"$types" || fail "no RUN_FINISHED in a streamed run: $types"
pass "streamed run: $types"
code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://$ip:8081/" || true)
[ "$code" = 000 ] || fail "the agent answered on the pod IP ($code); it must listen on loopback only"
pass "the agent is not reachable from outside the pod"

# Drain: a run that streams for ~3 s is mid-stream when SIGTERM arrives; it must finish.
stream_run "$ip:8080" "$USER_TOKEN" image-drain 75 >"$WORK/drain.sse" &
streamer=$!
WAIT_S=10 wait_for grep -q TEXT_MESSAGE_CONTENT "$WORK/drain.sse" || fail "the drain run never started"
t0=$SECONDS
podman stop -t 40 "$pod-palisade" >/dev/null 2>>"$WORK/podman-run.log"
wait "$streamer" || fail "the stream failed during the drain (curl exit $?)"
types=$(event_types <"$WORK/drain.sse")
grep -q RUN_FINISHED <<<"$types" || fail "the run did not finish during the drain: $types"
! grep -q RUN_ERROR <<<"$types" || fail "RUN_ERROR during the drain: $types"
[ "$(podman inspect "$pod-palisade" --format '{{.State.ExitCode}}')" = 0 ] ||
  fail "palisade exited non-zero after SIGTERM"
((SECONDS - t0 < 25)) || fail "stop took $((SECONDS - t0)) s: the drain waited past the stream's end"
logs=$(podman logs "$pod-palisade" 2>&1)
grep -q '"shutdown: drained"' <<<"$logs" || fail "no 'shutdown: drained' log line"
pass "SIGTERM mid-stream: the run finished ($types), exit 0 after $((SECONDS - t0)) s"
# The audit volume holds the trail, its checkpoints signed with the Secret's key.
audit_dir=$(podman volume inspect "$RUN_ID-audit" --format '{{.Mountpoint}}')
verify=$("$PROFILE_DIR/palisade" audit verify "$audit_dir" --public-key "$WORK/audit-checkpoint.pub" 2>&1) ||
  fail "palisade audit verify of the audit volume: $verify"
pass "audit volume: $(tail -1 <<<"$verify")"
for c in "$pod-agent" "$pod-palisade"; do podman rm -fv -t 0 "$c" >/dev/null 2>>"$WORK/podman-run.log"; done
podman pod rm -f "$pod" >/dev/null 2>>"$WORK/podman-run.log"

# --- Kubernetes: render, validate, play ------------------------------------------------------
step "kubernetes: render and validate (base, overlays/redis)"
render() { kubectl kustomize --load-restrictor LoadRestrictionsNone "$1"; }
for k in base overlays/redis; do
  render "deploy/kubernetes/$k" >"$WORK/k8s-${k//\//-}.yaml" || fail "kustomize $k"
  for v in 1.30.0 1.37.0; do
    "$PY" -m kubernetes_validate --strict --quiet -k "$v" "$WORK/k8s-${k//\//-}.yaml" ||
      fail "$k does not validate against Kubernetes $v"
  done
  pass "$k: $(grep -c '^kind:' "$WORK/k8s-${k//\//-}.yaml") objects valid (strict) on Kubernetes 1.30 and 1.37"
done
grep -q 'name: palisade-redis' "$WORK/k8s-overlays-redis.yaml" || fail "the redis overlay has no Redis"
grep -q 'PALISADE_RATE_LIMITS__REDIS__URL' "$WORK/k8s-overlays-redis.yaml" ||
  fail "the redis overlay does not point the limits at Redis"

step "kubernetes: the sidecar Deployment under podman kube play (2 replicas)"
overlay=$WORK/overlay
mkdir -p "$overlay"
cp "$secrets"/* "$overlay/"
base_rel=$("$PY" -c 'import os,sys; print(os.path.relpath(sys.argv[1], sys.argv[2]))' "$ROOT/deploy/kubernetes/base" "$overlay")
cat >"$overlay/kustomization.yaml" <<EOF
apiVersion: kustomize.config.k8s.io/v1beta1
kind: Kustomization
namePrefix: $RUN_ID-
resources:
  - $base_rel
secretGenerator:
  - name: palisade-secrets
    files: [assertion-key.pem, keys.yaml, audit-checkpoint.key, admin-token]
images:
  - name: ghcr.io/palisade-dev/palisade
    newName: localhost/palisade
    newTag: $RUN_ID
patches:
  # An operator's override: 5 requests a minute, so the test sees a 429 quickly.
  - target: {kind: Deployment}
    patch: |-
      - op: add
        path: /spec/template/spec/containers/1/env
        value:
          - {name: PALISADE_RATE_LIMITS__LIMITS__0__REQUESTS, value: "5"}
EOF
render "$overlay" >"$WORK/play-rendered.yaml" || fail "kustomize of the test overlay"
"$PY" tests/deploy/kube_play.py "$WORK/play-rendered.yaml" "$WORK/play.yaml" 2
PLAYED+=("$WORK/play.yaml")
podman kube play --start=false "$WORK/play.yaml" >/dev/null
r0=$RUN_ID-palisade-r0-pod-0
r1=$RUN_ID-palisade-r1-pod-0
# Kubelet's layout of a ConfigMap volume: files are symlinks into ..data, a symlink to a
# timestamped directory that an update replaces atomically. Podman writes plain files; lay r0's
# policies out as kubelet does, so the reload below goes through the same symlink swap.
pol=$(podman volume inspect "$RUN_ID-palisade-policies" --format '{{.Mountpoint}}')
(
  cd "$pol"
  mkdir ..ts1
  for f in *; do mv "$f" ..ts1/; done
  ln -s ..ts1 ..data
  for f in ..data/*; do ln -s "$f" "$(basename "$f")"; done
)
podman pod start "$r0" "$r1" >/dev/null
for r in "$r0" "$r1"; do
  WAIT_S=40 wait_for podman exec "$r-palisade" /usr/local/bin/palisade healthcheck ||
    fail "$r never became ready (exec probe palisade healthcheck)"
done
pass "both replicas ready (the readiness probe's command)"
ip0=$(pod_ip "$r0")
ip1=$(pod_ip "$r1")
pid0=$(pod_pid "$r0")
pid1=$(pod_pid "$r1")

types=$(stream_run "$ip0:8080" "$USER_TOKEN" kube-1 5 | event_types)
grep -q RUN_FINISHED <<<"$types" || fail "no RUN_FINISHED through replica 0: $types"
pass "streamed AG-UI run through Palisade: $types"

body=$(curl -sS -m 10 -X POST "http://$ip0:8080/agent" -H "authorization: Bearer $VIEWER_TOKEN" \
  -H 'content-type: application/json' -d "$(run_input kube-denied 1)" -w '\n%{http_code}')
[ "$(tail -1 <<<"$body")" = 403 ] || fail "a viewer's run got $(tail -1 <<<"$body"), want 403"
grep -q '"code":"FORBIDDEN"' <<<"$body" || fail "the 403 lacks the documented error body: $body"
pass "a viewer's run: 403 FORBIDDEN (no policy permits run_agent)"

code=$(curl -s -o /dev/null -w '%{http_code}' -m 5 "http://$ip0:8081/" || true)
[ "$code" = 000 ] || fail "the agent answered on the pod IP ($code)"
pass "the agent container is unreachable from outside the pod"

# 429: replica 1 (its own in-process counters; the redis overlay shares them).
for i in $(seq 1 8); do
  code=$(curl -s -o "$WORK/limited.json" -w '%{http_code}' -m 5 "http://$ip1:8080/runs/none" \
    -H "authorization: Bearer $USER_TOKEN")
  [ "$code" = 429 ] && break
done
[ "$code" = 429 ] || fail "no 429 after 8 requests with a limit of 5 a minute (last: $code)"
grep -q '"code":"RATE_LIMITED"' "$WORK/limited.json" || fail "the 429 lacks RATE_LIMITED: $(cat "$WORK/limited.json")"
pass "request $i in a minute: 429 RATE_LIMITED (limit 5, set by an env override)"

# The shared assertion key: both replicas publish the same JWKS, and replica 1's agent accepts
# an assertion replica 0 signed.
jwks0=$(in_pod "$pid0" curl -sS -m 5 http://127.0.0.1:9901/.well-known/jwks.json)
jwks1=$(in_pod "$pid1" curl -sS -m 5 http://127.0.0.1:9901/.well-known/jwks.json)
[ "$jwks0" = "$jwks1" ] || fail "the replicas publish different JWKS: $jwks0 vs $jwks1"
kid=$("$PROFILE_DIR/palisade" assertion-key jwks "$secrets/assertion-key.pem" | "$PY" -c 'import json,sys; print(json.load(sys.stdin)["keys"][0]["kid"])')
grep -q "\"kid\":\"$kid\"" <<<"$jwks0" || fail "the JWKS does not carry the Secret's key ($kid)"
pass "both replicas publish the Secret's key (kid $kid)"
podman stop -t 5 "$r0-agent" >/dev/null
in_pod "$pid0" "$PY" tests/deploy/capture.py 8081 20 >"$WORK/captured" &
capturer=$!
WAIT_S=10 wait_for grep -q listening "$WORK/captured" || fail "the capture listener did not start"
curl -sS -m 10 -o /dev/null "http://$ip0:8080/runs/captured" -H "authorization: Bearer $USER_TOKEN" ||
  fail "the request to capture an assertion failed"
wait "$capturer" || fail "no request reached the capture listener"
assertion=$(sed -n 2p "$WORK/captured")
[ -n "$assertion" ] || fail "replica 0 forwarded no X-Palisade-Assertion"
direct() { # ASSERTION: POST a run straight to replica 1's agent, from inside its pod
  in_pod "$pid1" curl -sS -N -m 20 -X POST http://127.0.0.1:8081/agent \
    -H "x-palisade-assertion: $1" -H 'content-type: application/json' \
    -d "$(run_input "$RUN_ID-cross" 3)" -w '\n%{http_code}'
}
out=$(direct "$assertion")
[ "$(tail -1 <<<"$out")" = 200 ] && grep -q RUN_FINISHED <<<"$out" ||
  fail "replica 1's agent refused replica 0's assertion: $(tail -3 <<<"$out")"
# One signature character well inside it (the last one carries padding bits a decoder may drop).
c=${assertion: -10:1}
tampered="${assertion:0:${#assertion}-10}$([ "$c" = A ] && echo B || echo A)${assertion: -9}"
[ "$tampered" != "$assertion" ] && [ ${#tampered} = ${#assertion} ] || fail "tampering went wrong"
[ "$(direct "$tampered" | tail -1)" = 401 ] || fail "replica 1's agent accepted a tampered assertion"
pass "replica 1's agent verifies an assertion replica 0 signed (and refuses it tampered)"

# A ConfigMap update: kubelet writes a new timestamped directory and swaps ..data (the policies
# volume is the one ConfigMap both replicas mount). Palisade reloads the policies with no
# restart: the viewer may now run agents.
(
  cd "$pol"
  mkdir ..ts2
  cp -L ..data/* ..ts2/
  cat >..ts2/deploy-test.cedar <<'EOF'
@id("deploy-test-viewer-runs")
permit (principal in Role::"viewer", action == Action::"run_agent", resource);
EOF
  ln -s ..ts2 ..data_tmp
  mv -T ..data_tmp ..data
  ln -s ..data/deploy-test.cedar deploy-test.cedar
  rm -rf ..ts1
)
podman start "$r0-agent" >/dev/null
# Every attempt counts against the viewer's 5 requests a minute: try every 3 s, at most 4 times.
reloaded=
for attempt in 1 2 3 4; do
  sleep 3
  if [[ $(stream_run "$ip0:8080" "$VIEWER_TOKEN" "$RUN_ID-viewer-$attempt" 1) == *RUN_FINISHED* ]]; then
    reloaded=$attempt
    break
  fi
done
[ -n "$reloaded" ] || fail "the policy ConfigMap update was not picked up within 12 s"
pass "a policy ConfigMap update (symlink swap) is live without a restart: the viewer's run now streams"

# --- compose --------------------------------------------------------------------------------
PALISADE_TEST_TOKEN=$USER_TOKEN bash tests/deploy/compose.sh "$IMAGE" "$secrets" "$RUN_ID" "$WORK"

step "deployment tests passed"
