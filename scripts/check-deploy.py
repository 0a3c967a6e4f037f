#!/usr/bin/env python3
"""Offline checks of Kith's deployment files, run by scripts/check-deploy.sh inside its tools venv
(needs PyYAML, kubernetes-validate and promql-parser from PyPI; nothing here reaches a network).

    check-deploy.py manifests RENDERED.yaml --name dev [--k8s 1.30.0 ...] [--forbid-secrets]
                    [--min-replicas N] [--config KEY=VALUE ...] [--external-secret NAME ...]
                    [--nats-url-secret NAME]
    check-deploy.py nats deploy/nats/values-production.yaml deploy/nats/auth.conf
    check-deploy.py collector deploy/otel-collector.yaml
    check-deploy.py yaml FILE...
    check-deploy.py grafana deploy/grafana/*.json
    check-deploy.py rules deploy/prometheus/kith-rules.yaml --readme k8s/README.md --out RULES.yaml

`manifests` validates every object of a rendered overlay against the Kubernetes OpenAPI schemas
bundled in kubernetes-validate (strict: unknown fields are errors), for each --k8s version. Kinds
that no Kubernetes schema covers are errors too, except the custom resources listed in
LENIENT_KINDS, which get a structural check written here (their CRD schemas are not bundled, and
fetching them would need the network). Then Kith's own rules: pod security settings, probes,
resources, no unreplaced template placeholder, every ConfigMap/Secret/ServiceAccount/Deployment
reference resolves (Secrets that the operator or an operator-controller creates are named with
--external-secret), selectors select something; with --nats-url-secret, every Kith Deployment takes
NATS_URL from that Secret, key <service>-url (its own NATS user).

`nats` checks the NATS Helm values against the users file: the values include it, every password
variable it names comes from a Secret, every user has allow lists, and among Kith's subjects a
service's user may publish on its own (kith.<service>.>) only, the others on none.

`rules` checks the PrometheusRule of alerts: apiVersion and kind, uniquely named groups and
alerts, every expression parses as PromQL and names only Kith's metrics, every alert has a `for`
(or says in a comment why not: only KithConsumerSetAside), `labels.severity` (critical, warning or
info) and `annotations.summary`, `description`, `runbook` (k8s/README.md#alert-<name in lower
case>) and `runbook_url` ending in the same path, and the README has a heading with that anchor.
It writes the resource's `spec` to --out, a plain rule file for `promtool check rules`.

Exit status 0 when everything passes, 1 otherwise; every problem is printed.
"""

from __future__ import annotations

import argparse
import json
import re
import sys
from typing import Any, Callable

import yaml

# The metric names the services expose (fixed; the dashboard may only use these).
KITH_METRICS = {
    "kith_grpc_requests_total",
    "kith_grpc_request_duration_seconds_bucket",
    "kith_grpc_request_duration_seconds_sum",
    "kith_grpc_request_duration_seconds_count",
    "kith_events_appended_total",
    "kith_append_conflicts_total",
    "kith_relay_lag_events",
    "kith_relay_leader",
    "kith_projection_lag_events",
    "kith_projection_lag_seconds",
    "kith_projection_stalled",
    "kith_projection_unknown_events_total",
    "kith_consumer_redeliveries_total",
    "kith_consumer_set_aside_total",
    "kith_db_oldest_transaction_seconds",
    "kith_db_pool_connections",
    "kith_db_pool_max_connections",
    "kith_notification_deliveries_total",
    "kith_notifications_parked",
}

PLACEHOLDER = re.compile(r"\bSERVICE\b")


class Report:
    def __init__(self) -> None:
        self.errors: list[str] = []

    def error(self, where: str, message: str) -> None:
        self.errors.append(f"{where}: {message}")
        print(f"  ERROR {where}: {message}")

    def check(self, ok: bool, where: str, message: str) -> None:
        if not ok:
            self.error(where, message)


def dig(obj: Any, *path: Any, default: Any = None) -> Any:
    for key in path:
        if isinstance(obj, dict):
            obj = obj.get(key)
        elif isinstance(obj, list) and isinstance(key, int) and key < len(obj):
            obj = obj[key]
        else:
            return default
        if obj is None:
            return default
    return obj


def kn(obj: dict) -> str:
    return f"{obj.get('kind')}/{dig(obj, 'metadata', 'name', default='?')}"


# --- custom resources ---------------------------------------------------------------------------


