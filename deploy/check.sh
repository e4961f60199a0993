#!/usr/bin/env bash
# Checks everything under deploy/ with the real tools, offline: Prometheus rules (syntax and
# unit tests) and configurations with promtool, the Kubernetes manifests against the API
# schemas with kubernetes-validate --strict, the KEDA resources, the Grafana dashboard, the
# compose file and the Containerfile, and that every metric they use is one rade exports.
# One line per check; exit status 1 if any check fails.
#
#   deploy/check.sh                 from anywhere; installs promtool (Debian package
#                                   prometheus, as root or through sudo) and a venv with
#                                   kubernetes-validate under ${RADE_CACHE:-~/.cache/rade}/venv
#   K8S_VERSION=1.31.0 deploy/check.sh      validate against another Kubernetes version
#   RADE_BIN=path/to/rade deploy/check.sh   also `rade check --offline` the shipped configs
set -euo pipefail
export LC_ALL=C

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"
CACHE="${RADE_CACHE:-$HOME/.cache/rade}"
VENV="$CACHE/venv"
KUBERNETES_VALIDATE_VERSION="1.37.0"
# A Kubernetes version kubernetes-validate ships schemas for (1.25 to 1.37 in 1.37.0).
K8S_VERSION="${K8S_VERSION:-1.33.0}"
WORK="$(mktemp -d)"
trap 'rm -rf "$WORK"' EXIT

# The metrics rade exports (the contract; crates/rade-telemetry defines them).
# Histograms also expose <name>_bucket, _sum and _count.
METRICS=(
  rade_records_consumed_total rade_records_valid_total rade_records_rejected_total
  rade_dlq_produced_total rade_records_replay_skipped_total
  rade_lake_files_written_total rade_lake_bytes_written_total
  rade_commit_latency_seconds rade_decode_seconds rade_end_to_end_latency_seconds
  rade_consumer_lag rade_assigned_partitions rade_watermark_lag_seconds
  rade_windows_closed_total rade_alerts_total rade_records_late_total
  rade_sensor_split_readings_total rade_lake_commits_fenced_total
)
HISTOGRAMS=(rade_commit_latency_seconds rade_decode_seconds rade_end_to_end_latency_seconds)
export CHECK_METRICS="${METRICS[*]}" CHECK_HISTOGRAMS="${HISTOGRAMS[*]}"

failures=0
started=$EPOCHREALTIME

# check NAME COMMAND...: runs COMMAND, prints one line, shows the output when it fails.
check() {
  local name="$1"
  shift
  local t0=$EPOCHREALTIME out
  if out="$("$@" 2>&1)"; then
    printf 'ok    %-58s %6.2fs%s\n' "$name" "$(elapsed "$t0")" "$(note "$out")"
  else
    failures=$((failures + 1))
    printf 'FAIL  %-58s %6.2fs\n' "$name" "$(elapsed "$t0")"
    printf '%s\n' "$out" | sed 's/^/      | /'
  fi
}
elapsed() { awk -v a="$1" -v b="$EPOCHREALTIME" 'BEGIN { printf "%.2f", b - a }'; }
# A check may end its output with a line "NOTE: ..." to show beside its result.
note() { local n; n="$(printf '%s\n' "$1" | sed -n 's/^NOTE: //p' | tail -n1)"; [[ -z "$n" ]] || printf '  (%s)' "$n"; }
skip() { printf 'skip  %-58s         (%s)\n' "$1" "$2"; }

as_root() { if [[ $(id -u) -eq 0 ]]; then "$@"; else sudo "$@"; fi; }

# ---- tools ------------------------------------------------------------------------------
install_promtool() {
  command -v promtool >/dev/null && return 0
  echo "installing the Debian package prometheus (for promtool)"
  as_root apt-get update -qq || return 1
  # Install only: no service of the package is started.
  local guard=""
  if [[ ! -e /usr/sbin/policy-rc.d ]]; then
    printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
    as_root chmod 755 /usr/sbin/policy-rc.d
    guard=1
  fi
  local rc=0
  DEBIAN_FRONTEND=noninteractive as_root apt-get install -y -qq --no-install-recommends prometheus >/dev/null || rc=$?
  [[ -z "$guard" ]] || as_root rm -f /usr/sbin/policy-rc.d
  [[ $rc -eq 0 ]] && command -v promtool
}

