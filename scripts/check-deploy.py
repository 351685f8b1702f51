#!/usr/bin/env python3
"""Structural checks of Steward's deployment material, run by scripts/check-deploy.

The tools (kubectl kustomize, kubernetes-validate, checkov, hadolint) check each file on its
own terms; these checks tie the files to each other and to the code:

  dockerfile  deploy/Dockerfile: stages, COPY sources, USER, ENTRYPOINT, build inputs not
              excluded by .dockerignore
  compose     deploy/compose.yaml: the Compose Specification schema (vendored), plus one
              container per Steward service, healthchecks, depends_on, mounted files
  config      the config files Steward reads in compose and on Kubernetes: valid against
              shared/config/config.schema.json
  k8s         rendered overlays: one Deployment per service with `run <service>`, the
              watcher/safe/archiver replica rules, HPAs, probes, security context, Secrets
              and ConfigMaps, NetworkPolicies, PDBs, CRDs without a bundled schema
  split       writes each rendered document to its own file for kubernetes-validate,
              leaving out the CRD kinds checked here instead

Usage: check-deploy.py <check> [args]; exits 1 with one line per problem.
"""

from __future__ import annotations

import fnmatch
import hashlib
import json
import os
import re
import sys
from pathlib import Path

import jsonschema
import yaml

ROOT = Path(__file__).resolve().parent.parent

# The services the binary can run: parsed from the code, so a service added there without
# a Deployment and a compose container fails here.
APP_RS = ROOT / "services/steward/src/app.rs"

COMPOSE_SCHEMA = ROOT / "deploy/schemas/compose-spec.json"
COMPOSE_SCHEMA_SHA256 = "46b7d35f19dd93a05f8fea530291bf84d881c1791ec167ecf0e6fb94e639d496"
CONFIG_SCHEMA = ROOT / "shared/config/config.schema.json"

# Services that keep per-instance state or a single writer: never autoscaled.
NO_HPA = {"watcher", "safe", "archiver", "notifier", "risk", "runner"}
# Stateless services: autoscaled.
HPA = {"api", "rebalancer"}
# Secrets the prod overlay expects to exist (created out of band).
EXTERNAL_SECRETS = {"steward-secrets", "steward-rpc", "steward-relayer"}
# Kinds whose schema kubernetes-validate does not bundle: checked structurally here.
CRD_KINDS = {("monitoring.coreos.com/v1", "ServiceMonitor")}

problems: list[str] = []


def fail(msg: str) -> None:
    problems.append(msg)


def finish(what: str) -> None:
    if problems:
        for p in problems:
            print(f"FAIL {what}: {p}")
        sys.exit(1)
    print(f"ok   {what}")


def steward_services() -> list[str]:
    text = APP_RS.read_text()
    block = text[text.index("pub const SERVICES") :]
    block = block[: block.index("];")]
    names = re.findall(r'\(\s*"([a-z]+)"\s*,', block)
    if not names:
        raise SystemExit(f"cannot find the service list in {APP_RS}")
    return names


# ------------------------------------------------------------------------------ Dockerfile


def dockerignore_patterns() -> list[str]:
    path = ROOT / ".dockerignore"
    if not path.exists():
        return []
    pats = []
    for line in path.read_text().splitlines():
        line = line.strip()
        if line and not line.startswith("#"):
            pats.append(line.rstrip("/"))
    return pats


def ignored(rel: str, pats: list[str]) -> bool:
    """Whether .dockerignore excludes `rel` (a path relative to the context), approximately
    as Docker does: a pattern matches the path or one of its parent directories; `**`
    matches any number of directories; `!` re-includes."""
    parts = rel.split("/")
    result = False
    for pat in pats:
        neg = pat.startswith("!")
        p = pat[1:] if neg else pat
        for i in range(1, len(parts) + 1):
            prefix = "/".join(parts[:i])
            cands = [p]
            if p.startswith("**/"):
                cands.append(p[3:])
            if any(fnmatch.fnmatchcase(prefix, c) for c in cands):
                result = not neg
                break
    return result


