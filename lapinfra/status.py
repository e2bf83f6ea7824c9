"""The status page's facts, published to the master, and `invoke status`.

``publish`` writes ``/data/status/facts.json`` on the master (the status container's
own /data) at the end of every deploy, rollback and verification run, over the
command's MasterSession. The status container (images/status/lapstatus) turns it,
with the backup container's state, into the page at ``status.<domain>`` and into
``/data/status/status.json``, the summary `invoke status` prints.

The facts hold no secret, by construction: every field is picked by name from
what is public anyway: the environment's name and domain, the release record's
release, author, time and image ids; of releases.jsonl and verified.jsonl the
last entries' release, outcome, counts, who, when and (cut short) error; each
check's name, outcome, seconds and failure message; each infrastructure
container's state and health as the Docker API reports them; DNS names and
addresses; the swarm's node names, roles and states and the apps' replica counts;
the backup retention. Nothing is read from a container's environment or from
the node's SSH host keys (records.HOST_KEYS). As a second line of defence, every string of the facts is
scrubbed of the environment's secrets (a failed check's message may quote a value it
compared) before they leave the workstation.

lapstatus is the single source of truth for the summary and its rendering: this
module loads that script (a file without .py) instead of copying its functions.
"""
from __future__ import annotations

import functools
import importlib.machinery
import importlib.util
import json
from pathlib import Path

from . import apps, ddns, records, services as svc
from .errors import LapinfraError
from .session import MasterSession

STATUS_DIR = f"{svc.DATA}/status"           # infra_status's /data
FACTS = f"{STATUS_DIR}/facts.json"
SUMMARY = f"{STATUS_DIR}/status.json"       # written by lapstatus
BACKUP_STATE = f"{svc.DATA}/backup"         # lapbackup's state, /backup in infra_status
LAPSTATUS = Path(__file__).resolve().parent.parent / "images" / "status" / "lapstatus"
TAIL = 20                                   # entries of releases.jsonl and verified.jsonl
ERROR_CHARS = 300
SCHEMA = 1

# DNS names (relative to the domain) that belong to a service of another name.
NAME_OWNERS = {"ns": "dns", "docker": "registry", "ubuntu.cache": "cache"}