install_venv() {
  if [[ ! -x "$VENV/bin/kubernetes-validate" ]] \
    || [[ "$("$VENV/bin/kubernetes-validate" --version 2>/dev/null)" != *"$KUBERNETES_VALIDATE_VERSION"* ]]; then
    python3 -m venv "$VENV" || return 1
    "$VENV/bin/pip" install -q --disable-pip-version-check \
      "kubernetes-validate==$KUBERNETES_VALIDATE_VERSION" PyYAML 'tomli; python_version < "3.11"' || return 1
  fi
  "$VENV/bin/kubernetes-validate" --version && "$VENV/bin/python" -c 'import yaml'
}

PY="$VENV/bin/python"
# py SCRIPT [ARGS]: the venv's Python (PyYAML) on an inline script, from the repository root.
py() { "$PY" - "$@"; }

check "promtool present (Debian package prometheus)" install_promtool
check "venv with kubernetes-validate $KUBERNETES_VALIDATE_VERSION" install_venv
if [[ $failures -gt 0 ]]; then
  echo "the tools are missing: $failures failure(s)" >&2
  exit 1
fi

PYLIB="$(cat <<'PY'
import json, os, re, sys
try:
    import tomllib
except ModuleNotFoundError:
    import tomli as tomllib
import yaml

def load_yaml(path):
    with open(path) as f:
        return [d for d in yaml.safe_load_all(f) if d is not None]

def fail(msg):
    print(msg)
    sys.exit(1)

def known_config_keys():
    """Every key of deploy/local/rade.toml, the file that documents them all, plus the
    commented-out optional ones."""
    with open("deploy/local/rade.toml", "rb") as f:
        doc = tomllib.load(f)
    keys = {f"{s}.{k}" for s, t in doc.items() for k in t if not isinstance(t[k], dict)}
    keys |= {"kafka.kinds"}
    return keys

def config_problems(text, origin):
    """Keys rade would refuse (unknown keys are an error) and the values deploy relies on."""
    doc = tomllib.loads(text)
    known = known_config_keys()
    problems = []
    for section, table in doc.items():
        if not isinstance(table, dict):
            problems.append(f"{origin}: top-level key {section} outside a section")
            continue
        for key, value in table.items():
            if section == "kafka" and key == "properties":
                if not isinstance(value, dict) or any(not isinstance(v, str) for v in value.values()):
                    problems.append(f"{origin}: kafka.properties values must be strings")
                continue
            if f"{section}.{key}" not in known:
                problems.append(f"{origin}: unknown key {section}.{key}")
    return doc, problems

def duration_s(text):
    m = re.fullmatch(r"(\d+)\s*(ms|s|m|h)", text.strip())
    if not m:
        raise ValueError(f"duration {text!r}")
    return int(m[1]) * {"ms": 0.001, "s": 1, "m": 60, "h": 3600}[m[2]]
PY
)"
export PYLIB

# ---- Prometheus -------------------------------------------------------------------------
check "promtool check rules deploy/prometheus/rules.yaml" \
  promtool check rules deploy/prometheus/rules.yaml
check "promtool test rules deploy/prometheus/rules_test.yaml" \
  promtool test rules deploy/prometheus/rules_test.yaml
check "promtool check config deploy/prometheus/prometheus.yml" \
  promtool check config deploy/prometheus/prometheus.yml