def check_cnpg_cluster(obj: dict, report: Report) -> None:
    """CloudNativePG Cluster (postgresql.cnpg.io/v1): the fields Kith relies on, typed."""
    where = kn(obj)
    spec = obj.get("spec")
    if not isinstance(spec, dict):
        report.error(where, "spec must be a mapping")
        return
    known = {
        "instances", "imageName", "primaryUpdateStrategy", "bootstrap", "postgresql", "storage",
        "walStorage", "resources", "affinity", "monitoring", "backup", "plugins", "description",
        "enableSuperuserAccess", "superuserSecret", "managed", "minSyncReplicas",
        "maxSyncReplicas", "primaryUpdateMethod", "startDelay", "stopDelay", "switchoverDelay",
        "failoverDelay", "logLevel", "topologySpreadConstraints", "priorityClassName",
        "serviceAccountTemplate", "env", "envFrom", "certificates", "inheritedMetadata",
        "imageCatalogRef", "imagePullSecrets", "externalClusters", "replica", "tablespaces",
        "enablePDB", "probes", "podSecurityContext", "securityContext", "seccompProfile",
        "smartShutdownTimeout", "ephemeralVolumeSource", "ephemeralVolumesSizeLimit",
        "projectedVolumeTemplate", "nodeMaintenanceWindow", "postgresUID", "postgresGID",
    }
    for key in spec:
        report.check(key in known, where, f"spec.{key} is not a Cluster field Kith knows")
    instances = spec.get("instances")
    report.check(isinstance(instances, int) and instances >= 1, where,
                 "spec.instances must be an integer >= 1")
    size = dig(spec, "storage", "size")
    report.check(isinstance(size, str) and re.fullmatch(r"\d+(Mi|Gi|Ti)", size or "") is not None,
                 where, "spec.storage.size must be a quantity such as 20Gi")
    initdb = dig(spec, "bootstrap", "initdb")
    if initdb is not None:
        report.check(isinstance(initdb, dict), where, "spec.bootstrap.initdb must be a mapping")
    params = dig(spec, "postgresql", "parameters", default={})
    report.check(isinstance(params, dict) and all(isinstance(v, str) for v in params.values()),
                 where, "spec.postgresql.parameters values must be strings")
    report.check(spec.get("primaryUpdateStrategy", "unsupervised") in ("unsupervised", "supervised"),
                 where, "spec.primaryUpdateStrategy must be unsupervised or supervised")
    anti = dig(spec, "affinity", "podAntiAffinityType", default="preferred")
    report.check(anti in ("preferred", "required"), where,
                 "spec.affinity.podAntiAffinityType must be preferred or required")


# apiVersion, kind -> structural check. Anything else without a Kubernetes schema is an error.
LENIENT_KINDS: dict[tuple[str, str], Callable[[dict, Report], None]] = {
    ("postgresql.cnpg.io/v1", "Cluster"): check_cnpg_cluster,
}


# --- rendered manifests -------------------------------------------------------------------------


def pod_spec(obj: dict) -> dict | None:
    kind = obj.get("kind")
    if kind in ("Deployment", "StatefulSet", "DaemonSet", "Job", "ReplicaSet"):
        return dig(obj, "spec", "template", "spec")
    if kind == "CronJob":
        return dig(obj, "spec", "jobTemplate", "spec", "template", "spec")
    if kind == "Pod":
        return obj.get("spec")
    return None


def pod_labels(obj: dict) -> dict:
    if obj.get("kind") == "CronJob":
        return dig(obj, "spec", "jobTemplate", "spec", "template", "metadata", "labels", default={})
    return dig(obj, "spec", "template", "metadata", "labels", default={})


def selects(selector: dict, labels: dict) -> bool:
    return bool(selector) and all(labels.get(k) == v for k, v in selector.items())


