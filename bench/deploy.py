"""Benchmark: a deploy that changes one image of many, against recreating everything.

Measured in one run on a live environment that is promoted from another (default:
staging), --runs rounds taken round-robin, each after a real change of one image:

A. "lap-infra: one image changed": `invoke build deploy --env=X --force`. The change is
   a marker file images/sampleapp/BENCH_MARKER with a fresh random value per run (the
   build context, hence the image's `lapinfra.hash` label, hence its image id, and the
   dirty release id change; a value used before would give back the cached image and a
   release the registry already holds). sampleapp is a leaf image: infra_app1 and
   infra_app2 run it behind the load balancer app.<domain>. Expected: only sampleapp is
   pushed (every other image is tagged inside the node's registry), only infra_app1 and
   infra_app2 are recreated, every other container is kept.
B. the baseline "stop.sh + start.sh: recreate everything": after the same kind of change,
   `invoke stop --env=X` then `invoke deploy --env=X --force`, timed together: every
   container is removed and created again.

`--force` skips only the gate (the images were not verified on the source environment);
both methods still take lap-infra's pre-deploy snapshot and run the verification suite
on the target, so the steps' own times ("✓ <step> (N.Ns)" lines and the suite's summary
line, parsed from the output, each stamped when it arrives) are reported as well. What
was pushed and which containers were kept/recreated/created is read from the release
record afterwards (`invoke releases --env=X --json`, last entry).

Downtime: while each method runs, one thread per check probes the master node's address
(only that address: the environment's master on the project's own docker network) every
0.2 s with short timeouts: DNS (`ns.<domain>` A over UDP to <master>:53, dnspython), and
HTTP GET http://<master>/ with the Host header `trac.<domain>`, `app.<domain>` (the changed
service, through the load balancer) and `maven.<domain>` (a fresh connection each time,
no proxy from the environment). A check fails on a timeout, a refused connection, a DNS
answer without an A record, or an HTTP status >= 500 (the proxy's 502/503/504: its
upstream is gone). An outage lasts from the first failed probe to the next good one; the
downtime of a check is the sum of its outages, reported with the longest. Outages are
split by when they happened: during the deploy's snapshot step (restic pauses every
infra_* container), during the verification suite (it stops a load balancer backend on
purpose), during a scheduled snapshot of the backup container (read from its
status.json) or the rest (the deploy's own changes).

Nothing is asserted. Never run it against an environment someone else is using. It
removes the marker in a `finally` (also on failure or Ctrl-C) and then deploys the clean
tree again (`invoke build deploy --env=X --force`), so infra/sampleapp and the
environment are back as they were; with --stop-file, when that file appears the running
command is interrupted (as Ctrl-C: a deploy rolls back on its own), the marker is
removed and nothing more is started.

    .venv/bin/python bench/deploy.py --env staging [--runs 2] [--write docs/performance.md]
"""
from __future__ import annotations

import argparse
import datetime
import ipaddress
import json
import os
import re
import signal
import statistics
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perfdoc import write_section  # noqa: E402  (bench/, the script's own folder)

HEADING = "Deploy of one changed image"
IMAGE = "sampleapp"
MARKER = ROOT / "images" / IMAGE / "BENCH_MARKER"
A = "lap-infra: one image changed"
B = "stop.sh + start.sh: recreate everything"
SHORT = {A: "A", B: "B"}
INTERVAL = 0.2               # s between the starts of two probes of one check
PROJECT_NET = ipaddress.ip_network("172.28.0.0/16")   # the project's docker networks; probes go nowhere else
SCHEDULER_MARGIN = 45        # s: wait out a scheduled snapshot due this soon (it pauses every container)
STATUS = "/data/backup/status.json"
STEP = re.compile(r"^✓ (.+) \((\d+(?:\.\d+)?)s\)$")
SUITE_START = re.compile(r"^verification suite on \S+ \.\.\.$")
SUITE_END = re.compile(r"^!? ?verification suite on \S+: (passed|FAILED),? .*?\(([\d.]+)s")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Step lines, by what they do (first match wins); the rest of a command's time is "other".
CATEGORIES = [
    ("build the changed image", re.compile(r"^build ")),
    ("stop: remove every container", re.compile(r"^remove infra_")),
    ("snapshot before the deploy", re.compile(r"^snapshot of ")),
    ("upload config and secrets", re.compile(r"^upload config")),
    ("load node-local images", re.compile(r"^load infra/")),
    ("push images", re.compile(r"^push infra/")),
    ("pull images on the node", re.compile(r"^pull ")),
    ("create/recreate containers", re.compile(r"^infra_\S+: (created|recreated)$")),
    ("health checks of started containers", re.compile(r"^health checks of ")),
]
SUITE = "verification suite"
OTHER = "other (Python + invoke start-up, render, SSH and tunnels, tagging in the registry, git push, records)"
PHASES = ("snapshot step", "suite", "scheduled snapshot", "rest of the deploy")