k8s_prometheus_config() {
  # The configuration inside k8s/prometheus-scrape.yaml. Debian's promtool is built without
  # Kubernetes discovery: then the kubernetes_sd_configs block is checked here and swapped
  # for a static target so that promtool still checks everything else (relabelling included).
  py "$WORK" <<'PY' || return 1
import os, sys
exec(os.environ["PYLIB"])
work = sys.argv[1]
(cm,) = load_yaml("deploy/k8s/prometheus-scrape.yaml")
text = cm["data"]["prometheus.yml"]
cfg = yaml.safe_load(text)
jobs = {j["job_name"]: j for j in cfg["scrape_configs"]}
if "rade" not in jobs:
    fail("no scrape job named rade: the alert rules and the dashboard select job=\"rade\"")
sd = jobs["rade"].get("kubernetes_sd_configs") or fail("job rade has no kubernetes_sd_configs")
if [s.get("role") for s in sd] != ["pod"]:
    fail("job rade must discover with role: pod")
for s in sd:
    unknown = set(s) - {"role", "namespaces", "selectors", "api_server", "kubeconfig_file", "attach_metadata"}
    if unknown:
        fail(f"unknown kubernetes_sd_configs keys {sorted(unknown)}")
    ns = s.get("namespaces", {})
    if set(ns) - {"own_namespace", "names"} or not isinstance(ns.get("own_namespace", False), bool):
        fail(f"bad namespaces block {ns}")
sources = {l for r in jobs["rade"]["relabel_configs"] for l in r.get("source_labels", [])}
for needed in ("__meta_kubernetes_pod_annotation_prometheus_io_scrape",
               "__meta_kubernetes_pod_annotation_prometheus_io_port",
               "__meta_kubernetes_pod_annotation_prometheus_io_path"):
    if needed not in sources:
        fail(f"the rade job does not use the annotation label {needed}")
open(f"{work}/k8s-prometheus.yml", "w").write(text)
for j in cfg["scrape_configs"]:
    if "kubernetes_sd_configs" in j:
        del j["kubernetes_sd_configs"]
        j["static_configs"] = [{"targets": ["rade-0:9898"]}]
open(f"{work}/k8s-prometheus-static.yml", "w").write(yaml.safe_dump(cfg, sort_keys=False))
PY
  mkdir -p "$WORK/rules"   # the rule_files glob of that config
  if promtool check config --syntax-only "$WORK/k8s-prometheus.yml" >"$WORK/sd.log" 2>&1; then
    promtool check config --syntax-only "$WORK/k8s-prometheus.yml"
  elif grep -q "kubernetes_sd_configs not found" "$WORK/sd.log"; then
    promtool check config --syntax-only "$WORK/k8s-prometheus-static.yml"
    echo "NOTE: this promtool lacks Kubernetes discovery; SD block checked by hand"
  else
    cat "$WORK/sd.log"
    return 1
  fi
}
check "promtool check config k8s/prometheus-scrape.yaml (embedded)" k8s_prometheus_config

# ---- Grafana ----------------------------------------------------------------------------
check "dashboard.json is JSON (json.load)" \
  python3 -c 'import json, sys; json.load(open(sys.argv[1]))' deploy/grafana/dashboard.json

