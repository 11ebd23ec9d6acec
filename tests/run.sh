#!/usr/bin/env bash
# The whole test suite, as CI runs it on a fresh machine: installs what it needs, then runs
# formatting and lint checks, every unit/property/end-to-end test, the deployment tests (image,
# Kubernetes manifests, compose stack, with podman), doc tests and a fuzz smoke run.
# Usage: bash tests/run.sh            (from anywhere inside the repository)
set -euo pipefail
cd "$(dirname "$0")/.."

step() { printf '\n==> %s\n' "$*"; }

# --- system packages -------------------------------------------------------------------------
# cmake: pingora-core builds libz-ng-sys. curl: the `palisade dev` test runs the printed command.
# node + npm: the OIDC tests run a real OpenID provider (tests/oidc, needs Node.js >= 20.18).
missing=()
command -v cmake >/dev/null || missing+=(cmake)
command -v curl >/dev/null || missing+=(curl)
command -v node >/dev/null || missing+=(nodejs)
command -v npm >/dev/null || missing+=(npm)
# redis-server (+ redis-cli): the rate-limit scenarios run a real Redis and a 3-node Cluster.
command -v redis-server >/dev/null || missing+=(redis-server)
# postgresql: the orchestrator's session-store tests start a real PostgreSQL (initdb + pg_ctl from
# /usr/lib/postgresql/<version>/bin, run as the `postgres` user when we are root).
compgen -G '/usr/lib/postgresql/*/bin/pg_ctl' >/dev/null || missing+=(postgresql)
# python3 + venv: the peer tests run real MCP, A2A and pydantic-ai servers (PyPI packages) in a venv.
command -v python3 >/dev/null || missing+=(python3)
python3 -c 'import venv, ensurepip' 2>/dev/null || missing+=(python3-venv)
# nginx: the nginx-front peer test and example run the real nginx in front of Palisade.
command -v nginx >/dev/null || [ -x /usr/sbin/nginx ] || missing+=(nginx)
# iproute2 (`ip`) + util-linux (`unshare`): the examples' README commands run in network
# namespaces of their own. procps (`kill`): the peer tests stop process groups.
command -v ip >/dev/null || [ -x /usr/sbin/ip ] || [ -x /sbin/ip ] || missing+=(iproute2)
command -v unshare >/dev/null || missing+=(util-linux)
[ -x /usr/bin/kill ] || [ -x /bin/kill ] || missing+=(procps)
# podman (+ runc, the CNI plugins) and debootstrap: the deployment tests build the image from a
# base made offline and run it, the Kubernetes manifests (`podman kube play`) and the compose
# stack (tests/deploy). objcopy (binutils) strips the binaries for the image.
command -v podman >/dev/null || missing+=(podman)
command -v runc >/dev/null || missing+=(runc)
[ -d /usr/lib/cni ] || missing+=(containernetworking-plugins)
command -v debootstrap >/dev/null || [ -x /usr/sbin/debootstrap ] || missing+=(debootstrap)
command -v objcopy >/dev/null || missing+=(binutils)
# promtool (package prometheus): the alert rules' unit tests (proxy/tests/deploy_files.rs).
command -v promtool >/dev/null || missing+=(prometheus)
# chromium + chromium-driver: the policy studio's browser test (tests/browser) drives the page in
# headless Chromium over WebDriver; it fails (never skips) without them.
command -v chromium >/dev/null || missing+=(chromium)
command -v chromedriver >/dev/null || missing+=(chromium-driver)
if ((${#missing[@]})); then
  step "installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq "${missing[@]}" >/dev/null
fi

# Node.js >= 20.18 (tests/oidc's oidc-provider and @ag-ui/client); an older distribution package
# is refused here with a clear message rather than failing obscurely in the tests.
if ! node -e 'const [a,b]=process.versions.node.split(".").map(Number); process.exit(a>20||(a==20&&b>=18)?0:1)'; then
  echo "Node.js $(node --version) is too old: the OIDC and AG-UI client tests need >= 20.18" >&2
  echo "(install it from https://nodejs.org or NodeSource, then rerun)." >&2
  exit 1
fi
# kubectl (with kustomize v5) renders the Kubernetes manifests; Debian has no package for it.
if ! command -v kubectl >/dev/null; then
  echo "kubectl is not installed: the deployment tests render deploy/kubernetes with" >&2
  echo "\`kubectl kustomize\` (install kubectl >= 1.27 from https://kubernetes.io, then rerun)." >&2
  exit 1
fi
# A network namespace (as root, or through an unprivileged user namespace) for the README tests.
if ! unshare --net true 2>/dev/null && ! unshare --user --map-root-user --net true 2>/dev/null; then
  echo "cannot create a network namespace (unshare --net): the examples' README tests need one;" >&2
  echo "run as root or enable unprivileged user namespaces." >&2
  exit 1
fi

# --- rust tools ------------------------------------------------------------------------------
if ! cargo nextest --version >/dev/null 2>&1; then
  step "installing cargo-nextest"
  cargo install cargo-nextest --locked
fi

# --- npm packages of the test OpenID provider (once, so parallel tests don't race on it) --------
step "npm ci (tests/oidc)"
npm ci --prefix tests/oidc --no-audit --no-fund

# --- third-party peers (tests/peers, the authz/orchestrator MCP and A2A scenarios) ------------
# The official AG-UI client (pinned by its package-lock.json) and one venv with the pinned Python
# SDKs (mcp, a2a-sdk, pydantic-ai); tests find it as target/peers-venv or $PALISADE_PEERS_PYTHON.
step "npm ci (tests/peers/agui-client)"
npm ci --prefix tests/peers/agui-client --no-audit --no-fund

step "Python venv with the peer packages (target/peers-venv)"
[ -x target/peers-venv/bin/python ] || python3 -m venv target/peers-venv
target/peers-venv/bin/pip install -q --disable-pip-version-check -r tests/peers/requirements.txt \
  -r tests/deploy/requirements.txt

step "free disk before building: $(df -h . | awk 'NR == 2 { print $4 }') (a clean run needs ≈ 9 GB: measured 8.2)"

step "cargo fmt --check"
cargo fmt --all -- --check

step "cargo clippy --all-targets -D warnings"
cargo clippy --workspace --all-targets --locked -- -D warnings

step "dependencies: cargo deny (bans, licenses, sources) and no unused declarations"
# deny.toml: permissive licenses only, no OpenSSL, no new duplicate versions, crates.io only.
# (Advisories need the RustSec database from GitHub, which CI cannot reach; see deny.toml.)
if ! cargo deny --version 2>/dev/null | grep -q '^cargo-deny 0.20'; then
  cargo install cargo-deny --locked --version 0.20.2
fi
cargo deny --log-level error check bans licenses sources
python3 tests/tools/unused_deps.py

step "tests (unit, property, end-to-end)"
cargo nextest run --workspace --locked --no-fail-fast

# The next steps use the binaries the test build left in target/debug. A `cargo build` of the
# binaries alone would resolve features without the dev-dependencies and compile a second copy of
# the workspace and of the crates whose features differ (gigabytes of disk for nothing); this
# `cargo test --no-run` is the test build again, a no-op after the run above.
cargo test --workspace --no-run --locked -q
# Where cargo put them (CARGO_TARGET_DIR, when set, moves the whole target directory).
target_dir="${CARGO_TARGET_DIR:-target}"
PALISADE_BIN_DIR="$(cd "$target_dir/debug" && pwd)"
export PALISADE_BIN_DIR

step "policy tests (palisade policy test over policies/)"
"$PALISADE_BIN_DIR/palisade" policy test -p policies

step "deployment: image, Kubernetes sidecar pod, compose stack (tests/deploy)"
bash tests/deploy/run.sh

step "doc tests"
cargo test --workspace --doc --locked

step "fuzz smoke (SSE parser; config, claims, paths, dialect bodies, SSE relay, event filters)"
if rustup toolchain list 2>/dev/null | grep -q '^nightly'; then
  bash tests/fuzz.sh proxy/wire/fuzz "${PALISADE_FUZZ_SECONDS:-30}"
  bash tests/fuzz.sh proxy/fuzz "${PALISADE_FUZZ_SECONDS:-30}"
else
  echo "fuzz smoke: NOT RUN — no nightly toolchain on this machine (cargo-fuzz needs one)."
  echo "The same invariants run as property tests above (palisade-wire sse::tests)."
fi

step "disk used by the build: $(du -sh "$target_dir" proxy/fuzz/target proxy/wire/fuzz/target 2>/dev/null | tr '\t\n' ' ')"
df -h . | tail -n 1

step "all checks passed"