class Aborted(Exception):
    pass


# ---- probes -------------------------------------------------------------------------

def dns_check(ip: str, name: str, timeout: float):
    import dns.message
    import dns.query
    import dns.rcode
    import dns.rdatatype

    def check():
        answer = dns.query.udp(dns.message.make_query(name, "A"), ip, port=53, timeout=timeout)
        a = [r for rrset in answer.answer if rrset.rdtype == dns.rdatatype.A for r in rrset]
        return (answer.rcode() == dns.rcode.NOERROR and bool(a)), dns.rcode.to_text(answer.rcode())
    return check


def http_check(ip: str, host: str, timeout: float):
    import requests

    session = requests.Session()
    session.trust_env = False          # never through a proxy from the environment: only to the master

    def check():
        r = session.get(f"http://{ip}/", headers={"Host": host, "Connection": "close"},
                        timeout=(timeout, timeout), allow_redirects=False)
        r.close()
        return r.status_code < 500, str(r.status_code)
    return check


class Probe(threading.Thread):
    """Runs one check every INTERVAL seconds; keeps (start time, ok, detail) of each probe."""

    def __init__(self, name: str, check):
        super().__init__(daemon=True, name=f"probe-{name}")
        self.check, self.samples = check, []
        self.halt = threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            t = time.time()
            try:
                ok, detail = self.check()
            except Exception as exc:   # timeouts, refused connections: the check failed
                ok, detail = False, type(exc).__name__
            self.samples.append((t, ok, detail))
            self.halt.wait(max(0.0, t + INTERVAL - time.time()))

    def finish(self) -> list[tuple[float, bool, str]]:
        self.halt.set()
        self.join(timeout=10)
        return list(self.samples)


def probes(ip: str, domain: str, timeout: float) -> dict:
    """name -> (check, what it is); the changed service is `app`."""
    return {
        "dns": (dns_check(ip, f"ns.{domain}", timeout), f"DNS `ns.{domain}` A"),
        "trac": (http_check(ip, f"trac.{domain}", timeout), f"HTTP `trac.{domain}`"),
        "app": (http_check(ip, f"app.{domain}", timeout), f"HTTP `app.{domain}` (load balancer over the changed image)"),
        "maven": (http_check(ip, f"maven.{domain}", timeout), f"HTTP `maven.{domain}`"),
    }


def outages(samples: list[tuple[float, bool, str]]) -> list[tuple[float, float]]:
    """(start, end) of each run of failed probes: from the first failed probe to the next good one
    (to the last probe's start when the check never came back)."""
    out, start = [], None
    for t, ok, _ in samples:
        if not ok and start is None:
            start = t
        elif ok and start is not None:
            out.append((start, t))
            start = None
    if start is not None:
        out.append((start, max(samples[-1][0], start)))
    return out


def split(spans: list[tuple[float, float]], windows: dict[str, list[tuple[float, float]]]) -> dict[str, float]:
    """Seconds of ``spans`` inside each named window (the first in PHASES order wins where they
    overlap); the remainder is "rest of the deploy"."""
    out = {p: 0.0 for p in PHASES}
    for s, e in spans:
        cuts = sorted({s, e, *(x for ws in windows.values() for w in ws for x in w if s < x < e)})
        for a, b in zip(cuts, cuts[1:]):
            mid = (a + b) / 2
            phase = next((p for p in PHASES[:-1] for w in windows.get(p, []) if w[0] <= mid <= w[1]), PHASES[-1])
            out[phase] += b - a
    return out


def downtime(samples, windows) -> dict:
    spans = outages(samples)
    statuses: dict[str, int] = {}
    for _, ok, detail in samples:
        if not ok:
            statuses[detail] = statuses.get(detail, 0) + 1
    return {"down": sum(e - s for s, e in spans), "longest": max((e - s for s, e in spans), default=0.0),
            "outages": len(spans), "probes": len(samples), "failed": sum(1 for _, ok, _ in samples if not ok),
            "failures": statuses, "split": split(spans, windows)}