def check_dockerfile() -> None:
    path = ROOT / "deploy/Dockerfile"
    lines: list[str] = []
    buf = ""
    for raw in path.read_text().splitlines():
        s = raw.strip()
        if not s or s.startswith("#"):
            continue
        if s.endswith("\\"):
            buf += s[:-1] + " "
            continue
        lines.append(buf + s)
        buf = ""
    stages: list[dict] = []
    for line in lines:
        instr, _, rest = line.partition(" ")
        instr = instr.upper()
        if instr == "FROM":
            m = re.match(r"(?:--platform=\S+\s+)?(\S+)(?:\s+AS\s+(\S+))?", rest, re.I)
            image, name = m.group(1), (m.group(2) or "").lower()
            stages.append({"image": image, "name": name, "instrs": []})
        elif stages:
            stages[-1]["instrs"].append((instr, rest))
    names = [s["name"] for s in stages]
    for want in ("planner", "builder", "debug", "runtime"):
        if want not in names:
            fail(f"deploy/Dockerfile: no stage `{want}`")
    if names and names[-1] != "runtime":
        fail("deploy/Dockerfile: the last (default) stage must be `runtime`")
    for i, st in enumerate(stages):
        base = st["image"]
        if base.split(":")[0].lower() in names[:i]:
            continue
        if ":" not in base.split("/")[-1] or base.endswith(":latest"):
            fail(f"deploy/Dockerfile: base image {base} is not pinned by tag")
        for instr, rest in st["instrs"]:
            if instr in ("COPY", "ADD"):
                args = rest.split()
                frm = [a for a in args if a.startswith("--from=")]
                srcs = [a for a in args if not a.startswith("--")][:-1]
                if frm:
                    ref = frm[0].split("=", 1)[1].lower()
                    if ref not in names[:i]:
                        fail(f"deploy/Dockerfile: COPY --from={ref} names no earlier stage")
                    continue
                for src in srcs:
                    if src in (".", "./"):
                        continue
                    if not (ROOT / src).exists():
                        fail(f"deploy/Dockerfile: COPY source {src} does not exist")
    # The runtime stages: non-root user, steward entrypoint taking `run <service>`.
    for st in stages:
        if st["name"] not in ("runtime", "debug"):
            continue
        users = [r for i, r in st["instrs"] if i == "USER"]
        if not users or users[-1].split(":")[0] in ("0", "root"):
            fail(f"deploy/Dockerfile: stage {st['name']} does not end as a non-root USER")
        eps = [r for i, r in st["instrs"] if i == "ENTRYPOINT"]
        if not eps:
            fail(f"deploy/Dockerfile: stage {st['name']} has no ENTRYPOINT")
        else:
            ep = json.loads(eps[-1])
            if Path(ep[0]).name != "steward" or len(ep) != 1:
                fail(f"deploy/Dockerfile: stage {st['name']} ENTRYPOINT must be the steward binary alone, got {ep}")
        copies = " ".join(r for i, r in st["instrs"] if i == "COPY")
        for needed in ("/usr/local/bin/steward", "/usr/share/steward"):
            if needed not in copies:
                fail(f"deploy/Dockerfile: stage {st['name']} does not copy {needed}")
    text = "\n".join(lines)
    if "cargo build --release -p steward --locked" not in text:
        fail("deploy/Dockerfile: no `cargo build --release -p steward --locked`")
    if not re.search(r"cargo chef cook .*--locked", text):
        fail("deploy/Dockerfile: the dependency layer (cargo chef cook --locked) is missing")
    if "cp -R playbooks/." not in text:
        fail("deploy/Dockerfile: playbooks/ is not copied into the image")
    if not (ROOT / "playbooks").is_dir():
        fail("playbooks/ does not exist (the image copies it)")
    # What the build reads must reach the context.
    pats = dockerignore_patterns()
    cargo = (ROOT / "Cargo.toml").read_text()
    members = re.findall(r'"([^"]+)"', cargo[cargo.index("members") : cargo.index("]")])
    for rel in ["Cargo.toml", "Cargo.lock", "playbooks", *members]:
        if ignored(rel, pats):
            fail(f".dockerignore excludes {rel}, which the build needs")
        if not (ROOT / rel).exists():
            fail(f"{rel} (a build input) does not exist")
    for rel in ("target", ".git"):
        if not ignored(rel, pats):
            fail(f".dockerignore does not exclude {rel}")
    finish("deploy/Dockerfile structure")


# ------------------------------------------------------------------------------ compose