dashboard_structure() {
  py "$WORK" <<'PY' || return 1
import os, sys
exec(os.environ["PYLIB"])
work = sys.argv[1]
d = json.load(open("deploy/grafana/dashboard.json"))
for key in ("uid", "title", "panels", "templating", "schemaVersion"):
    if key not in d:
        fail(f"dashboard has no {key}")
if not 36 <= d["schemaVersion"] <= 41:
    fail(f"schemaVersion {d['schemaVersion']}")
variables = {v["name"]: v for v in d["templating"]["list"]}
ds = variables.get("DS_PROMETHEUS") or fail("no DS_PROMETHEUS variable")
if ds["type"] != "datasource" or ds["query"] != "prometheus":
    fail("DS_PROMETHEUS must be a Prometheus data source variable")
(prov,) = load_yaml("deploy/grafana/provisioning/datasources/prometheus.yaml")
uids = [s["uid"] for s in prov["datasources"]]
if ds["current"]["value"] not in uids:
    fail(f"DS_PROMETHEUS defaults to {ds['current']['value']}, provisioned: {uids}")
(dprov,) = load_yaml("deploy/grafana/provisioning/dashboards/rade.yaml")
if dprov["providers"][0]["options"]["path"] != "/etc/grafana/dashboards/rade":
    fail("the dashboard provider path is not where compose.yaml mounts dashboard.json")
ids, exprs, cells = set(), [], {}
for p in d["panels"]:
    if p["id"] in ids:
        fail(f"duplicate panel id {p['id']}")
    ids.add(p["id"])
    g = p["gridPos"]
    if g["x"] + g["w"] > 24:
        fail(f"panel {p['title']!r} is wider than the grid")
    for x in range(g["x"], g["x"] + g["w"]):
        for y in range(g["y"], g["y"] + g["h"]):
            if (x, y) in cells:
                fail(f"panels {p['title']!r} and {cells[(x, y)]!r} overlap")
            cells[(x, y)] = p["title"]
    if p["type"] == "row":
        continue
    if p.get("datasource", {}).get("uid") != "${DS_PROMETHEUS}":
        fail(f"panel {p['title']!r} does not use ${{DS_PROMETHEUS}}")
    if not p.get("description"):
        fail(f"panel {p['title']!r} has no description")
    for t in p["targets"]:
        exprs.append((p["title"], t["expr"]))
for a in d["annotations"]["list"]:
    if "expr" in a:
        exprs.append((a["name"], a["expr"]))
# Every query must parse as PromQL: promtool checks them as recording rules (the Grafana
# variables replaced by what they expand to).
rules = []
for i, (title, e) in enumerate(exprs):
    e = e.replace("$__rate_interval", "1m").replace("$instance", ".*")
    if "$" in e:
        fail(f"{title!r}: unexpanded variable in {e}")
    rules.append({"record": f"dashboard:query_{i}", "expr": e})
open(f"{work}/dashboard-queries.yaml", "w").write(yaml.safe_dump({"groups": [{"name": "dashboard", "rules": rules}]}))
print(f"NOTE: {len(ids)} panels, {len(exprs)} queries")
PY
  promtool check rules "$WORK/dashboard-queries.yaml" >/dev/null
}
check "dashboard structure, provisioning, PromQL of every query" dashboard_structure

metric_names() {
  py <<'PY'
import os, sys
exec(os.environ["PYLIB"])
allowed = set(os.environ["CHECK_METRICS"].split())
histograms = set(os.environ["CHECK_HISTOGRAMS"].split())
files = ["deploy/prometheus/rules.yaml", "deploy/prometheus/rules_test.yaml", "deploy/grafana/dashboard.json"]
used, bad = {}, []
for f in files:
    for name in re.findall(r"\brade_[a-z0-9_]+", open(f).read()):
        base = name
        for suffix in ("_bucket", "_sum", "_count"):
            if name.endswith(suffix) and name[: -len(suffix)] in histograms:
                base = name[: -len(suffix)]
        if base not in allowed:
            bad.append(f"{f}: {name}")
        used.setdefault(base, set()).add(f)
if bad:
    fail("not a rade metric:\n  " + "\n  ".join(sorted(set(bad))))
dash = {m for m, fs in used.items() if "deploy/grafana/dashboard.json" in fs}
missing = sorted(allowed - dash)
if missing:
    fail(f"listed metrics without a dashboard panel: {missing}")
# Information only: which listed metrics the telemetry crate does not register yet (their
# panels show "No data" until then).
src = "crates/rade-telemetry/src/lib.rs"
if os.path.exists(src):
    text = open(src).read()
    pending = sorted(m for m in allowed if f'"{m[len("rade_"):]}"' not in text)
    if pending:
        print(f"NOTE: {len(allowed)} metrics; not registered yet by rade-telemetry: {', '.join(pending)}")
        sys.exit(0)
print(f"NOTE: {len(allowed)} metrics, all on the dashboard")
PY
}
check "metric names in rules and dashboard are rade's" metric_names

# ---- Kubernetes ---------------------------------------------------------------------------
CORE_MANIFESTS=(configmap.yaml deployment.yaml service.yaml pdb.yaml prometheus-scrape.yaml)
for m in "${CORE_MANIFESTS[@]}"; do
  check "kubernetes-validate --strict -k $K8S_VERSION k8s/$m" \
    "$VENV/bin/kubernetes-validate" --strict --quiet --kubernetes-version "$K8S_VERSION" "deploy/k8s/$m"
