"""Benchmark: what a snapshot costs the services, per-service freezes against the global pause.

Measured in one run on a live environment (default: test), --runs rounds taken round-robin:

A. "frozen copies" (what every snapshot does): `lapbackup snapshot`: what is written by
   rename (registry, git, Maven/artifact files) is read live; Trac's and Buildbot's
   databases and bind9's dynamic zones are copied with just that container paused.
B. "pause everything" (the way snapshots were taken before, and what a user gets from a
   `docker pause` around `restic backup`): `lapbackup snapshot --pause-all`, every infra_*
   container paused for the whole restic backup.

Both run the backup tool the way every lap-infra command does (lapinfra.backup.run_tool),
one after the other on the same data, while one thread per check probes the master node's
address (only that address) every 20 ms, each probe on a fresh connection with a 3 s limit:
DNS (`ns.<domain>` A over UDP to <master>:53), HTTP GET through the port-80 proxy with the
Host header trac.<domain>, cd.<domain>, maven.<domain>, artifact.<domain>, app.<domain>,
and git's SSH banner on <master>:22. A probe that fails (timeout, refused, DNS without an
answer, HTTP >= 500) is an outage; one that answers late is a stall. Reported per check:
the longest wait beyond the check's own median answer time outside snapshots ("stall"),
and the failed probes.

Nothing is asserted. Never run it against an environment someone else is using (method B
pauses every service). It leaves two snapshots per round, labelled bench-frozen and
bench-pause-all; retention removes them like any other.

    .venv/bin/python bench/downtime.py --env test [--runs 3] [--write docs/performance.md]
"""
from __future__ import annotations