# ---- commands -----------------------------------------------------------------------

class Runner:
    def __init__(self, env: str, stop_file: Path | None):
        self.env, self.stop_file = env, stop_file
        self.run_env = dict(os.environ, LAPINFRA_ENV=env, PYTHONUNBUFFERED="1", PYTHONIOENCODING="utf-8",
                            NO_COLOR="1", TERM="dumb", COLUMNS="250")

    def check_stop(self) -> None:
        if self.stop_file and self.stop_file.exists():
            raise Aborted(f"{self.stop_file} appeared")

    def cli(self, args: list[str], check: bool = True) -> dict:
        """`python -m invoke ARGS`, timed as a user runs it; every output line stamped when it arrives."""
        self.check_stop()
        cmd = [sys.executable, "-m", "invoke", *args]
        lines: list[tuple[float, str, str]] = []
        start = time.time()
        t0 = time.perf_counter()
        proc = subprocess.Popen(cmd, cwd=ROOT, env=self.run_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                text=True, encoding="utf-8", errors="replace", bufsize=1)

        def read(stream, name):
            for line in stream:
                lines.append((time.time(), name, ANSI.sub("", line.rstrip("\n"))))

        readers = [threading.Thread(target=read, args=(proc.stdout, "out"), daemon=True),
                   threading.Thread(target=read, args=(proc.stderr, "err"), daemon=True)]
        for r in readers:
            r.start()
        aborted = None
        interrupted = False
        while proc.poll() is None:
            try:
                proc.wait(timeout=0.5)
            except subprocess.TimeoutExpired:
                pass
            except KeyboardInterrupt:     # Ctrl-C reached the command too: let it finish (a deploy rolls back)
                interrupted = True
            if aborted is None and self.stop_file and self.stop_file.exists():
                aborted = f"{self.stop_file} appeared during `invoke {' '.join(args)}`: interrupted it (SIGINT)"
                print(f"  {aborted}", flush=True)
                proc.send_signal(signal.SIGINT)
        elapsed = time.perf_counter() - t0
        for r in readers:
            r.join(timeout=10)
        lines.sort(key=lambda x: x[0])
        result = {"args": args, "start": start, "end": start + elapsed, "elapsed": elapsed, "rc": proc.returncode, "lines": lines}
        if aborted:
            raise Aborted(aborted)
        if interrupted:
            raise KeyboardInterrupt
        if check and proc.returncode:
            tail = "\n".join(text for _, _, text in lines[-40:])
            raise RuntimeError(f"command failed ({proc.returncode}): invoke {' '.join(args)}\n{tail}")
        return result

    def stdout(self, result: dict) -> str:
        return "\n".join(text for _, stream, text in result["lines"] if stream == "out")

    def last_release(self) -> dict:
        out = self.stdout(self.cli(["releases", f"--env={self.env}", "--json"]))
        entries = json.loads(out[out.index("["):out.rindex("]") + 1])
        return entries[-1] if entries else {}


def steps(results: list[dict]) -> tuple[dict[str, float], dict[str, list[tuple[float, float]]], list[str]]:
    """(seconds per category, phase windows, the step lines) of one method's commands."""
    out = {name: 0.0 for name, _ in CATEGORIES}
    out[SUITE] = 0.0
    windows: dict[str, list[tuple[float, float]]] = {"snapshot step": [], "suite": []}
    seen = []
    for result in results:
        suite_start = None
        for t, stream, text in result["lines"]:
            if stream != "err":
                continue
            text = text.strip()
            m = STEP.match(text)
            if m:
                seen.append(text)
                title, secs = m.group(1), float(m.group(2))
                for name, pattern in CATEGORIES:
                    if pattern.search(title):
                        out[name] += secs
                        break
                if title.startswith("snapshot of "):
                    windows["snapshot step"].append((t - secs, t))
                continue
            if SUITE_START.match(text):
                suite_start = t
                continue
            m = SUITE_END.match(text)
            if m:
                seen.append(text)
                out[SUITE] += float(m.group(2))
                windows["suite"].append((suite_start if suite_start is not None else t - float(m.group(2)), t))
    out[OTHER] = sum(r["elapsed"] for r in results) - sum(out.values())
    return out, windows, seen


# ---- the environment --------------------------------------------------------------