def check_pod_security(obj: dict, spec: dict, report: Report) -> None:
    where = kn(obj)
    pod_sc = spec.get("securityContext") or {}
    report.check(spec.get("automountServiceAccountToken") is False, where,
                 "automountServiceAccountToken must be false")
    pod_seccomp = dig(pod_sc, "seccompProfile", "type")
    for container in (spec.get("initContainers") or []) + (spec.get("containers") or []):
        cwhere = f"{where} container {container.get('name')}"
        sc = container.get("securityContext") or {}
        non_root = sc.get("runAsNonRoot", pod_sc.get("runAsNonRoot"))
        uid = sc.get("runAsUser", pod_sc.get("runAsUser"))
        report.check(non_root is True, cwhere, "runAsNonRoot must be true")
        report.check(uid == 65532, cwhere, f"runAsUser must be 65532, not {uid}")
        report.check(sc.get("readOnlyRootFilesystem") is True, cwhere,
                     "readOnlyRootFilesystem must be true")
        report.check(sc.get("allowPrivilegeEscalation") is False, cwhere,
                     "allowPrivilegeEscalation must be false")
        report.check(dig(sc, "capabilities", "drop") == ["ALL"], cwhere,
                     "capabilities.drop must be [ALL]")
        report.check((dig(sc, "seccompProfile", "type") or pod_seccomp) == "RuntimeDefault", cwhere,
                     "seccompProfile must be RuntimeDefault")
        resources = container.get("resources") or {}
        for section in ("requests", "limits"):
            for res in ("cpu", "memory"):
                report.check(dig(resources, section, res) is not None, cwhere,
                             f"resources.{section}.{res} is missing")
        image = container.get("image", "")
        report.check(("@" in image or ":" in image.rsplit("/", 1)[-1])
                     and not image.endswith(":latest"), cwhere,
                     f"image {image!r} needs a tag or digest (set by the overlay's images:), not latest")
        mounts = {m.get("mountPath") for m in container.get("volumeMounts") or []}
        report.check("/tmp" in mounts, cwhere, "needs a writable /tmp (emptyDir) mount")


def check_server(obj: dict, report: Report) -> None:
    """Kith Deployments: native gRPC probes, grace period, ports."""
    where = kn(obj)
    spec = pod_spec(obj) or {}
    report.check(spec.get("terminationGracePeriodSeconds") == 30, where,
                 "terminationGracePeriodSeconds must be 30")
    keys = {c.get("topologyKey") for c in spec.get("topologySpreadConstraints") or []}
    report.check({"topology.kubernetes.io/zone", "kubernetes.io/hostname"} <= keys, where,
                 "needs topologySpreadConstraints by zone and by hostname")
    for container in spec.get("containers") or []:
        cwhere = f"{where} container {container.get('name')}"
        for probe in ("livenessProbe", "readinessProbe"):
            report.check(dig(container, probe, "grpc", "port") == 50051, cwhere,
                         f"{probe} must be a gRPC probe on port 50051")
        ports = {p.get("name"): p.get("containerPort") for p in container.get("ports") or []}
        expected = {"grpc": 50051, "metrics": 9464}
        # Notifications also serves the one-click unsubscribe endpoint (plain HTTP).
        if obj.get("metadata", {}).get("name", "").endswith("-notifications"):
            expected["unsubscribe"] = 8090
        report.check(ports == expected, cwhere,
                     f"ports must be {expected}, not {ports}")
        command = container.get("command") or []
        report.check(bool(command) and command[0].startswith("/usr/local/bin/kith-"), cwhere,
                     f"command must run a service binary, not {command}")


def check_nats_url(obj: dict, secret: str, report: Report) -> None:
    """A Kith Deployment logs in to NATS as its own user: NATS_URL from `secret`, key <service>-url."""
    where = kn(obj)
    name = pod_labels(obj).get("app.kubernetes.io/name", "")
    service = name.removeprefix("kith-")
    for container in (pod_spec(obj) or {}).get("containers") or []:
        env = {e.get("name"): e for e in container.get("env") or []}
        ref = dig(env, "NATS_URL", "valueFrom", "secretKeyRef", default={})
        report.check(ref.get("name") == secret and ref.get("key") == f"{service}-url",
                     f"{where} container {container.get('name')}",
                     f"NATS_URL must come from Secret {secret}, key {service}-url (its own NATS "
                     f"user), not {env.get('NATS_URL') or 'the ConfigMap'}")


