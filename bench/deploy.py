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
import subprocess
import sys
import threading
import time
import uuid
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (bench/, the script's own folder)
from benchlib import fmt, median as med  # noqa: E402

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
SUITE_END = re.compile(r"^!? ?verification suite on \S+: (passed|FAILED),? .*?([\d.]+)s wall")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
# Step lines, by what they do (first match wins); the rest of a command's time is "other".
CATEGORIES = [
    ("build the changed image", re.compile(r"^build ")),
    ("stop: remove every container", re.compile(r"^remove infra_")),
    ("snapshot before the deploy", re.compile(r"^snapshot of ")),
    ("upload config and secrets", re.compile(r"^upload config")),
    ("load node-local images", re.compile(r"^load infra/")),
    ("push images", re.compile(r"^push (infra/|\d+ images? into the node's registry)")),
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
        timer = benchlib.Timer.running()
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
        elapsed = timer.stop()
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
        from lapinfra.session import MasterSession

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
    load = benchlib.load_average()
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
    machine = benchlib.Machine.at_start()
    runner = Runner(args.env, args.stop_file)
    envx = Env(args.env)
    if not envx.project.env.promoted_from:
        sys.exit(f"{args.env} is not promoted from another environment: its deploys take no snapshot and run no suite")
    checks = probes(envx.ip, envx.domain, args.timeout)
    info = {"date": datetime.date.today().isoformat(), "env": args.env, "runs": args.runs, "ip": envx.ip,
            "domain": envx.domain, "timeout": args.timeout, "machine": machine.as_dict(),
            "git_before": git_status(), "checks": {n: what for n, (_, what) in checks.items()}}
    rows: list[dict] = []
    error = None
    restored = None
    try:
        runner.check_stop()
        info["image_before"] = envx.image_id()
        current = runner.last_release()
        info["release_before"] = current.get("release")
        if current.get("outcome") != "deployed":
            raise RuntimeError(f"{args.env}'s last release record is not a deploy ({current.get('outcome')}): deploy it first")
        print(f"{args.env}: master {envx.ip}, running {info['release_before']}; baseline probes (10 s) ...", flush=True)
        info["baseline"] = baseline(checks, 10.0)
        print("  " + ", ".join(f"{n} {d['failed']}/{d['probes']} failed" for n, d in info["baseline"].items()), flush=True)

        def progress(run: int, method: str, row: dict) -> None:
            rows.append(row)     # as the rounds go: a failure keeps what was measured for --raw
            changed = {k: v for k, v in row["containers"].items() if v != "kept"}
            print(f"  run {run}/{args.runs} {method}: {row['wall']:.1f}s; pushed {row['pushed']}, "
                  f"{len(changed)} containers changed ({', '.join(sorted(set(changed.values()))) or '-'}); downtime "
                  + ", ".join(f"{n} {d['down']:.1f}s" for n, d in row["downtime"].items()), flush=True)

        benchlib.round_robin({m: lambda run, m=m: measure(m, runner, envx, checks, run) for m in (A, B)},
                             args.runs, each=progress)
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
    info["machine"] = machine.finish().as_dict()
    info["elapsed"] = time.time() - t0
    info["restored"] = restored
    info["git_after"] = git_status()
    if args.raw:
        Path(args.raw).write_text(json.dumps({"info": info, "rows": rows,
                                              "error": repr(error) if error else None}, indent=1, default=str))
    if error is not None or not rows or not restored or "error" in restored:
        sys.exit(1)
    benchlib.publish(render(info, rows), args.write)


# ---- the report -------------------------------------------------------------------

def _containers(rs: list[dict]) -> str:
    outs = []
    for r in rs:
        c = r["containers"]
        counts: dict[str, int] = {}
        for v in c.values():
            counts[v] = counts.get(v, 0) + 1
        changed = sorted(f"infra_{k}" for k, v in c.items() if v != "kept")
        text = ", ".join(f"{n} {v}" for v, n in sorted(counts.items()))
        if 0 < len(changed) <= 4:
            text += f" ({', '.join(changed)})"
        outs.append(text)
    return "; ".join(sorted(set(outs)))


def _pushed(rs: list[dict]) -> str:
    return "; ".join(sorted({", ".join(r["pushed"]) or "none" for r in rs}))


def _down(rs: list[dict], name: str, key: str | None, phase: str | None = None) -> str:
    """Median over the runs of one downtime figure, the worst run in brackets when it differs."""
    vals = [r["downtime"][name]["split"][phase] if phase else r["downtime"][name][key] for r in rs]
    return fmt(med(vals)) + (f" ({fmt(max(vals))})" if len(vals) > 1 and max(vals) - med(vals) >= 0.05 else "")


def tables(info: dict, by: dict[str, list[dict]]) -> dict[str, list[list[str]]]:
    """The three tables' rows, as cells: wall clock per method, time per step, downtime per check."""
    wall = {m: [r["wall"] for r in rs] for m, rs in by.items()}
    table_wall = [[meth, fmt(med(wall[meth])), fmt(min(wall[meth])), ", ".join(fmt(w) for w in wall[meth]),
                   _pushed(rs), _containers(rs)] for meth, rs in by.items()]
    table_steps = []
    for cat in [name for name, _ in CATEGORIES] + [SUITE, OTHER]:
        a, b = med([r["steps"][cat] for r in by[A]]), med([r["steps"][cat] for r in by[B]])
        if a < 0.05 and b < 0.05:
            continue
        table_steps.append([cat, fmt(a), fmt(b), f"{fmt(b - a):>5}"])
    table_steps.append(["**total (wall clock)**", f"**{fmt(med(wall[A]))}**", f"**{fmt(med(wall[B]))}**",
                        fmt(med(wall[B]) - med(wall[A]))])
    table_down = []
    for name in info["checks"]:
        table_down.append([info["checks"][name] + (" **changed**" if name == "app" else ""),
                           _down(by[A], name, "down"), _down(by[A], name, "longest"),
                           _down(by[A], name, None, "rest of the deploy"), _down(by[A], name, None, "snapshot step"),
                           _down(by[A], name, None, "suite"), _down(by[B], name, "down"), _down(by[B], name, "longest")])
    return {"table_wall": table_wall, "table_steps": table_steps, "table_down": table_down}


def render(info: dict, rows: list[dict]) -> str:
    by = {m: [r for r in rows if r["method"] == m] for m in (A, B)}
    unchanged = [n for n in info["checks"] if n != "app"]
    apps = {k for k in rows[0]["containers"] if k.startswith("app")}
    failures: dict[str, int] = {}
    for r in rows:
        for dt in r["downtime"].values():
            for kind, cnt in dt["failures"].items():
                failures[kind] = failures.get(kind, 0) + cnt
    restored = info.get("restored") or {}
    machine = benchlib.Machine(**info["machine"])
    base_fail = {n: v for n, v in info.get("baseline", {}).items() if v["failed"]}

    def step_a(cat: str) -> float:
        return med([r["steps"][cat] for r in by[A]])

    return benchlib.render(
        "deploy", **tables(info, by),
        env=info["env"], runs=info["runs"], ip=info["ip"], timeout=info["timeout"], checks=info["checks"],
        date=info["date"], elapsed=info["elapsed"], image=IMAGE, a=A, b=B, machine=machine,
        heavy=machine.noisy(*(x for r in rows for x in r["load"])),
        services=len(rows[0]["containers"]),
        baseline_failed=", ".join(f"{n} {v['failed']}/{v['probes']} failed" for n, v in base_fail.items()),
        ratio=med([r["wall"] for r in by[B]]) / med([r["wall"] for r in by[A]]),
        apps=sorted("infra_" + a for a in apps),
        a_expected=all(r["pushed"] == [IMAGE] and {k for k, v in r["containers"].items() if v != "kept"} == apps
                       for r in by[A]),
        b_all_created=all(all(v == "created" for v in r["containers"].values()) for r in by[B]),
        tagged=med([r["tagged"] for r in by[A]]),
        snap_a=step_a("snapshot before the deploy"), suite_a=step_a(SUITE),
        pulls_a=step_a("pull images on the node"), health_a=step_a("health checks of started containers"),
        a_rest_unchanged=max(r["downtime"][n]["split"]["rest of the deploy"] for r in by[A] for n in unchanged),
        a_snap_unchanged=[r["downtime"][n]["split"]["snapshot step"] for r in by[A] for n in unchanged],
        a_total_unchanged=max(r["downtime"][n]["down"] for r in by[A] for n in unchanged),
        b_min_unchanged=min(r["downtime"][n]["down"] for r in by[B] for n in unchanged),
        sched=[f"{SHORT[r['method']]} run {r['run']}" for r in rows if r["windows"].get("scheduled snapshot")],
        before_fail=[f"{SHORT[r['method']]} run {r['run']}: {', '.join(r['failing_before'])}"
                     for r in rows if r.get("failing_before")],
        failures=[f"{k} {v}" for k, v in sorted(failures.items(), key=lambda x: -x[1])],
        restored=restored, restored_changed=sorted("infra_" + k for k in restored.get("changed", {})),
        image_same=restored.get("image_after") == info.get("image_before"))


if __name__ == "__main__":
    main()