class Env:
    def __init__(self, env: str):
        from lapinfra.project import Project
        from lapinfra.report import Reporter

        self.project = Project(env, root=ROOT, reporter=Reporter(quiet=True))
        self.ip = str(self.project.env.master.ip)
        self.domain = self.project.env.domain
        if ipaddress.ip_address(self.ip) not in PROJECT_NET:
            sys.exit(f"{env}'s master is {self.ip}, outside {PROJECT_NET}: this benchmark probes only the project's own nodes")

    def scheduler(self) -> dict:
        """The backup container's schedule (status.json on the master)."""
        from lapinfra.deploy import MasterSession

        with MasterSession(self.project) as s:
            return s.read_json(STATUS) or {}

    def image_id(self) -> str:
        return self.project.docker.images.get(f"infra/{IMAGE}").id

    def wait_for_scheduler(self) -> dict:
        """Do not start a run while a scheduled snapshot (every container paused) is due or running."""
        status = self.scheduler()
        if not status.get("next_run"):
            return status
        due = iso(status["next_run"]) - time.time()
        if not -120 < due < SCHEDULER_MARGIN:
            return status
        print(f"  (waiting for the scheduled snapshot due in {due:.0f}s to finish)", flush=True)
        deadline = time.time() + max(due, 0) + 150
        time.sleep(max(due, 0) + 3)
        while time.time() < deadline:
            now = self.scheduler()
            if now.get("last_run") != status.get("last_run"):
                return now
            time.sleep(2)
        return self.scheduler()


def iso(text: str) -> float:
    return datetime.datetime.fromisoformat(text.replace("Z", "+00:00")).timestamp()


def scheduled_window(before: dict, after: dict) -> list[tuple[float, float]]:
    """A scheduled snapshot that started between the two status reads (it pauses every container)."""
    if after.get("last_run") and after.get("last_run") != before.get("last_run"):
        start = iso(after["last_run"])
        return [(start, start + float(after.get("duration_s") or 0))]
    return []


def write_marker(value: str) -> None:
    MARKER.write_text(f"bench/deploy.py: a change to {IMAGE} only ({value}); removed when the benchmark ends\n")


def measure(method: str, runner: Runner, envx: Env, checks: dict, run_no: int) -> dict:
    from lapinfra.gitinfo import release_id

    env = runner.env
    write_marker(f"run {run_no} {method[:10]} {uuid.uuid4().hex}")
    release = release_id(ROOT)
    before = envx.wait_for_scheduler()
    load = os.getloadavg()
    threads = {name: Probe(name, check) for name, (check, _) in checks.items()}
    for t in threads.values():
        t.start()
    time.sleep(1.0)                      # a second of good probes before the command starts
    results = []
    try:
        if method == A:
            results.append(runner.cli(["build", "deploy", f"--env={env}", "--force"]))
        else:
            results.append(runner.cli(["stop", f"--env={env}"]))
            results.append(runner.cli(["deploy", f"--env={env}", "--force"]))
    finally:
        time.sleep(1.0)
        samples = {name: t.finish() for name, t in threads.items()}
    wall = results[-1]["end"] - results[0]["start"]
    after = envx.scheduler()
    per_step, windows, seen = steps(results)
    windows["scheduled snapshot"] = scheduled_window(before, after)
    entry = runner.last_release()
    if entry.get("release") != release or entry.get("outcome") != "deployed":
        raise RuntimeError(f"the last release record is not this run's deploy of {release}: "
                           f"{ {k: entry.get(k) for k in ('release', 'outcome', 'step', 'error')} }")
    text = "\n".join(t for r in results for _, _, t in r["lines"])
    # the record keeps one action per service; the registry is reconciled twice (before the push and
    # with the others), so a registry created in the first round reads "kept": the step lines say what happened
    containers = dict(entry.get("containers", {}))
    for name, action in re.findall(r"^✓ infra_(\S+): (created|recreated) \(", text, re.MULTILINE):
        containers[name] = action
    row = {
        "method": method, "run": run_no, "release": release, "wall": wall,
        "commands": {" ".join(r["args"]): r["elapsed"] for r in results},
        "steps": per_step, "step_lines": seen, "windows": windows, "load": load,
        "pushed": entry.get("pushed", []), "containers": containers, "record_containers": entry.get("containers", {}),
        "tagged": len(re.findall(r"tagged in the registry \(nothing uploaded\)", text)),
        "suite": entry.get("suite"), "snapshot": entry.get("snapshot"),
        "downtime": {name: downtime(s, windows) for name, s in samples.items()},
        "samples": {name: [(round(t, 3), ok, d) for t, ok, d in s] for name, s in samples.items()},
    }
    if any(s and not s[0][1] for s in samples.values()):
        row["failing_before"] = [name for name, s in samples.items() if s and not s[0][1]]
    return row