def check_manifests(args: argparse.Namespace) -> int:
    from kubernetes_validate import utils as kv

    report = Report()
    with open(args.file, encoding="utf-8") as f:
        text = f.read()
    objects = [o for o in yaml.safe_load_all(text) if o]
    print(f"  {len(objects)} objects in {args.name}")
    if not objects:
        report.error(args.name, "rendered nothing")

    by_kind: dict[str, dict[str, dict]] = {}
    for obj in objects:
        by_kind.setdefault(obj.get("kind", "?"), {})[dig(obj, "metadata", "name", default="?")] = obj

    # 1. Schemas.
    for obj in objects:
        where = kn(obj)
        api = (obj.get("apiVersion"), obj.get("kind"))
        for version in args.k8s:
            try:
                kv.validate(obj, version, strict=True)
            except kv.ValidationError as e:
                path = ".".join(str(p) for p in e.path)
                report.error(where, f"schema (Kubernetes {version}, strict): {path}: {e.message}")
            except kv.SchemaNotFoundError:
                if api in LENIENT_KINDS:
                    if version == args.k8s[0]:
                        LENIENT_KINDS[api](obj, report)
                else:
                    report.error(where, f"no schema for {api[0]} {api[1]} in Kubernetes {version} "
                                        "and no lenient check for it in check-deploy.py")
            except kv.VersionNotSupportedError:
                report.error(where, f"kubernetes-validate cannot validate Kubernetes {version}")
            except Exception as e:  # noqa: BLE001 - report and go on
                report.error(where, f"could not be validated against {version}: {e}")
        names_ok = re.fullmatch(r"[a-z0-9]([-a-z0-9.]*[a-z0-9])?",
                                dig(obj, "metadata", "name", default="")) is not None
        report.check(names_ok, where, "metadata.name is not a valid DNS subdomain")
        if api[1] != "Namespace":
            report.check(bool(dig(obj, "metadata", "namespace")), where,
                         "no namespace (the overlay must set one)")

    # 2. Leftover template placeholders.
    for obj in objects:
        dumped = json.dumps(obj)
        report.check(PLACEHOLDER.search(dumped) is None, kn(obj),
                     "still contains the template placeholder SERVICE (a per-service patch is missing)")

    # 3. Secrets in git.
    if args.forbid_secrets:
        for name in by_kind.get("Secret", {}):
            report.error(f"Secret/{name}", "this overlay must not carry Secrets (they are created "
                                           "out of band; see k8s/README.md)")

    # 4. References resolve, selectors select.
    configmaps = set(by_kind.get("ConfigMap", {}))
    secrets = set(by_kind.get("Secret", {})) | set(args.external_secret)
    if args.nats_url_secret:
        secrets.add(args.nats_url_secret)
    for cluster in by_kind.get("Cluster", {}):  # CloudNativePG generates <cluster>-app
        secrets.add(f"{cluster}-app")
    accounts = set(by_kind.get("ServiceAccount", {}))
    workloads = [o for o in objects if pod_spec(o) is not None]
    for obj in workloads:
        where = kn(obj)
        spec = pod_spec(obj) or {}
        check_pod_security(obj, spec, report)
        sa = spec.get("serviceAccountName")
        report.check(sa in accounts, where, f"serviceAccountName {sa!r} is not in the render")
        for volume in spec.get("volumes") or []:
            if "secret" in volume:
                name = dig(volume, "secret", "secretName")
                report.check(name in secrets, where, f"volume secret {name!r} does not exist")
            if "configMap" in volume:
                name = dig(volume, "configMap", "name")
                report.check(name in configmaps, where, f"volume configMap {name!r} does not exist")
        for container in spec.get("containers") or []:
            for source in container.get("envFrom") or []:
                if "configMapRef" in source:
                    name = dig(source, "configMapRef", "name")
                    report.check(name in configmaps, where, f"envFrom configMap {name!r} does not exist")
                if "secretRef" in source:
                    name = dig(source, "secretRef", "name")
                    report.check(name in secrets, where, f"envFrom secret {name!r} does not exist")
            for env in container.get("env") or []:
                ref = dig(env, "valueFrom", "secretKeyRef")
                if ref:
                    report.check(ref.get("name") in secrets, where,
                                 f"env {env.get('name')}: secret {ref.get('name')!r} does not exist")
                ref = dig(env, "valueFrom", "configMapKeyRef")
                if ref:
                    report.check(ref.get("name") in configmaps, where,
                                 f"env {env.get('name')}: configMap {ref.get('name')!r} does not exist")
        if obj.get("kind") == "Deployment":
            check_server(obj, report)
            if args.nats_url_secret:
                check_nats_url(obj, args.nats_url_secret, report)
            report.check(selects(dig(obj, "spec", "selector", "matchLabels", default={}),
                                 pod_labels(obj)), where, "selector does not match its pod labels")

    deployments = by_kind.get("Deployment", {})
    server_pods = [pod_labels(d) for d in deployments.values()]
    all_pods = [pod_labels(o) for o in workloads]
    for name, svc in by_kind.get("Service", {}).items():
        selector = dig(svc, "spec", "selector", default={})
        report.check(sum(selects(selector, labels) for labels in server_pods) == 1
                     and sum(selects(selector, labels) for labels in all_pods) == 1,
                     f"Service/{name}", "selector must select the pods of exactly one Deployment "
                                        "and nothing else (not the migration Job)")
    for name, pdb in by_kind.get("PodDisruptionBudget", {}).items():
        selector = dig(pdb, "spec", "selector", "matchLabels", default={})
        report.check(sum(selects(selector, labels) for labels in all_pods) == 1,
                     f"PodDisruptionBudget/{name}", "selector must select exactly one workload")
    for name, np in by_kind.get("NetworkPolicy", {}).items():
        selector = dig(np, "spec", "podSelector", "matchLabels", default={})
        report.check(any(selects(selector, labels) for labels in server_pods),
                     f"NetworkPolicy/{name}", "podSelector selects no Deployment's pods")
    hpas = by_kind.get("HorizontalPodAutoscaler", {})
    for name, hpa in hpas.items():
        target = dig(hpa, "spec", "scaleTargetRef", default={})
        report.check(target.get("kind") == "Deployment" and target.get("name") in deployments,
                     f"HorizontalPodAutoscaler/{name}", f"scaleTargetRef {target} does not exist")
    if args.min_replicas:
        scaled = {dig(h, "spec", "scaleTargetRef", "name"): h for h in hpas.values()}
        for name, dep in deployments.items():
            hpa = scaled.get(name)
            if hpa is None:
                report.error(f"Deployment/{name}", "has no HorizontalPodAutoscaler")
                continue
            low = dig(hpa, "spec", "minReplicas", default=1)
            report.check(low >= args.min_replicas, f"HorizontalPodAutoscaler/{name}",
                         f"minReplicas {low} < {args.min_replicas}")
            report.check(dig(dep, "spec", "replicas") is None, f"Deployment/{name}",
                         "sets spec.replicas although an HPA scales it")
    for pair in args.config:
        key, _, value = pair.partition("=")
        config = [c for n, c in by_kind.get("ConfigMap", {}).items() if n.startswith("kith-config")]
        report.check(len(config) == 1 and str(dig(config[0], "data", key)) == value, args.name,
                     f"kith-config must set {key}={value}")

    kinds = ", ".join(f"{k} x{len(v)}" for k, v in sorted(by_kind.items()))
    print(f"  kinds: {kinds}")
    print(f"  schemas: Kubernetes {', '.join(args.k8s)} (strict); "
          f"lenient structural check for {', '.join(k for _, k in LENIENT_KINDS)}")
    return finish(report, args.name)