@functools.lru_cache(maxsize=None)
def lapstatus():
    """images/status/lapstatus as a module: its summary and rendering functions."""
    loader = importlib.machinery.SourceFileLoader("lapstatus", str(LAPSTATUS))
    spec = importlib.util.spec_from_loader("lapstatus", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


# ---- facts: pure functions -----------------------------------------------------------

def container_states(containers) -> dict[str, tuple[str, str]]:
    """infra_* container name -> (state, health) from one containers.list(all=True)."""
    out = {}
    for c in containers:
        if not c.name.startswith(svc.PREFIX):
            continue
        state = c.attrs.get("State") or {}
        health = (state.get("Health") or {}).get("Status") or ""
        out[c.name] = (state.get("Status") or c.status or "unknown", health)
    return out


def dns_names(env) -> dict[str, list[str]]:
    """Service name -> the DNS names that reach it: dns.names by name (ns is the DNS, docker the
    registry, ubuntu.cache the cache), the load balancer's and the routed apps' names the proxy's."""
    known = {service.name for service in svc.services(env)}
    out: dict[str, list[str]] = {}
    for name in env.dns.names:
        owner = NAME_OWNERS.get(name, name)
        if owner in known:
            out.setdefault(owner, []).append(f"{name}.{env.domain}")
    out.setdefault("proxy", []).extend(f"{n}.{env.domain}" for n in [env.lb.name, *env.routed_apps])
    return {k: sorted(v) for k, v in out.items()}


def service_facts(env, states: dict[str, tuple[str, str]]) -> list[dict]:
    names = dns_names(env)
    out = []
    for service in svc.services(env):
        state, health = states.get(service.container, ("missing", ""))
        out.append({"name": service.name, "container": service.container, "image": service.image, "http": service.http,
                    "names": names.get(service.name, []), "state": state, "health": health})
    return out


def _cut(text) -> str | None:
    return None if text is None else str(text).splitlines()[0][:ERROR_CHARS] if str(text) else ""


def release_facts(record: records.Release | None) -> dict | None:
    if not record:
        return None
    return {"release": record.release, "by": record.deployed_by, "at": record.deployed_at,
            "images": dict(sorted(record.image_ids().items()))}


def release_entries(entries: list[dict]) -> list[dict]:
    """The last deploys and rollbacks of releases.jsonl, by field name."""
    keys = ("release", "previous", "outcome", "by", "at", "snapshot", "safety_snapshot", "step", "seconds",
            "by_hand", "data", "git")
    out = []
    for e in entries[-TAIL:]:
        row = {k: e[k] for k in keys if k in e}
        if e.get("error"):
            row["error"] = _cut(e["error"])
        if isinstance(e.get("suite"), dict):
            row["suite_passed"] = bool(e["suite"].get("passed"))
        out.append(row)
    return out


def run_entries(entries: list[dict]) -> list[dict]:
    """The last verification runs of verified.jsonl, by field name."""
    count_keys = ("tests", "failures", "errors", "skipped", "wall_seconds")
    return [{"release": e.get("release"), "passed": bool(e.get("passed")), "partial": bool(e.get("partial")),
             "by": e.get("by"), "at": e.get("at"),
             "counts": {k: v for k, v in (e.get("counts") or {}).items() if k in count_keys}}
            for e in entries[-TAIL:]]


def case_facts(run: dict | None, cases: list[dict] | None) -> dict | None:
    """The checks of the run ``run`` (its verified.jsonl entry): name, outcome, seconds, message."""
    if not run or cases is None:
        return None
    return {"at": run.get("at"), "release": run.get("release"),
            "cases": [{"check": c.get("check"), "outcome": c.get("outcome"), "seconds": c.get("seconds"),
                       "message": (c.get("message") or "")[:600]} for c in cases]}


def swarm_node_rows(node_attrs: list[dict]) -> list[dict]:
    rows = [{"hostname": a["Description"]["Hostname"], "role": a["Spec"]["Role"], "state": a["Status"]["State"],
             "availability": a["Spec"].get("Availability", ""),
             "leader": bool((a.get("ManagerStatus") or {}).get("Leader"))} for a in node_attrs]
    return sorted(rows, key=lambda r: (r["role"] != "manager", r["hostname"]))


def app_row(name: str, wanted, tasks: list[dict], hostnames: dict[str, str]) -> dict:
    """One app: replicas running of wanted, and how many on each worker (running tasks only)."""
    running = [t for t in tasks if (t.get("Status") or {}).get("State") == "running"]
    per_node: dict[str, int] = {}
    for t in running:
        host = hostnames.get(t.get("NodeID"), "?")
        per_node[host] = per_node.get(host, 0) + 1
    return {"app": name, "replicas": wanted, "running": len(running), "per_node": dict(sorted(per_node.items()))}


def names_by_zone(registered: dict[str, list[str]], zones: list[str]) -> dict:
    """fqdn -> addresses (ddns.registered) grouped by dynamic zone (host, node, pc)."""
    out: dict[str, dict[str, list[str]]] = {z: {} for z in zones}
    for fqdn, ips in registered.items():
        zone = next((z for z in zones if fqdn.endswith("." + z)), None)
        if zone is not None:
            out[zone][fqdn] = list(ips)
    return {"zones": out}


def facts_document(env, *, at: str, by: str, record, releases, runs, states, cases=None, swarm=None,
                   names=None) -> dict:
    """The whole facts document: what the page shows, gathered elsewhere, secret-free by field."""
    return {
        "schema": SCHEMA, "at": at, "by": by,
        "environment": env.name, "domain": env.domain, "protected": bool(env.protected),
        "release": release_facts(record),
        "releases": release_entries(releases),
        "runs": run_entries(runs),
        "cases": cases,
        "services": service_facts(env, states),
        "backup": {"keep": env.backup.keep.model_dump(exclude_none=True), "interval_minutes": env.backup.interval_minutes},
        "swarm": swarm,
        "names": names or {},
    }


# ---- facts: over a MasterSession ----------------------------------------------------

def swarm_facts(s) -> dict | None:
    """The swarm's nodes and each recorded app's replicas per worker, from the manager (the master)."""
    if not s.env.workers:
        return None
    try:
        if not (s.docker.info().get("Swarm") or {}).get("ControlAvailable"):
            return {"error": f"{s.env.master.name} does not manage a swarm (yet)", "nodes": [], "apps": []}
        nodes = s.docker.nodes.list()
        hostnames = {n.id: n.attrs["Description"]["Hostname"] for n in nodes}
        rows = []
        for name, entry in sorted(apps.read_record(s).items()):
            try:
                service = s.docker.services.get(name)
            except Exception:
                rows.append(app_row(name, entry.get("replicas"), [], hostnames))
                continue
            wanted = service.attrs["Spec"]["Mode"].get("Replicated", {}).get("Replicas")
            rows.append(app_row(name, wanted, service.tasks(filters={"desired-state": "running"}), hostnames))
        return {"nodes": swarm_node_rows([n.attrs for n in nodes]), "apps": rows}
    except Exception as exc:
        return {"error": f"the swarm did not answer: {_cut(exc)}", "nodes": [], "apps": []}


def registered_names(project) -> dict:
    try:
        return names_by_zone(ddns.registered(project), project.env.dynamic_zones)
    except LapinfraError as exc:
        return {"error": _cut(exc)}


def gather(s, project, run: dict | None = None, cases: list[dict] | None = None) -> dict:
    """The facts of ``project``'s environment, read through the MasterSession ``s``; ``run`` and
    ``cases``: a verification run just recorded and its checks (else the last published ones stay)."""
    published = case_facts(run, cases)
    if published is None:
        published = (s.read_json(FACTS) or {}).get("cases")
    return facts_document(
        project.env, at=records.now(), by=records.who(),
        record=records.read_release(s),
        releases=s.read_jsonl(records.RELEASES),
        runs=s.read_jsonl(records.VERIFIED),
        states=container_states(s.docker.containers.list(all=True)),
        cases=published, swarm=swarm_facts(s), names=registered_names(project))


def secret_texts(project) -> list[str]:
    """Every secret of the environment as text that could turn up in a message: each file's
    content and each of its lines of 8 characters or more (not PEM armour), longest first."""
    found = set()
    folder = project.secrets.dir
    for path in sorted(folder.iterdir()) if folder.is_dir() else []:
        if not path.is_file():
            continue
        text = path.read_text(errors="replace").strip()
        for piece in [text, *text.splitlines()]:
            piece = piece.strip()
            if len(piece) >= 8 and not piece.startswith("-----"):
                found.add(piece)
    return sorted(found, key=len, reverse=True)


def scrubbed(value, secrets: list[str]):
    """``value`` (the facts, any JSON) with every secret text in its strings replaced by ***: a
    check's failure message may quote what it compared (pytest shows the values)."""
    if isinstance(value, str):
        for secret in secrets:
            if secret in value:
                value = value.replace(secret, "***")
        return value
    if isinstance(value, dict):
        return {k: scrubbed(v, secrets) for k, v in value.items()}
    if isinstance(value, list):
        return [scrubbed(v, secrets) for v in value]
    return value


def publish(s, project, run: dict | None = None, cases: list[dict] | None = None) -> dict:
    """Write the facts to the master, where the status container reads them; the facts."""
    facts = scrubbed(gather(s, project, run, cases), secret_texts(project))
    s.put(FACTS, (json.dumps(facts, indent=1, sort_keys=True) + "\n").encode(), mode=0o644)
    return facts


def publish_quietly(s, project, run: dict | None = None, cases: list[dict] | None = None) -> bool:
    """publish, whose failure never fails the command around it: a warning line instead."""
    try:
        publish(s, project, run, cases)
        return True
    except Exception as exc:
        project.reporter.warn(f"status page not updated on {project.name} ({_cut(exc) or type(exc).__name__}); "
                              f"the next deploy or `invoke test --env={project.name}` publishes again")
        return False


# ---- invoke status ------------------------------------------------------------------

def current(project) -> dict:
    """The summary the status container wrote, with container states as the engine reports them
    now; computed here, with lapstatus's functions, when there is none yet."""
    with MasterSession(project) as s:
        summary = s.read_json(SUMMARY)
        if summary is None:
            summary = local_summary(s, project)
        states = container_states(s.docker.containers.list(all=True))
    return lapstatus().with_live_states(summary, states)


def local_summary(s, project) -> dict:
    """The summary from the node's files, as lapstatus would write it."""
    facts = s.read_json(FACTS) or gather(s, project)
    backup = {"status": s.read_json(f"{BACKUP_STATE}/status.json"),
              "sizes": s.read_json(f"{BACKUP_STATE}/sizes.json") or {},
              "history": s.read_jsonl(f"{BACKUP_STATE}/history.jsonl"),
              "drill": s.read_json(f"{BACKUP_STATE}/drill.json")}
    return lapstatus().summarize(facts, backup, environment=project.name)


GREEN, RED, DIM, RESET = "\033[32m", "\033[31m", "\033[2m", "\033[0m"


def table_lines(summary: dict, colour: bool = False) -> list[str]:
    """The summary as terminal lines: a header, one row per service, the last run, backups, swarm."""
    ls = lapstatus()

    def paint(text: str, code: str) -> str:
        return f"{code}{text}{RESET}" if colour else text

    def mark(ok: bool) -> str:
        return paint("ok ", GREEN) if ok else paint("RED", RED)

    release = summary.get("release") or {}
    lines = [paint(f"! {summary['notice']}", RED)] if summary.get("notice") else []
    lines += [f"{summary.get('environment')} ({summary.get('domain')}): "
             + (paint("all green", GREEN) if summary.get("ok") else paint("attention", RED))
             + f"  release {release.get('release') or 'none'} by {release.get('by') or '-'} at {release.get('at') or '-'}",
             "", f"    {'service':12} {'container':22} {'checks':8} names"]
    for v in summary.get("services") or []:
        state = v["state"] + (f" ({v['health']})" if v["health"] else "")
        checks = f"{v['checks'] - len(v['checks_failed'])}/{v['checks']}" if v["checks"] else "-"
        lines.append(f"{mark(v['ok'])} {v['name']:12} {state:22} {checks:8} {', '.join(v['names']) or '-'}"
                     + (paint(f"  {v['reason']}", RED) if v["reason"] else ""))
    run = summary.get("verification")
    lines.append("")
    if run:
        lines.append(f"{mark(run['passed'])} last verification {run['at']}: {run['tests']} checks, {run['failures']} failed, "
                     f"{run['errors']} errors, {run['wall_seconds']} s wall" + (" (partial)" if run["partial"] else ""))
        lines.extend(paint(f"      {f['check']}: {f['message'].splitlines()[0][:160] if f['message'] else ''}", RED)
                     for f in run["failed"])
    else:
        lines.append("    no verification run recorded")
    b = summary.get("backups") or {}
    latest = b.get("latest")
    if latest:
        lines.append(f"    latest snapshot {latest['id']}, {ls.age_text(latest['age_seconds'])} ago, "
                     f"{ls.size_text(latest['size_bytes'])}; keep {', '.join(f'{k} {v}' for k, v in b.get('retention', {}).items())}")
    else:
        lines.append("    no snapshot yet")
    lines.extend(paint(f"RED {a}", RED) for a in b.get("attention") or [])
    drill = b.get("drill")
    lines.append("    no drill yet" if drill is None else
                 f"{mark(drill['ok'])} last drill {drill['at']} of snapshot {drill['snapshot']} ({drill['seconds']} s)"
                 + "".join(f"; {f}" for f in drill["failures"]))
    swarm = summary.get("swarm")
    if swarm:
        lines.append("")
        for n in swarm.get("nodes") or []:
            lines.append(f"{mark(n['state'] == 'ready')} node {n['hostname']:12} {n['role']:8} {n['state']}")
        for a in swarm.get("apps") or []:
            per = ", ".join(f"{h}: {k}" for h, k in a["per_node"].items()) or "none running"
            lines.append(f"{mark(a['running'] == a['replicas'])} app {a['app']:13} {a['running']}/{a['replicas']}  {per}")
        if swarm.get("error"):
            lines.append(paint(f"    {swarm['error']}", RED))
    zones = (summary.get("names") or {}).get("zones") or {}
    count = sum(len(v) for v in zones.values())
    if zones:
        lines.append(paint(f"    {count} registered names: " + ", ".join(f"{z.split('.')[0]} {len(v)}" for z, v in zones.items()), DIM))
    return lines
