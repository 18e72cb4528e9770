#!/usr/bin/env python3
"""Renders every kustomization under deploy/ and checks what comes out; exits 1 on any finding.

* deploy/k8s/overlays/* and deploy/chaos/* are rendered with `kubectl kustomize`.
* Kubernetes objects: `kubernetes-validate --strict` (unknown fields are errors) against the
  Kubernetes API schemas, and any line it prints that is not a pass counts as a failure (so
  a warning fails too).
* Chaos Mesh objects (chaos-mesh.org/v1alpha1 NetworkChaos and Schedule): the JSON schema in
  deploy/chaos/schema/ (written from Chaos Mesh's API types; sources in the schema), then the
  checks Chaos Mesh's admission webhooks make beyond it (Go durations, rate units, the cron
  expression, a direction of from/both needs a target, mode values), and that every pod they
  name exists in the same rendering (the StatefulSet's replicas and namespace).
* Pod templates: what the "restricted" Pod Security Standard asks (non-root, no privilege
  escalation, all capabilities dropped, RuntimeDefault seccomp), plus a read-only root,
  requests and limits, and (for the peers) readiness and liveness probes on /healthz.
* The API's access control: the peers take VECINO_API_TOKEN and VECINO_API_READ_TOKEN from a
  Secret of the same rendering that has those keys, the traffic Job sends the peers' write
  token, and VECINO_API_NAMES holds the pods' stable names (<pod>.<service>) that the Job
  dials. With VECINO_BIN (a `vecino` binary; deploy/ci.sh sets it) the peers' settings as
  pod 0 gets them (its env expanded, the ConfigMap's vecino.toml) must pass
  `vecino run --check-config` with random tokens, and fail on the Secret's placeholders
  (while it holds them).

    python3 deploy/validate.py            # needs kubectl (kustomize), kubernetes-validate
"""

import base64
import json
import os
import pathlib
import re
import secrets
import subprocess
import sys
import tempfile

import jsonschema
import yaml

DEPLOY = pathlib.Path(__file__).resolve().parent
SCHEMA = DEPLOY / "chaos" / "schema" / "chaos-mesh-v1alpha1.schema.json"
KUSTOMIZATIONS = sorted(
    [p.parent for p in (DEPLOY / "k8s" / "overlays").glob("*/kustomization.yaml")]
    + [p.parent for p in (DEPLOY / "chaos").glob("*/kustomization.yaml")]
)
# Go's time.ParseDuration (common_webhook.go Duration.Validate).
GO_DURATION = re.compile(r"^([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h)(([0-9]+(\.[0-9]*)?|\.[0-9]+)(ns|us|µs|ms|s|m|h))*$")
RATE = re.compile(r"^\s*[0-9]+\s*(kbit|mbit|gbit|tbit|tbps|gbps|mbps|kbps|bps|bit)\s*$", re.I)
CRON_FIELD = re.compile(r"^(\*|\?|[0-9A-Za-z,\-*/]+)$")
DESCRIPTORS = {"@yearly", "@annually", "@monthly", "@weekly", "@daily", "@midnight", "@hourly"}

findings = []


def find(where, msg):
    findings.append(f"{where}: {msg}")


def render(path):
    out = subprocess.run(
        ["kubectl", "kustomize", str(path)], capture_output=True, text=True, timeout=120
    )
    if out.returncode != 0:
        find(path.relative_to(DEPLOY), f"kubectl kustomize failed: {out.stderr.strip()}")
        return []
    return [d for d in yaml.safe_load_all(out.stdout) if d]


def kubernetes_validate(where, docs):
    with tempfile.NamedTemporaryFile("w", suffix=".yaml") as f:
        yaml.safe_dump_all(docs, f)
        f.flush()
        out = subprocess.run(
            ["kubernetes-validate", "--strict", f.name],
            capture_output=True,
            text=True,
            timeout=300,
        )
    lines = [l for l in (out.stdout + out.stderr).splitlines() if l.strip()]
    passed = [l for l in lines if l.startswith("INFO ") and " passed for resource " in l]
    for l in lines:
        if l not in passed:
            find(where, f"kubernetes-validate: {l.replace(f.name, '<rendered>')}")
    if out.returncode != 0 and not findings:
        find(where, f"kubernetes-validate exited {out.returncode}")
    if len(passed) != len(docs):
        find(where, f"kubernetes-validate passed {len(passed)} of {len(docs)} objects")
    return len(passed)