# --- other files --------------------------------------------------------------------------------


def check_yaml(args: argparse.Namespace) -> int:
    report = Report()
    for path in args.files:
        try:
            with open(path, encoding="utf-8") as f:
                docs = [d for d in yaml.safe_load_all(f) if d is not None]
            report.check(bool(docs), path, "is empty")
            print(f"  {path}: {len(docs)} document(s)")
        except yaml.YAMLError as e:
            report.error(path, f"not valid YAML: {e}")
    return finish(report, "YAML files")


# Kith's services (each owns stream KITH_<SERVICE>, subjects kith.<service>.>) and the other users.
NATS_SERVICE_USERS = {"membership", "cohorts", "messaging", "notifications"}
NATS_OTHER_USERS = {"analyst", "admin"}


def strip_conf_comment(line: str) -> str:
    """A nats-server config line without its comment (`#` or `//` outside double quotes)."""
    quoted = False
    for i, ch in enumerate(line):
        if ch == '"':
            quoted = not quoted
        elif not quoted and (ch == "#" or line.startswith("//", i)):
            return line[:i]
    return line


def check_nats(args: argparse.Namespace) -> int:
    """deploy/nats: the Helm values load auth.conf, and auth.conf keeps Kith's subjects apart."""
    report = Report()
    with open(args.values, encoding="utf-8") as f:
        values = yaml.safe_load(f) or {}
    with open(args.auth, encoding="utf-8") as f:
        auth = "\n".join(strip_conf_comment(line) for line in f.read().splitlines())
    where = args.values

    includes = {k: v for k, v in (dig(values, "config", "merge", default={}) or {}).items()
                if str(k).endswith("$include")}
    report.check(list(includes.values()) == ["auth.conf"], where,
                 f"config.merge must include auth.conf once (key ending in $include), not {includes}")
    env = dig(values, "container", "env", default={}) or {}
    variables = re.findall(r"password\s*[:=]\s*\$([A-Za-z_][A-Za-z0-9_]*)", auth)
    literal = re.findall(r"password\s*[:=]\s*[^$\s]", auth)
    report.check(not literal, args.auth, "every password must be a $VARIABLE, never a literal")
    for var in variables:
        ref = dig(env, var, "valueFrom", "secretKeyRef", default={})
        report.check(bool(ref.get("name")) and bool(ref.get("key")), where,
                     f"container.env.{var} (named by {args.auth}) must come from a secretKeyRef")
    box = dig(values, "natsBox", "container", "env", default={}) or {}
    if dig(values, "natsBox", "enabled", default=True):
        report.check(bool(dig(box, "NATS_PASSWORD", "valueFrom", "secretKeyRef")), where,
                     "natsBox.container.env.NATS_PASSWORD must come from a secretKeyRef")

    # One block per user: from its `user:` to the next.
    blocks = re.split(r"\buser\s*[:=]\s*", auth)[1:]
    users: dict[str, str] = {}
    for block in blocks:
        m = re.match(r'"?([A-Za-z0-9_-]+)"?', block)
        if m:
            users[m.group(1)] = block
    expected = {f"kith-{u}" for u in NATS_SERVICE_USERS | NATS_OTHER_USERS}
    report.check(set(users) == expected, args.auth,
                 f"users must be {sorted(expected)}, not {sorted(users)}")
    report.check(len(variables) == len(users), args.auth, "every user needs a password variable")
    for user, block in users.items():
        uwhere = f"{args.auth} user {user}"
        lists = {}
        for kind in ("publish", "subscribe"):
            m = re.search(kind + r"\s*[:=]\s*\{\s*allow\s*[:=]\s*\[([^\]]*)\]", block)
            report.check(m is not None, uwhere, f"needs a {kind} allow list (deny by default)")
            lists[kind] = re.findall(r'"([^"]+)"', m.group(1)) if m else []
        report.check(re.search(r"\bdeny\s*[:=]", block) is None, uwhere,
                     "allow lists only: a deny list lets through whatever it does not name")
        publish = lists["publish"]
        wide = [p for p in publish if p in (">", "*", "kith.>", "$JS.>") or p.startswith("_INBOX")]
        report.check(not wide, uwhere, f"publish allows too much: {wide}")
        report.check(lists["subscribe"] == ["_INBOX.>"], uwhere,
                     f"may subscribe to its replies (_INBOX.>) only, not {lists['subscribe']}")
        own = [p for p in publish if p.startswith("kith.")]
        service = user.removeprefix("kith-")
        want = [f"kith.{service}.>"] if service in NATS_SERVICE_USERS else []
        report.check(own == want, uwhere,
                     f"may publish on {want or 'no kith.> subject'} only among Kith's subjects, not {own}")
        if service in NATS_SERVICE_USERS:
            stream = f"KITH_{service.upper()}"
            report.check(all(f"$JS.API.STREAM.{op}.{stream}" in publish
                             for op in ("CREATE", "INFO", "DELETE", "MSG.GET")), uwhere,
                         f"must manage its own stream {stream} (STREAM.CREATE|INFO|DELETE|MSG.GET)")
            foreign = [p for p in publish
                       if re.match(r"\$JS\.API\.STREAM\.(CREATE|UPDATE|DELETE|PURGE|MSG\.DELETE)\.", p)
                       and not p.endswith(f".{stream}")]
            report.check(not foreign, uwhere, f"may change its own stream only, not {foreign}")
        if service == "analyst":
            changes = [p for p in publish if re.search(
                r"\.(DELETE|PURGE|UPDATE)\b|STREAM\.CREATE|DURABLE|^\$JS\.ACK|CONSUMER\.CREATE\.[^.]+\.", p)]
            report.check(not changes, uwhere, f"reads only: {changes} would change something")
    print(f"  {len(users)} users in {args.auth}; {len(variables)} password variables from Secrets")
    return finish(report, "NATS values and users")


