"""Realistic inputs of the status page: the facts of the test environment after a few weeks of
deploys, runs and snapshots (97 checks, 20 releases, 500 snapshots, a swarm of two workers),
and lapbackup's state. Used by the status page's tests and for docs/status.png."""
import datetime

NOW = datetime.datetime(2026, 12, 4, 5, 0, tzinfo=datetime.timezone.utc).timestamp()
RELEASE = "3ad1e5d0c4f2"
SNAPSHOT = "5f3c9a1e"
MODULES = {"registry": 9, "dns": 14, "git": 8, "trac": 7, "cd": 6, "cache": 6, "repository": 10, "lb": 8,
           "proxy": 6, "backup": 9, "node": 5, "hardening": 6, "swarm": 3}


def at(seconds_ago: float) -> str:
    return datetime.datetime.fromtimestamp(NOW - seconds_ago, datetime.timezone.utc).strftime("%Y-%m-%dT%H:%M:%S%z")


def cases(failing=()):
    out = []
    for module, count in MODULES.items():
        for i in range(count):
            name = f"test_{module}::test_{module}_check_{i}"
            failed = name in failing
            out.append({"check": name, "outcome": "failed" if failed else "passed", "seconds": round(0.05 + (i % 5) * 0.31, 2),
                        "message": f"AssertionError: {module} did not answer on port 8000 within 5 s\nassert 502 == 200" if failed else ""})
    return out


def facts(env, states=None, failing=(), now_run_passed=True):
    """The facts document of ``env`` (lapinfra/status.facts_document), as publish writes it."""
    from lapinfra import records, services as svc, status

    releases = []
    for i in range(20):
        rel = f"{i:02d}{RELEASE[2:]}" if i < 19 else RELEASE
        releases.append({"release": rel, "previous": releases[-1]["release"] if releases else None,
                         "outcome": "rolled back" if i == 12 else "deployed", "by": "alice@office-ws",
                         "at": at((20 - i) * 86400 + 3600), "seconds": 41.2,
                         **({"error": "the verification suite failed on test (1 failed, 0 errors)", "step": "verification suite"} if i == 12 else {})})
    releases.append({"release": "11" + RELEASE[2:], "previous": RELEASE, "outcome": "rolled back", "by_hand": True,
                     "data": False, "by": "bob@notebook", "at": at(7200)})
    releases.append({"release": RELEASE, "previous": "11" + RELEASE[2:], "outcome": "deployed", "by": "alice@office-ws",
                     "at": at(3600)})
    runs = [{"release": RELEASE, "passed": i % 7 != 3, "partial": False, "by": "alice@office-ws", "at": at((20 - i) * 3000),
             "counts": {"tests": 97, "failures": 0 if i % 7 != 3 else 2, "errors": 0, "skipped": 1,
                        "wall_seconds": round(16.3 + (i % 4) * 1.7, 1)}} for i in range(19)]
    run = {"release": RELEASE, "passed": now_run_passed and not failing, "partial": False, "by": "alice@office-ws",
           "at": at(600), "counts": {"tests": 97, "failures": len(failing), "errors": 0, "skipped": 0, "wall_seconds": 16.8}}
    runs.append(run)
    states = states if states is not None else {}
    all_states = {s.container: ("running", "healthy") for s in svc.services(env)}
    all_states["infra_environment"] = ("running", "")
    all_states.update(states)
    swarm = {"nodes": [{"hostname": "master", "role": "manager", "state": "ready", "availability": "active", "leader": True},
                       {"hostname": "worker1", "role": "worker", "state": "ready", "availability": "active", "leader": False},
                       {"hostname": "worker2", "role": "worker", "state": "ready", "availability": "active", "leader": False}],
             "apps": [{"app": "hello", "replicas": 2, "running": 2, "per_node": {"worker1": 1, "worker2": 1}}]}
    names = {"zones": {"host.internal": {"office.host.internal": ["172.28.10.50"], "printer.host.internal": ["172.28.10.51"]},
                       "node.internal": {"master.node.internal": ["172.28.10.10"], "backup.node.internal": ["172.28.10.11"],
                                         "worker1.node.internal": ["172.28.10.140"], "worker2.node.internal": ["172.28.10.141"]},
                       "pc.internal": {"alice-smith-notebook.pc.internal": ["172.28.10.200"]}}}
    record = records.Release.from_dict({"release": RELEASE, "deployed_by": "alice", "deployed_at": at(3600),
                                        "images": {s.image: {"repository": f"infra/{RELEASE}/{s.image}", "id": f"sha256:{i:064x}"}
                                                   for i, s in enumerate(svc.services(env))}})
    return status.facts_document(env, at=at(590), by="alice@office-ws", record=record, releases=releases, runs=runs,
                                 states=all_states, cases=status.case_facts(run, cases(failing)), swarm=swarm, names=names)


def backup(drill=True, drill_ok=True):
    history, total = [], 180_000_000
    for i in range(500):
        total += 1_500_000 + (i % 9) * 400_000
        sid = SNAPSHOT if i == 499 else f"{i:08x}"
        history.append({"at": at((499 - i) * 600 + 240), "snapshot": sid, "size_bytes": 412_000_000 + i * 90_000,
                        "data_added": 1_500_000, "repo_bytes": total})
    status = {"last_run": at(240), "outcome": "ok", "snapshot": SNAPSHOT, "duration_s": 3.4, "error": None,
              "next_run": at(-360)}
    out = {"status": status, "sizes": {SNAPSHOT: 412_000_000 + 499 * 90_000}, "history": history, "drill": None}
    if drill:
        out["drill"] = {"at": at(5400), "ok": drill_ok, "snapshot": "4e1d22b0", "seconds": 84.2,
                        "checked": ["dns zone", "git clone infra", "trac tickets", "registry catalog"],
                        "failures": [] if drill_ok else ["trac tickets: 0 of 12 tickets in the restored database"]}
    return out


def main(argv):
    """python -m tests.unit.status_fixture OUT.html [FAILING CHECK ...]: the page of these facts
    (trac stopped when checks fail), as docs/status.png shows it."""
    from pathlib import Path

    from lapinfra import config, status
    from tests.conftest import ROOT

    env = config.load(ROOT, "test")
    failing = tuple(argv[2:])
    ls = status.lapstatus()
    summary = ls.summarize(facts(env, states={"infra_trac": ("exited", "")} if failing else None, failing=failing),
                           backup(), now=NOW)
    Path(argv[1]).write_text(ls.render_html(summary))


if __name__ == "__main__":
    import sys

    main(sys.argv)