def cron_ok(expr):
    """robfig/cron with SecondOptional | Minute | Hour | Dom | Month | Dow | Descriptor."""
    e = expr.strip()
    if e.startswith("@every "):
        return bool(GO_DURATION.match(e[len("@every "):].strip()))
    if e.startswith("@"):
        return e in DESCRIPTORS
    fields = e.split()
    return len(fields) in (5, 6) and all(CRON_FIELD.match(f) for f in fields)


def selector_pods(sel, namespace_of):
    """The (namespace, pod) pairs a selector names explicitly."""
    for ns, pods in (sel.get("pods") or {}).items():
        for p in pods:
            yield ns, p


def check_network_chaos(where, spec, pods):
    for key in ("duration",):
        if key in spec and not GO_DURATION.match(spec[key]):
            find(where, f"{key} {spec[key]!r} is not a Go duration")
    if "bandwidth" in spec and not RATE.match(spec["bandwidth"]["rate"]):
        find(where, f"bandwidth.rate {spec['bandwidth']['rate']!r} has no valid unit")
    for d in ("latency", "jitter"):
        v = (spec.get("delay") or {}).get(d)
        if v is not None and not GO_DURATION.match(v):
            find(where, f"delay.{d} {v!r} is not a Go duration")
    direction = spec.get("direction", "to")
    if spec["action"] != "partition" and direction in ("from", "both") and "target" not in spec:
        find(where, f"direction {direction} needs a target for action {spec['action']}")
    if spec["action"] == "partition" and direction in ("from", "both") and not (
        spec.get("target") or spec.get("externalTargets")
    ):
        find(where, f"partition with direction {direction} needs a target or externalTargets")
    for sel in [spec] + ([spec["target"]] if "target" in spec else []):
        mode, value = sel["mode"], sel.get("value", "")
        if mode == "fixed" and not value.isdigit():
            find(where, f"mode fixed needs an integer value, not {value!r}")
        if mode in ("fixed-percent", "random-max-percent") and not (
            value.isdigit() and 0 <= int(value) <= 100
        ):
            find(where, f"mode {mode} needs a value from 0 to 100, not {value!r}")
        for ns, pod in selector_pods(sel["selector"], None):
            if (ns, pod) not in pods:
                find(where, f"selects pod {ns}/{pod}, which this rendering does not make")
        for ns in sel["selector"].get("namespaces", []):
            if not any(n == ns for n, _ in pods):
                find(where, f"selects namespace {ns}, where this rendering makes no peer")


def check_chaos(where, doc, schema, pods):
    kind = doc.get("kind")
    if kind not in ("NetworkChaos", "Schedule"):
        find(where, f"{kind} is not described by {SCHEMA.name}")
        return
    # Validated against the kind's definition, for errors that name the field.
    one = {"$schema": schema["$schema"], "$defs": schema["$defs"], "$ref": f"#/$defs/{kind}"}
    validator = jsonschema.Draft202012Validator(one)
    errors = sorted(validator.iter_errors(doc), key=lambda e: list(e.path))
    for e in errors:
        path = "/".join(str(p) for p in e.path)
        find(where, f"schema: {path or '(top)'}: {e.message}")
    if errors:
        return
    spec = doc["spec"]
    if doc["kind"] == "NetworkChaos":
        check_network_chaos(where, spec, pods)
    else:
        if not cron_ok(spec["schedule"]):
            find(where, f"schedule {spec['schedule']!r} is not a cron expression")
        check_network_chaos(where, spec["networkChaos"], pods)


def pod_templates(doc):
    kind = doc.get("kind")
    if kind in ("StatefulSet", "Deployment", "DaemonSet", "ReplicaSet"):
        yield doc["spec"]["template"]["spec"]
    elif kind == "Job":
        yield doc["spec"]["template"]["spec"]
    elif kind == "CronJob":
        yield doc["spec"]["jobTemplate"]["spec"]["template"]["spec"]
    elif kind == "Pod":
        yield doc["spec"]