def check_collector(args: argparse.Namespace) -> int:
    """Every pipeline names defined components, every defined component is used."""
    report = Report()
    with open(args.file, encoding="utf-8") as f:
        config = yaml.safe_load(f)
    where = args.file
    pipelines = dig(config, "service", "pipelines", default={})
    report.check({"traces", "metrics"} <= set(pipelines), where,
                 "needs pipelines for traces and metrics")
    used: dict[str, set[str]] = {"receivers": set(), "processors": set(), "exporters": set()}
    for name, pipeline in pipelines.items():
        for section in used:
            for component in pipeline.get(section) or []:
                used[section].add(component)
                report.check(component in (config.get(section) or {}), where,
                             f"pipeline {name} uses {section[:-1]} {component!r}, which is not defined")
        processors = pipeline.get("processors") or []
        report.check(bool(processors) and processors[0] == "memory_limiter", where,
                     f"pipeline {name}: memory_limiter must come first")
        report.check("batch" in processors, where, f"pipeline {name}: needs the batch processor")
    for section, names in used.items():
        for component in config.get(section) or {}:
            report.check(component in names, where, f"{section[:-1]} {component!r} is defined but unused")
    for extension in dig(config, "service", "extensions", default=[]):
        report.check(extension in (config.get("extensions") or {}), where,
                     f"extension {extension!r} is not defined")
    endpoints = {
        dig(config, "receivers", "otlp", "protocols", "grpc", "endpoint"),
        dig(config, "receivers", "otlp", "protocols", "http", "endpoint"),
    }
    report.check(endpoints == {"0.0.0.0:4317", "0.0.0.0:4318"}, where,
                 "the OTLP receiver must listen on 4317 (gRPC) and 4318 (HTTP)")
    scrape = dig(config, "receivers", "prometheus", "config", "scrape_configs", default=[])
    report.check(any(s.get("metrics_path", "/metrics") == "/metrics" for s in scrape), where,
                 "the prometheus receiver must scrape /metrics")
    print(f"  pipelines: {', '.join(sorted(pipelines))}")
    return finish(report, where)