def baseline(checks: dict, seconds: float) -> dict:
    threads = {name: Probe(name, check) for name, (check, _) in checks.items()}
    for t in threads.values():
        t.start()
    time.sleep(seconds)
    return {name: downtime(t.finish(), {}) for name, t in threads.items()}


def machine(envx: Env | None) -> dict:
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    docker = ""
    if envx is not None:
        try:
            docker = envx.project.docker.version().get("Version", "")
        except Exception:
            pass
    return {"cpus": os.cpu_count(), "mem": mem, "docker": docker}


def git_status() -> list[str]:
    return subprocess.run(["git", "-C", str(ROOT), "status", "--short"], capture_output=True, text=True).stdout.splitlines()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", default="staging", help="the environment to measure: deployed, promoted from another (default staging)")
    ap.add_argument("--runs", type=int, default=2, help="rounds of A then B, round-robin (default 2)")
    ap.add_argument("--timeout", type=float, default=1.0, help="timeout of one DNS or HTTP probe, seconds (default 1.0)")
    ap.add_argument("--write", metavar="PATH", help=f"write the results into the '## {HEADING}' section of PATH")
    ap.add_argument("--raw", metavar="PATH", help="also save the raw measurements (every probe) as JSON")
    ap.add_argument("--stop-file", metavar="PATH", type=Path,
                    help="abort when this file appears: interrupt the running command, remove the marker, start nothing more")
    args = ap.parse_args()
    if args.env == "test":
        sys.exit("refusing --env test: the e2e tests use it, and this recreates its containers")
    if MARKER.exists():
        sys.exit(f"{MARKER.relative_to(ROOT)} exists (an interrupted run?): remove it and "
                 f"`invoke build deploy --env={args.env} --force` first")

    t0 = time.time()
    runner = Runner(args.env, args.stop_file)
    envx = Env(args.env)
    if not envx.project.env.promoted_from:
        sys.exit(f"{args.env} is not promoted from another environment: its deploys take no snapshot and run no suite")
    checks = probes(envx.ip, envx.domain, args.timeout)
    info = {"date": datetime.date.today().isoformat(), "env": args.env, "runs": args.runs, "ip": envx.ip,
            "domain": envx.domain, "timeout": args.timeout, "load_start": os.getloadavg(),
            "git_before": git_status(), "checks": {n: what for n, (_, what) in checks.items()}}
    rows: list[dict] = []
    error = None
    restored = None
    try:
        runner.check_stop()
        info["machine"] = machine(envx)
        info["image_before"] = envx.image_id()
        current = runner.last_release()
        info["release_before"] = current.get("release")
        if current.get("outcome") != "deployed":
            raise RuntimeError(f"{args.env}'s last release record is not a deploy ({current.get('outcome')}): deploy it first")
        print(f"{args.env}: master {envx.ip}, running {info['release_before']}; baseline probes (10 s) ...", flush=True)
        info["baseline"] = baseline(checks, 10.0)
        print("  " + ", ".join(f"{n} {d['failed']}/{d['probes']} failed" for n, d in info["baseline"].items()), flush=True)
        for i in range(1, args.runs + 1):
            for method in (A, B):
                row = measure(method, runner, envx, checks, i)
                rows.append(row)
                changed = {k: v for k, v in row["containers"].items() if v != "kept"}
                print(f"  run {i}/{args.runs} {method}: {row['wall']:.1f}s; pushed {row['pushed']}, "
                      f"{len(changed)} containers changed ({', '.join(sorted(set(changed.values()))) or '-'}); downtime "
                      + ", ".join(f"{n} {d['down']:.1f}s" for n, d in row["downtime"].items()), flush=True)
    except (Exception, KeyboardInterrupt) as exc:
        error = exc
        print(f"benchmark stopped: {type(exc).__name__}: {str(exc)[:2000]}", flush=True)
    finally:
        MARKER.unlink(missing_ok=True)
        aborted = isinstance(error, Aborted) or bool(args.stop_file and args.stop_file.exists())
        if aborted:
            print(f"marker removed; NOT redeploying (stop file). To restore: "
                  f"`.venv/bin/invoke build deploy --env={args.env} --force`", flush=True)
        else:
            print("marker removed; deploying the clean tree again ...", flush=True)
            try:
                result = runner.cli(["build", "deploy", f"--env={args.env}", "--force"])
                entry = runner.last_release()
                restored = {"elapsed": result["elapsed"], "release": entry.get("release"), "outcome": entry.get("outcome"),
                            "changed": {k: v for k, v in entry.get("containers", {}).items() if v != "kept"},
                            "image_after": envx.image_id()}
                print(f"  restored: {restored}", flush=True)
            except Exception as exc:
                restored = {"error": str(exc)[:2000]}
                print(f"RESTORE FAILED: {exc}", flush=True)
    info["load_end"] = os.getloadavg()
    info["elapsed"] = time.time() - t0
    info["restored"] = restored
    info["git_after"] = git_status()
    if args.raw:
        Path(args.raw).write_text(json.dumps({"info": info, "rows": rows,
                                              "error": repr(error) if error else None}, indent=1, default=str))
    if error is not None or not rows or not restored or "error" in restored:
        sys.exit(1)
    report = render(info, rows)
    print("\n" + report)
    if args.write:
        write_section(Path(args.write), HEADING, report)
        print(f"written to {args.write}")