def check_pod(where, spec, peer):
    psc = spec.get("securityContext") or {}
    if (psc.get("seccompProfile") or {}).get("type") != "RuntimeDefault":
        find(where, "pod securityContext.seccompProfile.type is not RuntimeDefault")
    for c in spec.get("initContainers", []) + spec["containers"]:
        w = f"{where} container {c['name']}"
        sc = c.get("securityContext") or {}
        if not (sc.get("runAsNonRoot") or psc.get("runAsNonRoot")):
            find(w, "runAsNonRoot is not set")
        if sc.get("allowPrivilegeEscalation") is not False:
            find(w, "allowPrivilegeEscalation is not false")
        if "ALL" not in ((sc.get("capabilities") or {}).get("drop") or []):
            find(w, "capabilities.drop does not hold ALL")
        if sc.get("readOnlyRootFilesystem") is not True:
            find(w, "readOnlyRootFilesystem is not true")
        res = c.get("resources") or {}
        for k in ("requests", "limits"):
            if not {"cpu", "memory"} <= set(res.get(k) or {}):
                find(w, f"resources.{k} lacks cpu or memory")
        if peer:
            for probe in ("readinessProbe", "livenessProbe"):
                path = ((c.get(probe) or {}).get("httpGet") or {}).get("path")
                if path != "/healthz":
                    find(w, f"{probe} is not an HTTP GET of /healthz")


def expand(value, env):
    """Kubernetes' $(VAR) references to variables defined before (others stay as written)."""
    return re.sub(r"\$\(([A-Za-z_][A-Za-z0-9_]*)\)", lambda m: env.get(m.group(1), m.group(0)), value)


def check_api_access(where, docs):
    peers = [d for d in docs if d.get("kind") == "StatefulSet" and d["metadata"]["name"] == "vecino"]
    if not peers:
        return
    sts = peers[0]
    ns = sts["metadata"].get("namespace", "default")
    container = next(c for c in sts["spec"]["template"]["spec"]["containers"] if c["name"] == "vecino")
    env = {e["name"]: e for e in container.get("env", [])}
    secrets_ = {
        d["metadata"]["name"]: {k: base64.b64decode(v).decode() for k, v in (d.get("data") or {}).items()}
        for d in docs
        if d.get("kind") == "Secret"
    }

    def from_secret(w, e, name):
        ref = ((e.get(name) or {}).get("valueFrom") or {}).get("secretKeyRef")
        if not ref:
            find(w, f"{name} does not come from a Secret")
            return None
        if ref.get("optional"):
            find(w, f"{name}: its Secret is optional (the peers would each make their own token)")
        if ref["name"] not in secrets_ or ref["key"] not in secrets_[ref["name"]]:
            find(w, f"{name}: no Secret {ref['name']} with key {ref['key']} in this rendering")
            return None
        return ref["name"], ref["key"]

    w = f"{where} StatefulSet/vecino"
    write = from_secret(w, env, "VECINO_API_TOKEN")
    read = from_secret(w, env, "VECINO_API_READ_TOKEN")
    if write and write == read:
        find(w, "the write and read tokens are the same Secret key")
    service = sts["spec"]["serviceName"]
    names = (env.get("VECINO_API_NAMES") or {}).get("value", "").split(",")
    if f"$(POD_NAME).{service}" not in names:
        find(w, f"VECINO_API_NAMES lacks $(POD_NAME).{service}, the name the traffic Job dials")
    for job in (d for d in docs if d.get("kind") == "Job"):
        jw = f"{where} Job/{job['metadata']['name']}"
        for c in job["spec"]["template"]["spec"]["containers"]:
            jenv = {e["name"]: e for e in c.get("env", [])}
            if from_secret(jw, jenv, "VECINO_API_TOKEN") != write:
                find(jw, "VECINO_API_TOKEN is not the peers' write token")
            if "SERVICE" in jenv and jenv["SERVICE"].get("value") != service:
                find(jw, f"SERVICE is not {service}")

    binary = os.environ.get("VECINO_BIN")
    if not (binary and write and read):
        return
    # The settings of pod 0, as the kubelet would expand them.
    pod = {"POD_NAME": f"{sts['metadata']['name']}-0", "POD_IP": "10.0.0.5", "POD_NAMESPACE": ns}
    run_env = {"PATH": os.environ.get("PATH", "")}
    for e in container.get("env", []):
        src = e.get("valueFrom") or {}
        if "fieldRef" in src:
            field = src["fieldRef"]["fieldPath"]
            value = {"metadata.name": pod["POD_NAME"], "status.podIP": pod["POD_IP"],
                     "metadata.namespace": pod["POD_NAMESPACE"]}.get(field)
            if value is None:
                find(w, f"{e['name']}: fieldRef {field} not known to this check")
                continue
        elif "secretKeyRef" in src:
            ref = src["secretKeyRef"]
            value = secrets_[ref["name"]][ref["key"]]
        else:
            value = expand(e.get("value", ""), run_env)
        run_env[e["name"]] = value
    toml = next(
        (d["data"]["vecino.toml"] for d in docs if d.get("kind") == "ConfigMap" and "vecino.toml" in (d.get("data") or {})),
        None,
    )
    with tempfile.TemporaryDirectory() as tmp:
        conf = pathlib.Path(tmp, "vecino.toml")
        conf.write_text(toml or "")
        run_env["VECINO_DATA_DIR"] = tmp
        cmd = [binary, "run", "--config", str(conf), "--check-config"]
        # As rendered: the placeholders (refused), or tokens from deploy/k8s/tokens.sh.
        as_given = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=60)
        placeholder = any(" " in secrets_[r[0]][r[1]] for r in (write, read))
        if placeholder and (as_given.returncode == 0 or "invalid setting `api_" not in as_given.stderr):
            find(w, f"the Secret's placeholder tokens are not refused by vecino: {as_given.stderr.strip()}")
        run_env["VECINO_API_TOKEN"] = secrets.token_hex(32)
        run_env["VECINO_API_READ_TOKEN"] = secrets.token_hex(32)
        ok = subprocess.run(cmd, env=run_env, capture_output=True, text=True, timeout=60)
        if ok.returncode != 0:
            find(w, f"pod 0's settings fail vecino run --check-config: {ok.stderr.strip()}")
            return
        want = f'"{pod["POD_NAME"]}.{service}"'
        line = next((l for l in ok.stdout.splitlines() if l.startswith("api_names = ")), "")
        if want not in line:
            find(w, f"pod 0's resolved api_names lack {want}: {line}")