done

keda_resources() {
  py <<'PY'
import os
exec(os.environ["PYLIB"])
docs = load_yaml("deploy/k8s/keda-scaledobject.yaml")
by_kind = {d.get("kind"): d for d in docs}
if sorted(by_kind) != ["ScaledObject", "TriggerAuthentication"] or len(docs) != 2:
    fail(f"expected one ScaledObject and one TriggerAuthentication, got {[d.get('kind') for d in docs]}")
for d in docs:
    if d.get("apiVersion") != "keda.sh/v1alpha1":
        fail(f"{d['kind']}: apiVersion {d.get('apiVersion')}")
    if not d.get("metadata", {}).get("name"):
        fail(f"{d['kind']}: no metadata.name")
    if "namespace" in d["metadata"]:
        fail(f"{d['kind']}: manifests are namespace-agnostic")
ta = by_kind["TriggerAuthentication"]
refs = ta["spec"].get("secretTargetRef") or fail("TriggerAuthentication without secretTargetRef")
params = {}
for r in refs:
    if set(r) != {"parameter", "name", "key"}:
        fail(f"secretTargetRef entries need parameter, name and key: {r}")
    params[r["parameter"]] = r
for needed in ("sasl", "username", "password"):
    if needed not in params:
        fail(f"TriggerAuthentication has no {needed}")
unknown = set(params) - {"sasl", "username", "password", "tls", "ca", "cert", "key", "keyPassword", "unsafeSsl"}
if unknown:
    fail(f"not kafka scaler auth parameters: {sorted(unknown)}")
so = by_kind["ScaledObject"]["spec"]
(dep,) = load_yaml("deploy/k8s/deployment.yaml")
if so["scaleTargetRef"].get("name") != dep["metadata"]["name"]:
    fail("scaleTargetRef does not name the Deployment")
lo, hi = so.get("minReplicaCount"), so.get("maxReplicaCount")
if not (isinstance(lo, int) and isinstance(hi, int) and 1 <= lo <= hi):
    fail(f"replica bounds {lo}..{hi}")
(trigger,) = so["triggers"]
if trigger.get("type") != "kafka":
    fail("the trigger is not the kafka scaler")
meta = trigger["metadata"]
for key in ("bootstrapServers", "consumerGroup", "lagThreshold"):
    if key not in meta:
        fail(f"kafka trigger without {key}")
for key, value in meta.items():
    if not isinstance(value, str):
        fail(f"trigger metadata values are strings in KEDA: {key} = {value!r}")
int(meta["lagThreshold"])
if trigger.get("authenticationRef", {}).get("name") != ta["metadata"]["name"]:
    fail("the trigger does not reference the TriggerAuthentication")
(cm,) = load_yaml("deploy/k8s/configmap.yaml")
conf = tomllib.loads(cm["data"]["rade.toml"])
if meta["consumerGroup"] != conf["kafka"]["group_id"]:
    fail(f"KEDA watches group {meta['consumerGroup']}, the workers join {conf['kafka']['group_id']}")
if meta["bootstrapServers"] != conf["kafka"]["bootstrap_servers"]:
    fail("KEDA and the workers use different bootstrap servers")
secrets = {e["valueFrom"]["secretKeyRef"]["name"] for c in dep["spec"]["template"]["spec"]["containers"]
           for e in c.get("env", []) if "secretKeyRef" in e.get("valueFrom", {})}
if not {r["name"] for r in refs} <= secrets:
    fail(f"TriggerAuthentication reads {sorted({r['name'] for r in refs})}, the Deployment {sorted(secrets)}")
print(f"NOTE: {lo}..{hi} replicas, lagThreshold {meta['lagThreshold']}, group {meta['consumerGroup']}")
PY
}
check "KEDA ScaledObject + TriggerAuthentication (required fields)" keda_resources