def check_grafana(args: argparse.Namespace) -> int:
    import promql_parser

    report = Report()
    for path in args.files:
        try:
            with open(path, encoding="utf-8") as f:
                dash = json.load(f)
        except json.JSONDecodeError as e:
            report.error(path, f"not valid JSON: {e}")
            continue
        variables = {v.get("name"): v for v in dig(dash, "templating", "list", default=[])}
        report.check(dig(variables, "DS_PROMETHEUS", "type") == "datasource", path,
                     "needs a datasource variable DS_PROMETHEUS")
        report.check("service" in variables, path, "needs a `service` variable")
        report.check(isinstance(dash.get("schemaVersion"), int) and dash["schemaVersion"] >= 36,
                     path, "schemaVersion must be a recent integer")
        panels = list(dash.get("panels") or [])
        for panel in list(panels):
            panels.extend(panel.get("panels") or [])
        ids = [p.get("id") for p in panels]
        report.check(len(ids) == len(set(ids)), path, "panel ids must be unique")
        used: set[str] = set()
        queries = 0
        for panel in panels:
            pwhere = f"{path} panel {panel.get('title')!r}"
            report.check(isinstance(dig(panel, "gridPos", "w"), int), pwhere, "needs a gridPos")
            if panel.get("type") == "row":
                continue
            report.check(dig(panel, "datasource", "uid") == "${DS_PROMETHEUS}", pwhere,
                         "datasource must be ${DS_PROMETHEUS}")
            targets = panel.get("targets") or []
            report.check(bool(targets), pwhere, "has no query")
            for target in targets:
                expr = target.get("expr", "")
                queries += 1
                concrete = (expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
                            .replace("$service", ".*"))
                try:
                    promql_parser.parse(concrete)
                except ValueError as e:
                    report.error(pwhere, f"PromQL does not parse: {e}: {expr}")
                for metric in re.findall(r"\bkith_[a-z_]+", expr):
                    used.add(metric)
                    report.check(metric in KITH_METRICS, pwhere, f"unknown metric {metric}")
        families = {re.sub(r"_(bucket|sum|count)$", "", m) for m in KITH_METRICS}
        missing = {f for f in families
                   if not any(u == f or u.startswith(f + "_") for u in used)}
        report.check(not missing, path, f"metrics not on the dashboard: {sorted(missing)}")
        print(f"  {path}: {len(panels)} panels, {queries} PromQL queries checked, "
              f"{len(used)} kith metrics used")
    return finish(report, "dashboards")


SEVERITIES = {"critical", "warning", "info"}
# Alerts that fire at once (their expression already looks back over a window).
NO_FOR = {"KithConsumerSetAside"}