def main():
    schema = json.loads(SCHEMA.read_text())
    jsonschema.Draft202012Validator.check_schema(schema)
    if not KUSTOMIZATIONS:
        print("no kustomization found", file=sys.stderr)
        return 1
    for path in KUSTOMIZATIONS:
        where = str(path.relative_to(DEPLOY))
        before = len(findings)
        docs = render(path)
        if not docs:
            find(where, "rendered nothing")
            continue
        pods = set()
        for d in docs:
            if d.get("kind") == "StatefulSet":
                ns = d["metadata"].get("namespace", "default")
                for i in range(d["spec"].get("replicas", 1)):
                    pods.add((ns, f"{d['metadata']['name']}-{i}"))
        chaos = [d for d in docs if str(d.get("apiVersion", "")).startswith("chaos-mesh.org/")]
        native = [d for d in docs if d not in chaos]
        passed = kubernetes_validate(where, native)
        for d in chaos:
            check_chaos(f"{where} {d['kind']}/{d['metadata']['name']}", d, schema, pods)
        for d in native:
            peer = d.get("kind") == "StatefulSet" and d["metadata"]["name"] == "vecino"
            for spec in pod_templates(d):
                check_pod(f"{where} {d['kind']}/{d['metadata']['name']}", spec, peer)
        check_api_access(where, native)
        status = "ok" if len(findings) == before else "FAILED"
        print(
            f"{where}: {len(docs)} objects; kubernetes-validate --strict passed {passed} of "
            f"{len(native)}; {len(chaos)} Chaos Mesh objects checked; {status}"
        )
    for f in findings:
        print(f"FAIL {f}", file=sys.stderr)
    if findings:
        return 1
    print(f"{len(KUSTOMIZATIONS)} kustomizations render and validate, no warnings")
    return 0


if __name__ == "__main__":
    sys.exit(main())