def image_pinned(image: str) -> bool:
    last = image.split("/")[-1]
    return "@sha256:" in image or (":" in last and not last.endswith(":latest"))


def check_compose() -> None:
    digest = hashlib.sha256(COMPOSE_SCHEMA.read_bytes()).hexdigest()
    if digest != COMPOSE_SCHEMA_SHA256:
        fail(f"{COMPOSE_SCHEMA.relative_to(ROOT)} changed (sha256 {digest}); update deploy/schemas/README.md and this check")
    schema = json.loads(COMPOSE_SCHEMA.read_text())
    # The schema says draft-07 (its $schema URI lacks the `#` jsonschema keys on).
    jsonschema.Draft7Validator.check_schema(schema)
    validator = jsonschema.Draft7Validator(schema)
    path = ROOT / "deploy/compose.yaml"
    doc = yaml.safe_load(path.read_text())
    for err in sorted(validator.iter_errors(doc), key=lambda e: list(e.absolute_path)):
        where = "/".join(str(p) for p in err.absolute_path) or "(top)"
        fail(f"deploy/compose.yaml: {where}: {err.message[:300]}")
    services = doc.get("services", {})
    wanted = steward_services()
    for infra in ("nats", "postgres", "anvil", "mailpit"):
        if infra not in services:
            fail(f"deploy/compose.yaml: no `{infra}` service")
    dockerfile_stages = re.findall(r"^FROM\s+\S+\s+AS\s+(\S+)", (ROOT / "deploy/Dockerfile").read_text(), re.M | re.I)
    for name in wanted:
        svc = services.get(name)
        if svc is None:
            fail(f"deploy/compose.yaml: no container for the Steward service `{name}`")
            continue
        if svc.get("command") != ["run", name]:
            fail(f"deploy/compose.yaml: {name}: command must be ['run', '{name}'], got {svc.get('command')}")
        build = svc.get("build") or {}
        ctx = (path.parent / build.get("context", ".")).resolve()
        if not (ctx / build.get("dockerfile", "Dockerfile")).exists():
            fail(f"deploy/compose.yaml: {name}: the Dockerfile {build.get('dockerfile')} is not in the build context {ctx}")
        if build.get("target") and build["target"] not in dockerfile_stages:
            fail(f"deploy/compose.yaml: {name}: build target {build['target']} is no stage of deploy/Dockerfile")
        env = svc.get("environment") or {}
        for var in ("STEWARD_CONFIG", "STEWARD_NATS_URL", "STEWARD_DATABASE_URL", "STEWARD_LISTEN"):
            if var not in env:
                fail(f"deploy/compose.yaml: {name}: no {var}")
        mounts = {str(v).split(":")[1]: str(v).split(":")[0] for v in svc.get("volumes", []) if isinstance(v, str)}
        cfg = env.get("STEWARD_CONFIG")
        if cfg not in mounts:
            fail(f"deploy/compose.yaml: {name}: STEWARD_CONFIG={cfg} is not a mounted file")
        test = (svc.get("healthcheck") or {}).get("test", [])
        if not any("/healthz" in str(t) for t in test):
            fail(f"deploy/compose.yaml: {name}: the healthcheck does not probe /healthz")
        for dep in ("nats", "postgres"):
            if (svc.get("depends_on") or {}).get(dep, {}).get("condition") != "service_healthy":
                fail(f"deploy/compose.yaml: {name}: must depend on {dep} being healthy")
    for name, svc in services.items():
        if name not in wanted and not image_pinned(svc.get("image", "")):
            fail(f"deploy/compose.yaml: {name}: image {svc.get('image')} is not pinned by tag")
        if "healthcheck" not in svc:
            fail(f"deploy/compose.yaml: {name}: no healthcheck")
        for dep, cond in (svc.get("depends_on") or {}).items():
            if dep not in services:
                fail(f"deploy/compose.yaml: {name}: depends on unknown service {dep}")
            elif cond.get("condition") == "service_healthy" and "healthcheck" not in services[dep]:
                fail(f"deploy/compose.yaml: {name}: waits for {dep} to be healthy, which has no healthcheck")
        for vol in svc.get("volumes", []):
            src = str(vol).split(":")[0]
            if src.startswith((".", "/")):
                if not (path.parent / src).exists():
                    fail(f"deploy/compose.yaml: {name}: mounted file {src} does not exist")
            elif src not in (doc.get("volumes") or {}):
                fail(f"deploy/compose.yaml: {name}: volume {src} is not declared")
    extra = set(services) - set(wanted) - {"nats", "postgres", "anvil", "mailpit"}
    if extra:
        fail(f"deploy/compose.yaml: containers that run no known service: {sorted(extra)}")
    finish("deploy/compose.yaml (compose-spec schema and structure)")