worker_wiring() {
  py <<'PY'
import os
exec(os.environ["PYLIB"])
(cm,) = load_yaml("deploy/k8s/configmap.yaml")
conf, problems = config_problems(cm["data"]["rade.toml"], "k8s/configmap.yaml rade.toml")
if problems:
    fail("\n".join(problems))
if conf.get("telemetry", {}).get("listen") != "0.0.0.0:9898":
    fail("telemetry.listen must be 0.0.0.0:9898")
if not conf["lake"]["url"].startswith("s3://"):
    fail("lake.url is not s3://")
props = conf["kafka"]["properties"]
if props.get("sasl.password") != "env:RADE_KAFKA_PASSWORD":
    fail('kafka.properties sasl.password must be "env:RADE_KAFKA_PASSWORD"')
(dep,) = load_yaml("deploy/k8s/deployment.yaml")
pod = dep["spec"]["template"]["spec"]
(c,) = pod["containers"]
env = {e["name"]: e for e in c.get("env", [])}
for name in ("RADE_KAFKA_PASSWORD", "AWS_ACCESS_KEY_ID", "AWS_SECRET_ACCESS_KEY"):
    if "secretKeyRef" not in env.get(name, {}).get("valueFrom", {}):
        fail(f"{name} is not read from a Secret")
# Every env: reference of the config must be set in the container.
for key, value in props.items():
    if value.startswith("env:") and value[4:] not in env:
        fail(f"kafka.properties {key} reads {value[4:]}, which the container does not set")
if pod["terminationGracePeriodSeconds"] <= duration_s(conf["worker"]["shutdown_timeout"]):
    fail("terminationGracePeriodSeconds must exceed worker.shutdown_timeout")
ports = {p["name"]: p["containerPort"] for p in c["ports"]}
if ports.get("metrics") != 9898:
    fail("container port metrics must be 9898")
if c["livenessProbe"]["httpGet"]["path"] != "/healthz" or c["readinessProbe"]["httpGet"]["path"] != "/readyz":
    fail("liveness must probe /healthz, readiness /readyz")
for probe in ("livenessProbe", "readinessProbe", "startupProbe"):
    if c[probe]["httpGet"]["port"] not in ("metrics", 9898):
        fail(f"{probe} is not on the metrics port")
sc, psc = c["securityContext"], pod["securityContext"]
if not (sc["readOnlyRootFilesystem"] and psc["runAsNonRoot"] and psc["runAsUser"] == 10001):
    fail("not non-root uid 10001 with a read-only root filesystem")
ann = dep["spec"]["template"]["metadata"]["annotations"]
if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != "9898":
    fail("pod annotations prometheus.io/scrape and /port")
mount = {m["mountPath"]: m for m in c["volumeMounts"]}
if mount.get("/etc/rade/rade.toml", {}).get("subPath") != "rade.toml":
    fail("rade.toml is not mounted at /etc/rade/rade.toml (the image's CMD)")
if c["args"][-1] != "/etc/rade/rade.toml":
    fail("the container does not run with /etc/rade/rade.toml")
labels = dep["spec"]["selector"]["matchLabels"]
for f in ("service.yaml", "pdb.yaml"):
    (d,) = load_yaml(f"deploy/k8s/{f}")
    sel = d["spec"]["selector"].get("matchLabels", d["spec"]["selector"])
    if sel != labels:
        fail(f"{f} selects {sel}, the pods carry {labels}")
(kz,) = load_yaml("deploy/k8s/kustomization.yaml")
listed = set(kz["resources"])
present = {f for f in os.listdir("deploy/k8s") if f.endswith(".yaml") and f != "kustomization.yaml"}
if listed != present:
    fail(f"kustomization resources {sorted(listed)} != files {sorted(present)}")
for doc in (f for f in present):
    for d in load_yaml(f"deploy/k8s/{doc}"):
        if "namespace" in d.get("metadata", {}):
            fail(f"{doc}: manifests are namespace-agnostic")
PY
}
check "k8s wiring: config keys, secrets, probes, ports, selectors" worker_wiring

