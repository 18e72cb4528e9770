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

    python3 deploy/validate.py            # needs kubectl (kustomize), kubernetes-validate
"""

import json
import pathlib
import re
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