# ------------------------------------------------------------------------------ config files

REF = re.compile(r"\$\{([A-Za-z_][A-Za-z0-9_]*)(?::-([^}]*))?\}")


def config_vars(text: str) -> dict[str, str | None]:
    """The ${VAR} references of a config file, with their defaults (None: required)."""
    out: dict[str, str | None] = {}
    for line in text.splitlines():
        if line.lstrip().startswith("#"):
            continue
        for m in REF.finditer(line):
            out.setdefault(m.group(1), m.group(2))
    return out


SAMPLE_ENV = {
    "STEWARD_NATS_URL": "nats://nats:4222",
    "STEWARD_DATABASE_URL": "postgres://steward:secret@postgres:5432/steward",
    "NATS_TOKEN": "token",
    # deploy/steward.example.yaml
    "NATS_URL": "nats://nats:4222",
    "DB_PASSWORD": "secret",
}


def interpolate(text: str) -> str:
    def sub(m: re.Match) -> str:
        var, default = m.group(1), m.group(2)
        if var in SAMPLE_ENV:
            return SAMPLE_ENV[var]
        if default is not None:
            return default
        # Any other variable (an RPC URL, a bot token): a sample string; the schema still
        # checks the field it lands in.
        return "sample-value"

    return "\n".join(line if line.lstrip().startswith("#") else REF.sub(sub, line) for line in text.splitlines())


def check_config() -> None:
    schema = json.loads(CONFIG_SCHEMA.read_text())
    validator = jsonschema.Draft202012Validator(schema)
    for rel in ("k8s/base/config/steward.yaml", "deploy/compose.steward.yaml", "deploy/steward.example.yaml"):
        doc = yaml.safe_load(interpolate((ROOT / rel).read_text())) or {}
        for err in validator.iter_errors(doc):
            where = ".".join(str(p) for p in err.absolute_path) or "(top)"
            fail(f"{rel}: {where}: {err.message[:300]}")
        ev = doc.get("event_log", {})
        if rel != "deploy/steward.example.yaml" and ev.get("backend") != "nats":
            fail(f"{rel}: event_log.backend must be nats (`steward run` needs it)")
    finish("config files against shared/config/config.schema.json")


# ------------------------------------------------------------------------------ Kubernetes


def load_docs(path: Path) -> list[dict]:
    return [d for d in yaml.safe_load_all(path.read_text()) if d]


def split(rendered: list[str], outdir: str) -> None:
    out = Path(outdir)
    out.mkdir(parents=True, exist_ok=True)
    for r in rendered:
        overlay = Path(r).stem
        for i, d in enumerate(load_docs(Path(r))):
            if (d.get("apiVersion"), d.get("kind")) in CRD_KINDS:
                continue
            name = f"{overlay}-{i:03d}-{d['kind'].lower()}-{d['metadata']['name']}.yaml"
            (out / name).write_text(yaml.safe_dump(d, sort_keys=False))


def containers(pod: dict) -> list[dict]:
    return pod.get("containers", []) + pod.get("initContainers", [])


def http_probe(c: dict, kind: str) -> tuple[str, object] | None:
    p = (c.get(kind) or {}).get("httpGet")
    return (p["path"], p["port"]) if p else None