if command -v kustomize >/dev/null; then
  check "kustomize build deploy/k8s" kustomize build deploy/k8s -o "$WORK/kustomized.yaml"
elif command -v kubectl >/dev/null; then
  check "kubectl kustomize deploy/k8s" kubectl kustomize deploy/k8s -o "$WORK/kustomized.yaml"
else
  skip "kustomize build deploy/k8s" "neither kustomize nor kubectl installed"
fi

# ---- compose, image, configuration ----------------------------------------------------------
compose_file() {
  py <<'PY'
import os
exec(os.environ["PYLIB"])
(c,) = load_yaml("deploy/compose.yaml")
services = c["services"]
for name, s in services.items():
    image = s.get("image", "")
    if not image and "build" not in s:
        fail(f"{name}: neither image nor build")
    if image.endswith(":latest") or (image and ":" not in image):
        fail(f"{name}: image {image} is not pinned")
    if "build" in s:
        b = s["build"]
        if not os.path.exists(os.path.join("deploy", b["context"], b["dockerfile"])):
            fail(f"{name}: no {b['dockerfile']} in the build context")
    for dep in s.get("depends_on", {}):
        if dep not in services:
            fail(f"{name} depends on unknown service {dep}")
    for v in s.get("volumes", []):
        src = v.split(":")[0]
        if src.startswith("."):
            if not os.path.exists(os.path.join("deploy", src)):
                fail(f"{name}: mounts {src}, which does not exist")
        elif src not in (c.get("volumes") or {}):
            fail(f"{name}: named volume {src} is not declared")
    for port in s.get("ports", []):
        if not str(port).startswith("127.0.0.1:"):
            fail(f"{name}: port {port} is published beyond 127.0.0.1")
if services["kafka"]["image"] != "apache/kafka:4.1.0":
    fail("the broker is apache/kafka:4.1.0")
workers = [n for n, s in services.items() if s.get("command") is None and s.get("image") == "rade:dev"]
if len(workers) < 2:
    fail(f"expected at least two rade workers, found {workers}")
known = known_config_keys()
groups = set()
for w in workers:
    env = services[w]["environment"]
    for k in env:
        if k.startswith("RADE__"):
            key = ".".join(k[len("RADE__"):].lower().split("__"))
            if key not in known:
                fail(f"{w}: {k} overrides no rade.toml key ({key})")
    groups.add(env.get("RADE__KAFKA__GROUP_ID"))
    if env.get("RADE__TELEMETRY__LISTEN", "0.0.0.0:9898").split(":")[-1] != "9898":
        fail(f"{w}: metrics not on 9898")
if len(groups) != 1:
    fail(f"the workers are not in one group: {groups}")
# The raw topics the init job creates: one per kind of the catalog.
with open("schemas/catalog.toml", "rb") as f:
    kinds = {s["kind"] for s in tomllib.load(f)["schema"] if s["kind"] != "alert"}
script = " ".join(services["kafka-init"]["command"])
created = set(re.findall(r"tpm\.raw\.([a-z_]+)", script))
if created != kinds:
    fail(f"kafka-init creates {sorted(created)}, the catalog has {sorted(kinds)}")
prom = yaml.safe_load(open("deploy/prometheus/prometheus.yml"))
(job,) = [j for j in prom["scrape_configs"] if j["job_name"] == "rade"]
targets = {t for sc in job["static_configs"] for t in sc["targets"]}
if targets != {f"{w}:9898" for w in workers}:
    fail(f"prometheus.yml scrapes {sorted(targets)}, the workers are {workers}")
print(f"NOTE: {len(services)} services, {len(kinds)} raw topics")
PY
}
check "compose.yaml: services, mounts, RADE__ overrides, topics" compose_file