import argparse
import datetime
import socket
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (bench/, the script's own folder)

INTERVAL = 0.02
TIMEOUT = 3.0
SETTLE = 1.0          # s of probes before and after each snapshot
QUIET = 3.0           # s of a window without a snapshot: what the machine's load alone does to answers
METHODS = {"frozen copies": [], "pause everything": ["--pause-all"]}


def dns_check(ip: str, name: str):
    import dns.message
    import dns.query
    import dns.rdatatype

    def check():
        answer = dns.query.udp(dns.message.make_query(name, "A"), ip, port=53, timeout=TIMEOUT)
        return any(rrset.rdtype == dns.rdatatype.A for rrset in answer.answer)
    return check


def http_check(ip: str, host: str):
    def check():
        with socket.create_connection((ip, 80), timeout=TIMEOUT) as s:
            s.sendall(f"GET / HTTP/1.1\r\nHost: {host}\r\nConnection: close\r\n\r\n".encode())
            head = s.recv(64).decode(errors="replace")
        return head.startswith("HTTP/1.") and int(head.split()[1]) < 500
    return check


def ssh_banner_check(ip: str):
    def check():
        with socket.create_connection((ip, 22), timeout=TIMEOUT) as s:
            return s.recv(64).startswith(b"SSH-")
    return check


def checks(ip: str, domain: str) -> dict:
    out = {"dns": dns_check(ip, f"ns.{domain}"), "git (ssh)": ssh_banner_check(ip)}
    for name in ("trac", "cd", "maven", "artifact", "app"):
        out[name] = http_check(ip, f"{name}.{domain}")
    return out


class Probe(threading.Thread):
    """One check every INTERVAL s; keeps (start, seconds it took, ok) of each probe."""

    def __init__(self, check):
        super().__init__(daemon=True)
        self.check, self.samples, self.halt = check, [], threading.Event()

    def run(self) -> None:
        while not self.halt.is_set():
            t = time.perf_counter()
            try:
                ok = bool(self.check())
            except Exception:
                ok = False
            self.samples.append((t, time.perf_counter() - t, ok))
            self.halt.wait(max(0.0, t + INTERVAL - time.perf_counter()))

    def finish(self):
        self.halt.set()
        self.join(timeout=TIMEOUT + 2)
        return self.samples


def effect(samples, window, usual) -> dict:
    """The longest wait beyond the usual answer time inside ``window``, and the failures there."""
    inside = [s for s in samples if window[0] <= s[0] <= window[1]]
    # a probe started before the window that was still waiting when it began counts too
    waiting = [s for s in samples if s[0] < window[0] < s[0] + s[1]]
    stall = max((d - usual for _, d, _ in inside + waiting), default=0.0)
    return {"stall": max(stall, 0.0), "failed": sum(1 for _, _, ok in inside if not ok),
            "probes": len(inside), "usual": usual}


def measure(session, flags: list[str], label: str, ip: str, domain: str) -> dict:
    from lapinfra import backup

    threads = {name: Probe(check) for name, check in checks(ip, domain).items()}
    for t in threads.values():
        t.start()
    time.sleep(SETTLE)
    quiet = (time.perf_counter(), time.perf_counter() + QUIET)
    time.sleep(QUIET + SETTLE)
    with benchlib.Timer() as timer:
        result = backup.run_tool(session, ["snapshot", "--label", label, *flags])
    start, end = timer.start, timer.end
    time.sleep(SETTLE)
    samples = {name: t.finish() for name, t in threads.items()}
    out = {"seconds": end - start, "snapshot": result.get("id"), "paused": result.get("paused", []),
           "frozen": result.get("frozen", []), "checks": {}, "quiet": {}}
    for name, ss in samples.items():
        usual = benchlib.median([d for t, d, ok in ss if ok and not start <= t <= end], default=0.0)
        out["checks"][name] = effect(ss, (start, end), usual)
        out["quiet"][name] = effect(ss, quiet, usual)
    return out


def render(rows: dict, info: dict) -> str:
    """The section: per check, the longest stall and the failed probes of each method."""
    names = list(next(iter(rows.values()))[0]["checks"])
    every = [r for runs in rows.values() for r in runs]
    table = []
    for name in names:
        cells = [name, f"{max(r['quiet'][name]['stall'] for r in every) * 1000:.0f}"]
        for runs in rows.values():
            cells.append(f"{max(r['checks'][name]['stall'] for r in runs) * 1000:.0f}")
            cells.append(str(sum(r["checks"][name]["failed"] for r in runs)))
        table.append(cells)
    per: dict[str, list[float]] = {}
    for f in (f for r in rows["frozen copies"] for f in r["frozen"]):
        per.setdefault(f["name"], []).append(f["paused_ms"] or 0.0)
    held = ", ".join(f"{n} {max(v):.0f} ms" for n, v in sorted(per.items()))
    took = {m: benchlib.median(r["seconds"] for r in runs) for m, runs in rows.items()}
    return benchlib.render("downtime", methods=list(rows), table=table, held=held, took=took, quiet=QUIET, **info)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--env", default="test")
    ap.add_argument("--runs", type=int, default=3)
    ap.add_argument("--write", type=Path, help="write the section into this file (docs/performance.md)")
    a = ap.parse_args()
    from lapinfra.phases import MasterSession
    from lapinfra.project import Project

    project = Project(a.env, root=ROOT)
    ip, domain = str(project.env.master.ip), project.env.domain
    info = {"env": a.env, "runs": a.runs, "machine": benchlib.Machine.at_start(),
            "when": datetime.datetime.now(datetime.timezone.utc).strftime("%Y-%m-%d %H:%M UTC")}

    def progress(run: int, method: str, r: dict) -> None:
        worst = max(r["checks"].items(), key=lambda kv: kv[1]["stall"])
        print(f"run {run} {method}: {r['seconds']:.1f} s, snapshot {r['snapshot']}, "
              f"longest stall {worst[0]} {worst[1]['stall'] * 1000:.0f} ms, "
              f"failed {sum(c['failed'] for c in r['checks'].values())}", flush=True)

    with MasterSession(project) as session:
        methods = {method: lambda run, flags=flags: measure(session, flags, "bench-" + ("pause-all" if flags else "frozen"), ip, domain)
                   for method, flags in METHODS.items()}
        rows = benchlib.round_robin(methods, a.runs, each=progress)
    info["machine"].finish()
    benchlib.publish(render(rows, info), a.write)


if __name__ == "__main__":
    main()