def check_overlay(path: Path) -> None:
    overlay = path.stem
    docs = load_docs(path)
    by_kind: dict[str, list[dict]] = {}
    for d in docs:
        by_kind.setdefault(d["kind"], []).append(d)
    names = {(d["kind"], d["metadata"]["name"]) for d in docs}
    secrets = {n for k, n in names if k == "Secret"}
    configmaps = {n for k, n in names if k == "ConfigMap"}
    where = f"{overlay}"

    # Every namespaced object in one namespace.
    for d in docs:
        if d["kind"] != "Namespace" and d["metadata"].get("namespace") != "steward":
            fail(f"{where}: {d['kind']}/{d['metadata']['name']} is not in namespace steward")

    deployments = {d["metadata"]["name"]: d for d in by_kind.get("Deployment", [])}
    workloads = list(deployments.values()) + by_kind.get("StatefulSet", [])
    hpas = {h["spec"]["scaleTargetRef"]["name"]: h for h in by_kind.get("HorizontalPodAutoscaler", [])}
    for svc in steward_services():
        dep = deployments.get(f"steward-{svc}")
        if dep is None:
            fail(f"{where}: no Deployment steward-{svc}")
            continue
        c = dep["spec"]["template"]["spec"]["containers"][0]
        if c.get("args") != ["run", svc] or c.get("command"):
            fail(f"{where}: steward-{svc}: container args must be ['run', '{svc}'] (no command), got {c.get('args')}")
        env = {e["name"]: e for e in c.get("env", [])}
        if env.get("STEWARD_CONFIG", {}).get("value") != "/etc/steward/steward.yaml":
            fail(f"{where}: steward-{svc}: STEWARD_CONFIG must be /etc/steward/steward.yaml")
        if env.get("STEWARD_LISTEN", {}).get("value") != "0.0.0.0:9464":
            fail(f"{where}: steward-{svc}: STEWARD_LISTEN must be 0.0.0.0:9464")
        if "STEWARD_NATS_URL" not in env:
            fail(f"{where}: steward-{svc}: no STEWARD_NATS_URL")
        if "secretKeyRef" not in env.get("STEWARD_DATABASE_URL", {}).get("valueFrom", {}):
            fail(f"{where}: steward-{svc}: STEWARD_DATABASE_URL must come from a Secret")
        # Every ${VAR} the config needs without a default is set in the pod.
        cfg_text = (ROOT / "k8s/base/config/steward.yaml").read_text()
        # RPC URLs come from every key of the Secret steward-rpc (envFrom), named RPC_URL_<CHAIN>
        # (the dev overlay's generated Secret carries a hash suffix).
        from_rpc_secret = any(
            re.fullmatch(r"steward-rpc(-[a-z0-9]+)?", (f.get("secretRef") or {}).get("name", ""))
            for f in c.get("envFrom", [])
        )
        for var, default in config_vars(cfg_text).items():
            if from_rpc_secret and var.startswith("RPC_URL_"):
                continue
            if default is None and var not in env:
                fail(
                    f"{where}: steward-{svc}: the config needs ${{{var}}}, which the pod does not set: every "
                    f"process loads the whole config, so give the pod the variable or write ${{{var}:-}}"
                )
        if http_probe(c, "livenessProbe") != ("/healthz", "ops") or http_probe(c, "readinessProbe") != ("/readyz", "ops"):
            fail(f"{where}: steward-{svc}: liveness must probe /healthz and readiness /readyz on port ops")
        ports = {p["name"]: p["containerPort"] for p in c.get("ports", [])}
        if ports.get("ops") != 9464:
            fail(f"{where}: steward-{svc}: port ops must be 9464")
        ann = dep["spec"]["template"]["metadata"].get("annotations", {})
        if ann.get("prometheus.io/scrape") != "true" or ann.get("prometheus.io/port") != "9464":
            fail(f"{where}: steward-{svc}: missing prometheus.io scrape annotations")
        if svc in NO_HPA and f"steward-{svc}" in hpas:
            fail(f"{where}: steward-{svc} must not have a HorizontalPodAutoscaler")
        if svc in HPA:
            if f"steward-{svc}" not in hpas:
                fail(f"{where}: steward-{svc} has no HorizontalPodAutoscaler")
            elif "replicas" in dep["spec"]:
                fail(f"{where}: steward-{svc} sets replicas although an HPA owns them")
        if svc == "api" and ports.get("http") != 8080:
            fail(f"{where}: steward-api must expose port http 8080")
    w = deployments.get("steward-watcher")
    if w:
        strat = w["spec"].get("strategy", {})
        ok = strat.get("type") == "Recreate" or (
            strat.get("type") == "RollingUpdate" and strat.get("rollingUpdate", {}).get("maxSurge") in (0, "0", "0%")
        )
        if w["spec"].get("replicas") != 2 or not ok:
            fail(f"{where}: steward-watcher must run 2 replicas with Recreate or RollingUpdate maxSurge 0")
    s = deployments.get("steward-safe")
    if s and (s["spec"].get("replicas") not in (1, 2)):
        fail(f"{where}: steward-safe must keep 1-2 replicas")
    # risk and runner hold per-entity state and runs in memory: one replica, no overlap.
    for one in ("steward-risk", "steward-runner"):
        d = deployments.get(one)
        if d and (d["spec"].get("replicas") != 1 or d["spec"].get("strategy", {}).get("type") != "Recreate"):
            fail(f"{where}: {one} must run 1 replica with strategy Recreate")
    a = deployments.get("steward-archiver")
    if a and (a["spec"].get("replicas") not in (1, 2)):
        fail(f"{where}: steward-archiver must keep 1-2 replicas")

    # Pod hardening, resources, references.
    for wl in workloads:
        kind, name = wl["kind"], wl["metadata"]["name"]
        pod = wl["spec"]["template"]["spec"]
        psc = pod.get("securityContext", {})
        if pod.get("automountServiceAccountToken") is not False:
            fail(f"{where}: {kind}/{name}: automountServiceAccountToken must be false")
        if psc.get("runAsNonRoot") is not True:
            fail(f"{where}: {kind}/{name}: pod runAsNonRoot must be true")
        if psc.get("seccompProfile", {}).get("type") != "RuntimeDefault":
            fail(f"{where}: {kind}/{name}: seccompProfile must be RuntimeDefault")
        vols = {v["name"]: v for v in pod.get("volumes", [])}
        for c in containers(pod):
            cid = f"{kind}/{name}/{c['name']}"
            sc = c.get("securityContext", {})
            if sc.get("allowPrivilegeEscalation") is not False:
                fail(f"{where}: {cid}: allowPrivilegeEscalation must be false")
            if sc.get("readOnlyRootFilesystem") is not True:
                fail(f"{where}: {cid}: readOnlyRootFilesystem must be true")
            if sc.get("capabilities", {}).get("drop") != ["ALL"]:
                fail(f"{where}: {cid}: capabilities must drop ALL")
            res = c.get("resources", {})
            for part in ("requests", "limits"):
                for r in ("cpu", "memory"):
                    if r not in res.get(part, {}):
                        fail(f"{where}: {cid}: no {part}.{r}")
            if not image_pinned(c.get("image", "")):
                fail(f"{where}: {cid}: image {c.get('image')} is not pinned by tag")
            if not (c.get("livenessProbe") and c.get("readinessProbe")):
                fail(f"{where}: {cid}: liveness and readiness probes are required")
            mounts = {m["mountPath"]: m["name"] for m in c.get("volumeMounts", [])}
            if "/tmp" not in mounts and name.startswith("steward-"):
                fail(f"{where}: {cid}: no writable /tmp")
            for m in c.get("volumeMounts", []):
                if m["name"] not in vols and m["name"] not in {t["metadata"]["name"] for t in wl["spec"].get("volumeClaimTemplates", [])}:
                    fail(f"{where}: {cid}: mounts unknown volume {m['name']}")
            refs = []
            for e in c.get("env", []):
                ref = e.get("valueFrom", {}).get("secretKeyRef")
                if ref:
                    refs.append((ref["name"], ref.get("key"), ref.get("optional", False)))
                if e.get("valueFrom", {}).get("configMapKeyRef"):
                    fail(f"{where}: {cid}: configMapKeyRef {e['name']}: use the mounted config file")
                if "value" in e and re.search(r"(PASSWORD|TOKEN|SECRET|_KEY)$", e["name"]) and e["value"]:
                    fail(f"{where}: {cid}: {e['name']} is a secret written as a plain value")
            for ef in c.get("envFrom", []):
                if "secretRef" in ef:
                    refs.append((ef["secretRef"]["name"], None, ef["secretRef"].get("optional", False)))
                if "configMapRef" in ef:
                    fail(f"{where}: {cid}: envFrom configMapRef: use the mounted config file")
            for sname, key, optional in refs:
                if sname in secrets:
                    sec = next(d for d in by_kind["Secret"] if d["metadata"]["name"] == sname)
                    if key and key not in (sec.get("data") or {}) and not optional:
                        fail(f"{where}: {cid}: Secret {sname} has no key {key}")
                elif overlay == "prod" and sname in EXTERNAL_SECRETS:
                    pass  # created out of band
                elif not optional:
                    fail(f"{where}: {cid}: references Secret {sname}, which is neither rendered nor a documented external Secret")
        for v in vols.values():
            if "configMap" in v and v["configMap"]["name"] not in configmaps:
                fail(f"{where}: {kind}/{name}: volume {v['name']} references missing ConfigMap {v['configMap']['name']}")
            if "emptyDir" in v and "sizeLimit" not in v["emptyDir"]:
                fail(f"{where}: {kind}/{name}: emptyDir {v['name']} has no sizeLimit")

    # Secrets never in ConfigMaps.
    cred_url = re.compile(r"[a-z]+://[^/\s:@$]+:[^@\s$]+@")
    for cm in by_kind.get("ConfigMap", []):
        for key, val in (cm.get("data") or {}).items():
            if re.search(r"(password|secret|token|key)", key, re.I):
                fail(f"{where}: ConfigMap {cm['metadata']['name']}: key {key} looks like a secret")
            for line in str(val).splitlines():
                if line.lstrip().startswith("#"):
                    continue
                if cred_url.search(line):
                    fail(f"{where}: ConfigMap {cm['metadata']['name']}/{key}: a URL with a password: {line.strip()}")
                m = re.match(r"\s*(token|password|secret|relayer_key|bot_token)\s*[:=]\s*(\S+)", line, re.I)
                if m and not m.group(2).startswith("$"):
                    fail(f"{where}: ConfigMap {cm['metadata']['name']}/{key}: a literal secret: {line.strip()}")
    if overlay == "prod" and secrets:
        fail(f"{where}: the prod overlay must not render Secrets (they are created out of band): {sorted(secrets)}")

    # PodDisruptionBudgets cover every Deployment and the NATS StatefulSet.
    pdb_selectors = [p["spec"]["selector"]["matchLabels"] for p in by_kind.get("PodDisruptionBudget", [])]
    for wl in workloads:
        labels = wl["spec"]["template"]["metadata"]["labels"]
        if wl["metadata"]["name"] == "postgres":
            continue  # the dev-only single database pod
        if not any(all(labels.get(k) == v for k, v in sel.items()) for sel in pdb_selectors):
            fail(f"{where}: {wl['kind']}/{wl['metadata']['name']} has no PodDisruptionBudget")

    # NetworkPolicies: default deny, DNS, the declared egress.
    nps = {n["metadata"]["name"]: n["spec"] for n in by_kind.get("NetworkPolicy", [])}
    dd = nps.get("default-deny-all")
    if not dd or dd.get("podSelector") != {} or set(dd.get("policyTypes", [])) != {"Ingress", "Egress"} or dd.get("ingress") or dd.get("egress"):
        fail(f"{where}: no default-deny-all NetworkPolicy (empty podSelector, Ingress and Egress, no rules)")

    def egress_ports(component: str) -> set[int]:
        ports: set[int] = set()
        for spec in nps.values():
            sel = spec.get("podSelector", {})
            ml = sel.get("matchLabels", {})
            if ml.get("app.kubernetes.io/name") not in (None, "steward"):
                continue
            if ml.get("app.kubernetes.io/component") not in (None, component):
                continue
            exprs = sel.get("matchExpressions", [])
            if any(e["operator"] == "In" and component not in e["values"] for e in exprs):
                continue
            for rule in spec.get("egress", []):
                for p in rule.get("ports", []):
                    ports.add(int(p["port"]))
        return ports

    expected = {
        "watcher": {53, 4222, 5432, 443, 8545},
        "risk": {53, 4222, 5432, 443, 8545},
        "safe": {53, 4222, 5432, 443, 8545},
        "notifier": {53, 4222, 5432, 443, 587, 465},
    }
    for svc in steward_services():
        got = egress_ports(svc)
        want = expected.get(svc, {53, 4222, 5432})
        if got != want:
            fail(f"{where}: steward-{svc}: egress ports {sorted(got)}, expected {sorted(want)}")

    # Services point at real ports; CRDs without a bundled schema checked here.
    services = by_kind.get("Service", [])
    for sm in by_kind.get("ServiceMonitor", []):
        spec = sm.get("spec", {})
        sel = spec.get("selector", {}).get("matchLabels", {})
        eps = spec.get("endpoints", [])
        if set(spec) - {"selector", "namespaceSelector", "endpoints", "jobLabel"}:
            fail(f"{where}: ServiceMonitor {sm['metadata']['name']}: unexpected fields {sorted(set(spec) - {'selector', 'namespaceSelector', 'endpoints', 'jobLabel'})}")
        matched = [s for s in services if sel and all(s["metadata"].get("labels", {}).get(k) == v for k, v in sel.items())]
        if not matched:
            fail(f"{where}: ServiceMonitor {sm['metadata']['name']} selects no Service")
        for ep in eps:
            if set(ep) - {"port", "path", "interval", "scrapeTimeout", "scheme"}:
                fail(f"{where}: ServiceMonitor endpoint with unexpected fields {sorted(ep)}")
            if not any(p.get("name") == ep.get("port") for s in matched for p in s["spec"]["ports"]):
                fail(f"{where}: ServiceMonitor endpoint port {ep.get('port')} is on no selected Service")
    for d in docs:
        if d["kind"] not in {"Namespace", "NetworkPolicy", "ConfigMap", "Secret", "Service", "ServiceAccount",
                             "Deployment", "StatefulSet", "HorizontalPodAutoscaler", "PodDisruptionBudget"} and \
                (d["apiVersion"], d["kind"]) not in CRD_KINDS:
            fail(f"{where}: {d['kind']} ({d['apiVersion']}) is neither a core kind nor a CRD this check knows")
    finish(f"k8s overlay {overlay}: structure")