containerfile() {
  py <<'PY'
import os
exec(os.environ["PYLIB"])
text = open("deploy/Containerfile").read()
lines = [l for l in text.replace("\\\n", " ").splitlines() if l.strip() and not l.lstrip().startswith("#")]
instr = [(l.split()[0].upper(), l.split(None, 1)[1] if len(l.split()) > 1 else "") for l in lines]
froms = [a for i, a in instr if i == "FROM"]
if not (froms[0].startswith("rust:1.95-bookworm") and froms[-1].startswith("debian:bookworm-slim")):
    fail(f"stages {froms}")
runs = " ".join(a for i, a in instr if i == "RUN")
for needed in ("cargo build --release --locked -p rade", "cmake", "libcurl4-openssl-dev", "libssl-dev",
               "pkg-config", "ca-certificates", "libcurl4 ", "libssl3", "--uid 10001"):
    if needed not in runs:
        fail(f"no `{needed}` in the RUN steps")
final = dict(instr[[i for i, (k, _) in enumerate(instr) if k == "FROM"][-1]:])
expect = {"USER": "10001:10001", "EXPOSE": "9898", "ENTRYPOINT": '["rade"]',
          "CMD": '["run", "--config", "/etc/rade/rade.toml"]'}
for k, v in expect.items():
    if final.get(k, "").strip() != v:
        fail(f"{k} is {final.get(k)!r}, expected {v!r}")
for i, a in instr:
    if i == "COPY" and "--from=" not in a:
        *sources, _ = a.split()
        for s in sources:
            if not os.path.exists(s.rstrip("/")):
                fail(f"COPY source {s} does not exist in the repository root")
for needed in ("/etc/rade/schemas", "/etc/rade/rules", "/usr/local/bin/rade", "/etc/rade/rade.toml"):
    if needed not in text:
        fail(f"the image has no {needed}")
PY
}
check "Containerfile: stages, packages, user, entrypoint, COPY sources" containerfile

image_config() {
  py <<'PY'
import os
exec(os.environ["PYLIB"])
conf, problems = config_problems(open("deploy/rade.toml").read(), "deploy/rade.toml")
if problems:
    fail("\n".join(problems))
if conf["telemetry"]["listen"] != "0.0.0.0:9898" or conf["schemas"]["dir"] != "/etc/rade/schemas":
    fail("the image config must listen on 0.0.0.0:9898 and read /etc/rade/schemas")
PY
}
check "deploy/rade.toml (image default config) keys" image_config

if [[ -n "${RADE_BIN:-}" ]]; then
  rade_check() {
    local cm="$WORK/configmap-rade.toml"
    py "$cm" <<'PY' || return 1
import os, sys
exec(os.environ["PYLIB"])
(cm,) = load_yaml("deploy/k8s/configmap.yaml")
open(sys.argv[1], "w").write(cm["data"]["rade.toml"])
PY
    RADE__SCHEMAS__DIR=schemas RADE__WINDOWS__RULES_DIR=rules "$RADE_BIN" check --offline --config deploy/rade.toml || return 1
    RADE__SCHEMAS__DIR=schemas RADE__WINDOWS__RULES_DIR=rules RADE_KAFKA_USERNAME=check RADE_KAFKA_PASSWORD=check \
      "$RADE_BIN" check --offline --config "$cm" || return 1
    # The compose workers: the image config under their RADE__ overrides.
    local overrides
    overrides="$(py <<'PY'
import os
exec(os.environ["PYLIB"])
(c,) = load_yaml("deploy/compose.yaml")
env = c["services"]["rade-1"]["environment"]
print(" ".join(f"{k}={v}" for k, v in env.items() if k.startswith("RADE__")))
PY
)" || return 1
    # shellcheck disable=SC2086 # the overrides are KEY=value words without spaces
    env $overrides RADE__SCHEMAS__DIR=schemas RADE__WINDOWS__RULES_DIR=rules "$RADE_BIN" check --offline --config deploy/rade.toml
  }
  check "rade check --offline (image, compose and ConfigMap configs)" rade_check
else
  skip "rade check --offline (image, compose and ConfigMap configs)" "set RADE_BIN to a built rade"
fi

total="$(elapsed "$started")"
if [[ $failures -gt 0 ]]; then
  echo "deploy/check.sh: $failures check(s) failed in ${total}s"
  exit 1
fi
echo "deploy/check.sh: all checks passed in ${total}s"