# ---- the report -------------------------------------------------------------------

def med(xs) -> float:
    return statistics.median(xs) if xs else float("nan")


def fmt(x: float, nd: int = 1) -> str:
    return "n/a" if x != x else f"{x:.{nd}f}"


def loads(x) -> str:
    return ", ".join(f"{v:.1f}" for v in x)


def render(info: dict, rows: list[dict]) -> str:
    by = {m: [r for r in rows if r["method"] == m] for m in (A, B)}
    wall = {m: [r["wall"] for r in rs] for m, rs in by.items()}
    ratio = med(wall[B]) / med(wall[A])
    m = info["machine"]
    names = list(info["checks"])
    unchanged = [n for n in names if n != "app"]

    def containers(rs):
        outs = []
        for r in rs:
            c = r["containers"]
            counts = {}
            for v in c.values():
                counts[v] = counts.get(v, 0) + 1
            changed = sorted(f"infra_{k}" for k, v in c.items() if v != "kept")
            text = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
            if 0 < len(changed) <= 4:
                text += f" ({', '.join(changed)})"
            outs.append(text)
        return "; ".join(sorted(set(outs)))

    def pushed(rs):
        return "; ".join(sorted({", ".join(r["pushed"]) or "none" for r in rs}))

    rows_wall = [
        f"| {meth} | {fmt(med(wall[meth]))} | {fmt(min(wall[meth]))} | {', '.join(fmt(w) for w in wall[meth])} "
        f"| {pushed(rs)} | {containers(rs)} |"
        for meth, rs in by.items()]
    cats = [name for name, _ in CATEGORIES] + [SUITE, OTHER]
    rows_steps = []
    for cat in cats:
        a, b = med([r["steps"][cat] for r in by[A]]), med([r["steps"][cat] for r in by[B]])
        if a < 0.05 and b < 0.05:
            continue
        rows_steps.append(f"| {cat} | {fmt(a)} | {fmt(b)} | {fmt(b - a):>5} |")
    rows_steps.append(f"| **total (wall clock)** | **{fmt(med(wall[A]))}** | **{fmt(med(wall[B]))}** | {fmt(med(wall[B]) - med(wall[A]))} |")

    def d(rs, name, key, phase=None):
        vals = [r["downtime"][name]["split"][phase] if phase else r["downtime"][name][key] for r in rs]
        return fmt(med(vals)) + (f" ({fmt(max(vals))})" if len(vals) > 1 and max(vals) - med(vals) >= 0.05 else "")

    rows_down = []
    for name in names:
        what = info["checks"][name] + (" **changed**" if name == "app" else "")
        rows_down.append(
            f"| {what} | {d(by[A], name, 'down')} | {d(by[A], name, 'longest')} | {d(by[A], name, None, 'rest of the deploy')} "
            f"| {d(by[A], name, None, 'snapshot step')} | {d(by[A], name, None, 'suite')} "
            f"| {d(by[B], name, 'down')} | {d(by[B], name, 'longest')} |")

    a_rest_unchanged = max(r["downtime"][n]["split"]["rest of the deploy"] for r in by[A] for n in unchanged)
    a_snap_unchanged = [r["downtime"][n]["split"]["snapshot step"] for r in by[A] for n in unchanged]
    a_total_unchanged = max(r["downtime"][n]["down"] for r in by[A] for n in unchanged)
    b_min_unchanged = min(r["downtime"][n]["down"] for r in by[B] for n in unchanged)
    sched = [r for r in rows if r["windows"].get("scheduled snapshot")]
    before_fail = [r for r in rows if r.get("failing_before")]
    base = info.get("baseline", {})
    base_fail = {n: v for n, v in base.items() if v["failed"]}
    apps = {k for k in rows[0]["containers"] if k.startswith("app")}
    a_expected = all(r["pushed"] == [IMAGE] and {k for k, v in r["containers"].items() if v != "kept"} == apps
                     for r in by[A])
    b_all_created = all(all(v == "created" for v in r["containers"].values()) for r in by[B])
    failures = {}
    for r in rows:
        for n, dt in r["downtime"].items():
            for kind, cnt in dt["failures"].items():
                failures.setdefault(kind, 0)
                failures[kind] += cnt
    restored = info.get("restored") or {}
    pulls_a = med([r["steps"]["pull images on the node"] for r in by[A]])
    health_a = med([r["steps"]["health checks of started containers"] for r in by[A]])
    snap_a = med([r["steps"]["snapshot before the deploy"] for r in by[A]])
    suite_a = med([r["steps"][SUITE] for r in by[A]])
    heavy = max(*info["load_start"], *info["load_end"], *(x for r in rows for x in r["load"])) > 1.5

    lines = [
        f"## {HEADING}",
        "",
        f"A deploy that changes one image of many (`bench/deploy.py`): lap-infra pushes only the images the",
        "node's registry lacks (an image the running release already has is tagged inside the registry,",
        "not uploaded) and recreates only the containers whose spec (image id, config, secrets) changed.",
        "The baseline is what the seed's `stop.sh` + `start.sh` did: remove every container and create",
        f"them all again. Measured on the `{info['env']}` environment, {info['runs']} rounds taken round-robin",
        f"(A, B, A, B, ...), each after a real change of `{IMAGE}` (a marker file with a fresh random value in",
        f"images/{IMAGE}/: a new build context, so a new `lapinfra.hash` label, image id and release id; only",
        f"the label changes, so the image adds no layer), wall-clock seconds as a user runs the commands:",
        "",
        f"- A, {A}: `invoke build deploy --env={info['env']} --force`",
        f"- B, {B}: `invoke stop --env={info['env']}`, then `invoke deploy --env={info['env']} --force`",
        "  (its `build` pre-task builds the changed image; every container is created again)",
        "",
        "`--force` skips only the gate (these images were never verified on `test`): both methods take the",
        "pre-deploy snapshot and run the verification suite on the target, as every deploy to a promoted",
        "environment does. Downtime: probes every 0.2 s, in threads while each method runs, to the master",
        f"({info['ip']}) only, each with a {info['timeout']:.1f} s timeout: {', '.join(info['checks'].values())}",
        "(HTTP: GET / on port 80 with that Host header, a new connection each time). A probe fails on a",
        "timeout, a refused connection, no A record, or HTTP >= 500 (the proxy's 502/503/504). An outage runs",
        "from the first failed probe to the next good one (resolution: the 0.2 s interval, the timeout while",
        "probes time out); downtime is the sum of the outages, split by when they happened.",
        "",
        f"- date: {info['date']}",
        f"- machine: {m['cpus']} CPUs (nproc), {m['mem']:.1f} GiB memory, Docker Engine {m['docker'] or '?'}; the nodes are",
        f"  containers on this host; load average {loads(info['load_start'])} at the start, {loads(info['load_end'])} at the end"
        + ("; above 1.5 at some point: absolute times are noisy" if heavy else ""),
        f"- {len(rows[0]['containers'])} services on the master; no warm-up run; benchmark run time {info['elapsed'] / 60:.1f} min"
        " (including the final deploy of the clean tree)",
        f"- idle baseline, 10 s of probes before the first run: "
        + (", ".join(f"{n} {v['failed']}/{v['probes']} failed" for n, v in base_fail.items()) if base_fail else "no probe failed"),
        "",
        "| method | median (s) | min (s) | runs (s) | images pushed | containers (release record and step lines) |",
        "|---|---|---|---|---|---|",
        *rows_wall,
        "",
        f"- B / A: **{ratio:.2f}x** the wall-clock time (medians)",
        f"- A pushed {'only ' + IMAGE if a_expected else 'NOT only ' + IMAGE + ' or changed other containers than ' + ', '.join(sorted('infra_' + a for a in apps))}"
        f"{' and recreated only ' + ', '.join(sorted('infra_' + a for a in apps)) + ', every other container kept' if a_expected else ''};"
        f" the other {med([r['tagged'] for r in by[A]]):.0f} images of the new release were tagged inside the node's registry"
        " (copy_in_registry: blobs mounted, manifest put), nothing uploaded. B"
        + (" created every container again" if b_all_created else " did NOT create every container again (see the table)"),
        "",
        "Where the time goes (seconds, medians; from the commands' own `✓ <step> (N.Ns)` lines and the suite's",
        "summary line; \"other\" is the rest of the wall-clock time):",
        "",
        f"| step | A | B | B - A |",
        "|---|---|---|---|",
        *rows_steps,
        "",
        f"- the snapshot ({fmt(snap_a)} s in A) and the verification suite ({fmt(suite_a)} s in A) are much of a",
        "  one-image deploy; both methods run them. What B adds is removing and creating",
        "  every container and their health checks, and every service is down meanwhile (below)",
    ]
    if pulls_a >= 0.5:
        lines.append(
            f"- A still pulls on the node ({fmt(pulls_a)} s): the new release names every image"
            " `infra/<release>/<name>`, a reference the node has not pulled yet, so each is pulled (manifest only,"
            " its layers are there) even when the container is kept")
    if health_a >= 5:
        lines.append(
            f"- the health checks of the two recreated app containers take {fmt(health_a)} s in A: the deploy waits for"
            " Docker's first health check, which runs one `--interval` (30 s in images/sampleapp/Dockerfile) after start")
    lines += [
        "",
        "Downtime per check, seconds: median of the runs (the worst run in brackets when it differs). For A the",
        "downtime is split by when it happened: during the deploy's own changes (\"rest\"), during its snapshot",
        "step (restic's `backup` pauses every infra_* container), during the verification suite:",
        "",
        "| check | A: down | A: longest | A: of it, rest of the deploy | A: of it, snapshot step | A: of it, suite | B: down | B: longest |",
        "|---|---|---|---|---|---|---|---|",
        *rows_down,
        "",
        f"- unchanged services in A: {fmt(a_rest_unchanged, 2)} s down outside the snapshot step and the suite"
        + (" (none: the deploy itself did not interrupt them)" if a_rest_unchanged < 0.05 else " (NOT none)")
        + f"; {fmt(a_total_unchanged, 1)} s at most in all"
        + (f", of it {fmt(min(a_snap_unchanged), 1)}-{fmt(max(a_snap_unchanged), 1)} s in the snapshot step: the pre-deploy"
           " snapshot pauses every container for restic's backup, so every service, changed or not, stops answering"
           " for about that long in every deploy to a promoted environment" if max(a_snap_unchanged) >= 0.05 else ""),
        f"- in B every unchanged service was down for at least {fmt(b_min_unchanged)} s per run: from `invoke stop`"
        " until its container was created again and answered",
    ]
    if sched:
        lines.append(f"- a scheduled snapshot of the backup container fell into {len(sched)} run(s): "
                     + ", ".join(f"{SHORT[r['method']]} run {r['run']}" for r in sched)
                     + "; its pause is counted in the totals and in no A column but \"down\"")
    if before_fail:
        lines.append("- checks already failing when a run started: "
                     + "; ".join(f"{SHORT[r['method']]} run {r['run']}: {', '.join(r['failing_before'])}" for r in before_fail))
    if failures:
        lines.append("- failed probes by kind, all runs: " + ", ".join(f"{k} {v}" for k, v in sorted(failures.items(), key=lambda x: -x[1])))
    lines += [
        f"- the marker is removed at the end and the clean tree deployed again ({fmt(restored.get('elapsed', float('nan')))} s;"
        f" it recreated {', '.join(sorted('infra_' + k for k in restored.get('changed', {}))) or 'nothing'});"
        f" infra/{IMAGE} is {'the same image as before the benchmark (the layer cache gives back the old image for the old build context)' if restored.get('image_after') == info.get('image_before') else 'NOT the image it was before'}",
        "",
        f"Reproduce: `.venv/bin/python bench/deploy.py --env {info['env']} --runs {info['runs']} --write docs/performance.md`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