def check_generators() -> None:
    """Every playbook and template file is in the base's configMapGenerator."""
    kust = yaml.safe_load((ROOT / "k8s/base/kustomization.yaml").read_text())
    gens = {g["name"]: g.get("files", []) for g in kust.get("configMapGenerator", [])}
    for cm, folder, globs in (
        ("steward-playbooks", "playbooks", ("*.yaml", "*.yml")),
        ("steward-templates", "templates", ("*",)),
    ):
        if cm not in gens:
            fail(f"k8s/base/kustomization.yaml: no configMapGenerator {cm}")
            continue
        listed = {str(f).split("=")[-1] for f in gens[cm]}
        d = ROOT / folder
        present = set()
        if d.is_dir():
            for p in sorted(d.iterdir()):
                if p.is_file() and any(fnmatch.fnmatch(p.name, g) for g in globs) and p.name != "README.md":
                    present.add(f"../../{folder}/{p.name}")
        for f in sorted(present - listed):
            fail(f"k8s/base/kustomization.yaml: {cm} does not list {f}")
        for f in sorted(listed - present):
            fail(f"k8s/base/kustomization.yaml: {cm} lists {f}, which is not a file of {folder}/")
    finish("k8s ConfigMap generators list every playbook and template")


def check_checkov_skips() -> None:
    """Every accepted checkov finding has a reason and is listed in docs/operations.md."""
    path = ROOT / "k8s/.checkov.yaml"
    text = path.read_text()
    cfg = yaml.safe_load(text)
    ops = (ROOT / "docs/operations.md").read_text()
    for cid in cfg.get("skip-check", []):
        line = next((ln for ln in text.splitlines() if re.match(rf"\s*-\s*{re.escape(cid)}\b", ln)), "")
        if "#" not in line or len(line.split("#", 1)[1].strip()) < 20:
            fail(f"k8s/.checkov.yaml: {cid} has no reason (a comment on its line)")
        if cid not in ops:
            fail(f"docs/operations.md does not list the accepted checkov finding {cid}")
    finish("checkov skip list has reasons and is documented")


def main() -> None:
    if len(sys.argv) < 2:
        raise SystemExit(__doc__)
    cmd, args = sys.argv[1], sys.argv[2:]
    if cmd == "dockerfile":
        check_dockerfile()
    elif cmd == "compose":
        check_compose()
    elif cmd == "config":
        check_config()
    elif cmd == "k8s":
        check_generators()
        check_checkov_skips()
        for a in args:
            check_overlay(Path(a))
    elif cmd == "split":
        split(args[1:], args[0])
    else:
        raise SystemExit(f"unknown check {cmd}\n{__doc__}")


if __name__ == "__main__":
    os.chdir(ROOT)
    main()