def github_anchors(markdown: str) -> set[str]:
    """The anchors GitHub gives the headings of a Markdown page (outside code blocks)."""
    anchors: set[str] = set()
    seen: dict[str, int] = {}
    fenced = False
    for line in markdown.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        m = None if fenced else re.match(r"#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not m:
            continue
        slug = re.sub(r"[^\w\- ]", "", m.group(1).strip().lower()).replace(" ", "-")
        n = seen.get(slug, 0)
        seen[slug] = n + 1
        anchors.add(slug if n == 0 else f"{slug}-{n}")
    return anchors


def check_rules(args: argparse.Namespace) -> int:
    import promql_parser

    report = Report()
    path = args.file
    with open(path, encoding="utf-8") as f:
        docs = [d for d in yaml.safe_load_all(f) if d is not None]
    if len(docs) != 1:
        report.error(path, f"expected one document (a PrometheusRule), found {len(docs)}")
        return finish(report, "alert rules (shape, metrics, runbooks)")
    rule = docs[0]
    report.check(rule.get("apiVersion") == "monitoring.coreos.com/v1", path,
                 "apiVersion must be monitoring.coreos.com/v1")
    report.check(rule.get("kind") == "PrometheusRule", path, "kind must be PrometheusRule")
    report.check(bool(dig(rule, "metadata", "name")), path, "needs metadata.name")
    spec = rule.get("spec") or {}
    report.check(set(spec) == {"groups"}, path, "spec holds `groups` only")
    with open(args.readme, encoding="utf-8") as f:
        anchors = github_anchors(f.read())
    readme = "k8s/README.md"
    groups = spec.get("groups") or []
    report.check(bool(groups), path, "no rule groups")
    group_names: set[str] = set()
    alerts: set[str] = set()
    for group in groups:
        gname = group.get("name")
        report.check(gname not in group_names, path, f"group {gname!r} twice")
        group_names.add(gname)
        for r in group.get("rules") or []:
            name = r.get("alert") or r.get("record")
            where = f"{path} {gname}/{name}"
            expr = str(r.get("expr", ""))
            try:
                promql_parser.parse(expr)
            except ValueError as e:
                report.error(where, f"PromQL does not parse: {e}")
            for metric in re.findall(r"\bkith_[a-z_]+", expr):
                report.check(metric in KITH_METRICS, where, f"unknown metric {metric}")
            if "record" in r:
                continue
            report.check(name not in alerts, where, "alert name used twice")
            alerts.add(name)
            report.check("for" in r or name in NO_FOR, where, "needs a `for` duration")
            severity = dig(r, "labels", "severity")
            report.check(severity in SEVERITIES, where,
                         f"labels.severity must be one of {sorted(SEVERITIES)}, not {severity!r}")
            notes = r.get("annotations") or {}
            for key in ("summary", "description", "runbook", "runbook_url"):
                report.check(bool(str(notes.get(key) or "").strip()), where, f"needs annotations.{key}")
            anchor = f"alert-{str(name).lower()}"
            want = f"{readme}#{anchor}"
            report.check(notes.get("runbook") == want, where, f"annotations.runbook must be {want}")
            report.check(str(notes.get("runbook_url", "")).endswith("/" + want), where,
                         f"annotations.runbook_url must end in /{want}")
            report.check(anchor in anchors, where, f"{readme} has no heading with anchor #{anchor} "
                         f"(write `### Alert: {name}`)")
    with open(args.out, "w", encoding="utf-8") as f:
        yaml.safe_dump(spec, f, sort_keys=False, width=1000)
    print(f"  {path}: {len(group_names)} groups, {len(alerts)} alerts, each with a runbook in "
          f"{readme}; spec written to {args.out}")
    return finish(report, "alert rules (shape, metrics, runbooks)")


def finish(report: Report, what: str) -> int:
    if report.errors:
        print(f"  FAILED: {len(report.errors)} problem(s) in {what}")
        return 1
    print(f"  ok: {what}")
    return 0


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    sub = parser.add_subparsers(dest="command", required=True)
    m = sub.add_parser("manifests")
    m.add_argument("file")
    m.add_argument("--name", required=True)
    m.add_argument("--k8s", action="append", required=True)
    m.add_argument("--forbid-secrets", action="store_true")
    m.add_argument("--min-replicas", type=int, default=0)
    m.add_argument("--config", action="append", default=[])
    m.add_argument("--external-secret", action="append", default=[])
    m.add_argument("--nats-url-secret")
    m.set_defaults(run=check_manifests)
    n = sub.add_parser("nats")
    n.add_argument("values")
    n.add_argument("auth")
    n.set_defaults(run=check_nats)
    c = sub.add_parser("collector")
    c.add_argument("file")
    c.set_defaults(run=check_collector)
    y = sub.add_parser("yaml")
    y.add_argument("files", nargs="+")
    y.set_defaults(run=check_yaml)
    g = sub.add_parser("grafana")
    g.add_argument("files", nargs="+")
    g.set_defaults(run=check_grafana)
    r = sub.add_parser("rules")
    r.add_argument("file")
    r.add_argument("--readme", required=True)
    r.add_argument("--out", required=True)
    r.set_defaults(run=check_rules)
    args = parser.parse_args()
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
