"""Benchmark: restic snapshots of the master's /data against a full tar copy to the backup node.

Measured in one run on a live environment (default: staging), round-robin per repetition:

1. `invoke snapshot.create` after a small change: a fresh 1 MiB random file
   /data/bench/random.bin on the master, then the snapshot;
2. `invoke snapshot.create` of unchanged /data (nothing written by the benchmark since 1.);
3. the baseline a user would otherwise run: on the master,
   `tar -C /data -cf - . | ssh root@<backup> 'cat > /data/bench-full.tar'` with the backup
   key and the pinned host key from /data/secrets/backup (falls back to a local
   `tar ... | cat >/dev/null` when that ssh path fails, and says so).

Each is timed as a user runs it (a subprocess of `python -m invoke ...`, so Python start-up,
SSH and tunnel set-up included) and from the inside: restic's backup duration and the pause
of the infra_* containers from the backup tool's own log lines (followed live through the
master's Docker API), and tar's duration from timestamps taken on the master.
Before and after, `snapshot.list` and `lapbackup digest latest environment/registry/config.yml`
(one file read from the latest snapshot) are timed with the snapshot count N, to show how
reading from the latest snapshot scales with N.

Nothing is asserted. Never run it against an environment someone else is using: every
snapshot pauses that environment's infra_* containers. It never restores, deploys, or
starts/stops anything; it removes /data/bench on the master and /data/bench-full.tar on the
backup node when done (also on failure or Ctrl-C).

    .venv/bin/python bench/snapshot.py --env staging [--runs 3] [--write docs/performance.md]
"""
from __future__ import annotations

import argparse
import datetime
import json
import os
import re
import shlex
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (bench/, the script's own folder)

TARGET = 5.0                 # the goal: unchanged-data snapshot >= 5x faster than a full copy
SCHEDULER_MARGIN = 45        # s: wait out a scheduled snapshot due this soon (it takes the same lock)
DIGEST_PATH = "environment/registry/config.yml"
BENCH_DIR = "/data/bench"
TAR_REMOTE = "/data/bench-full.tar"
KEY = "/data/secrets/backup/backup_ed25519"
KNOWN = "/data/secrets/backup/backup_known_hosts"
# Not copied by tar: what restic also excludes (the node's ssh host keys, the backup tool's own
# state and cache) and the secrets, which must not land in plain text on the backup node.
TAR_EXCLUDES = ["./lapinfra/ssh", "./backup", "./secrets"]
LOG_TS = re.compile(r"^(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?Z (.*)$")


def ts(stamp: str, frac: str | None) -> float:
    t = datetime.datetime.fromisoformat(stamp).replace(tzinfo=datetime.timezone.utc).timestamp()
    return t + (float("0." + frac[:9]) if frac else 0.0)


class Bench:
    def __init__(self, env: str):
        from lapinfra.phases import MasterSession
        from lapinfra.project import Project

        self.env = env
        self.project = Project(env, root=ROOT)
        self.backup_ip = str(self.project.env.node("backup").ip)
        self.session = MasterSession(self.project).__enter__()
        self.run_env = dict(os.environ, LAPINFRA_ENV=env)

    def close(self) -> None:
        self.session.__exit__(None, None, None)

    # ---- commands ---------------------------------------------------------------
    def cli(self, args: list[str], follow: str | None = None) -> tuple[float, str, list[tuple[float, str]]]:
        """Time `python -m invoke ARGS` (or a python -c script); optionally follow the tool container's log."""
        cmd = [sys.executable, "-m", "invoke", *args] if args[0] != "-c" else [sys.executable, *args]
        follower = LogFollower(self.session.docker, follow) if follow else None
        if follower:
            follower.start()
            follower.ready.wait(10)
        elapsed, proc = benchlib.timed_run(cmd, env=self.run_env)
        lines = follower.finish() if follower else []
        if proc.returncode:
            raise RuntimeError(f"command failed ({proc.returncode}): {shlex.join(cmd)}\n{proc.stdout}{proc.stderr}")
        return elapsed, proc.stdout + proc.stderr, lines

    def master(self, command: str, warn: bool = False) -> str:
        result = self.session.conn.run(command, hide=True, warn=True)
        if not result.ok and not warn:
            raise RuntimeError(f"on the master: {command}\n{result.stdout}{result.stderr}")
        return result.stdout

    def backup_ssh(self, remote: str) -> str:
        """The ssh command from the master to the backup node with the backup key, host key pinned."""
        return (f"ssh -i {KEY} -o IdentitiesOnly=yes -o UserKnownHostsFile={KNOWN} -o GlobalKnownHostsFile=/dev/null "
                f"-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10 root@{self.backup_ip} {shlex.quote(remote)}")

    def wait_for_scheduler(self) -> None:
        """Do not time a snapshot while the scheduled one holds the backup lock."""
        status = self.session.read_json("/data/backup/status.json") or {}
        if not status.get("next_run"):
            return
        due = datetime.datetime.fromisoformat(status["next_run"]).timestamp() - time.time()
        if not -120 < due < SCHEDULER_MARGIN:
            return
        print(f"  (waiting for the scheduled snapshot due in {due:.0f}s to finish)", flush=True)
        deadline = time.time() + max(due, 0) + 150
        time.sleep(max(due, 0) + 3)
        while time.time() < deadline:
            now = self.session.read_json("/data/backup/status.json") or {}
            if now.get("last_run") != status.get("last_run"):
                return
            time.sleep(2)

    # ---- measurements -----------------------------------------------------------
    def snapshot(self, label: str) -> dict:
        self.wait_for_scheduler()
        elapsed, out, lines = self.cli(["snapshot.create", f"--env={self.env}", "--label", label], follow="lapinfra-backup-snapshot-")
        m = re.search(r"snapshot ([0-9a-f]{8}) \(([\d.]+) MB", out)
        row = {"cli": elapsed, "id": m.group(1) if m else "?", "size_mb": float(m.group(2)) if m else None}
        row.update(tool_times(lines))
        return row

    def tar_full(self, fallback: bool) -> dict:
        excludes = " ".join(f"--exclude={e}" for e in TAR_EXCLUDES)
        sink = "cat >/dev/null" if fallback else self.backup_ssh(f"cat > {TAR_REMOTE}")
        # GNU tar does not read file contents when the archive is /dev/null: always pipe
        command = (f"s=$(date +%s.%N); tar -C /data {excludes} -cf - . 2>/tmp/bench-tar.err | {sink}; "
                   f"rc=\"${{PIPESTATUS[*]}}\"; e=$(date +%s.%N); echo \"BENCH $s $e $rc\"")
        elapsed, out, _ = self.cli(["node.ssh", f"--env={self.env}", "--", command])
        m = re.search(r"BENCH ([\d.]+) ([\d.]+) (\d+) (\d+)", out)
        if not m or m.group(3) not in ("0", "1") or m.group(4) != "0":  # tar 1: a file changed while read
            raise RuntimeError(f"full tar copy failed: {out.strip()[-400:]}")
        size = None
        if not fallback:
            size = int(self.master(self.backup_ssh(f"stat -c %s {TAR_REMOTE} && rm -f {TAR_REMOTE}")).split()[0])
        return {"cli": elapsed, "inside": float(m.group(2)) - float(m.group(1)), "bytes": size}

    def ssh_path_works(self) -> bool:
        out = self.master(self.backup_ssh("echo ok"), warn=True)
        return out.strip() == "ok"

    def list_(self) -> dict:
        elapsed, out, lines = self.cli(["snapshot.list", f"--env={self.env}", "--json"], follow="lapinfra-backup-list-")
        snaps = json.loads(out[out.index("["):out.rindex("]") + 1])
        return {"cli": elapsed, "n": len(snaps), "restic_calls": restic_calls(lines), **tool_times(lines)}

    def digest(self) -> dict:
        script = ("import json, sys; sys.path.insert(0, sys.argv[1]); from lapinfra.project import Project; "
                  "from lapinfra import backup; "
                  "print(json.dumps(backup.digest(Project(sys.argv[2], root=sys.argv[1]), 'latest', sys.argv[3])))")
        elapsed, out, lines = self.cli(["-c", script, str(ROOT), self.env, DIGEST_PATH], follow="lapinfra-backup-digest-")
        if '"sha256"' not in out:
            raise RuntimeError(f"digest printed no sha256: {out[-300:]}")
        return {"cli": elapsed, "restic_calls": restic_calls(lines), **tool_times(lines)}

    def repo_snapshots(self) -> list[dict]:
        """restic's own view (hostname, parent) of the snapshots, read without a lock via infra_backup."""
        script = ("import importlib.machinery as m; lb = m.SourceFileLoader('lb', '/usr/local/bin/lapbackup').load_module(); "
                  "rc, out, err = lb.restic('--no-lock', 'snapshots', '--json', quiet_errors=True); print(out if rc == 0 else '[]')")
        out = self.master(f"docker exec infra_backup python3 -W ignore -c {shlex.quote(script)} 2>/dev/null", warn=True)
        try:
            return json.loads(out or "[]")
        except ValueError:
            return []


class LogFollower(threading.Thread):
    """Streams the stderr (with Docker's timestamps) of the next backup tool container named PREFIX*."""

    def __init__(self, client, prefix: str):
        super().__init__(daemon=True)
        self.client, self.prefix = client, prefix
        self.ready, self.stop = threading.Event(), threading.Event()
        self.buf = b""

    def _tools(self):
        return [c for c in self.client.containers.list(filters={"label": "lapinfra.purpose=backup tool"})
                if c.name.startswith(self.prefix)]

    def run(self) -> None:
        try:
            old = {c.id for c in self._tools()}
        except Exception:
            old = set()
        self.ready.set()
        while not self.stop.is_set():
            try:
                new = [c for c in self._tools() if c.id not in old]
            except Exception:
                new = []
            if new:
                try:
                    for chunk in new[0].logs(stream=True, follow=True, timestamps=True, stdout=False, stderr=True):
                        self.buf += chunk
                except Exception:
                    pass
                return
            time.sleep(0.05)

    def finish(self) -> list[tuple[float, str]]:
        self.join(timeout=15)
        self.stop.set()
        lines = []
        for line in self.buf.decode(errors="replace").splitlines():
            m = LOG_TS.match(line)
            if m:
                lines.append((ts(m.group(1), m.group(2)), m.group(3)))
        return lines


def restic_calls(lines) -> int | None:
    return sum(1 for _, l in lines if re.search(r"lapbackup: restic ", l)) if lines else None


def tool_times(lines: list[tuple[float, str]]) -> dict:
    """From the tool's log: whole run, restic backup, pause window, waited for the lock."""
    if not lines:
        return {"tool": None, "restic": None, "pause": None, "waited": False}
    first = lambda pat: next((t for t, l in lines if re.search(pat, l)), None)  # noqa: E731
    backup, paused, unpaused = first(r"lapbackup: restic backup "), first(r"lapbackup: paused "), first(r"lapbackup: unpaused ")
    return {"tool": lines[-1][0] - lines[0][0],
            "restic": (unpaused - backup) if backup and unpaused else None,
            "pause": (unpaused - paused) if paused and unpaused else None,
            "waited": any("another lapbackup operation is running" in l for _, l in lines)}


def med(rows: list[dict], key: str) -> float | None:
    return benchlib.median((r[key] for r in rows if r.get(key) is not None), default=None)


def secs(rows: list[dict]) -> str:
    return ", ".join(f"{r['cli']:.2f}" for r in rows)


def div(a: float | None, b: float | None) -> str:
    return "n/a" if a is None or not b else f"{a / b:.2f}"


def sub(a: float | None, b: float | None) -> float | None:
    return None if a is None or b is None else a - b


def per_snap(before: dict, after: dict) -> float | None:
    if before.get("tool") is None or after.get("tool") is None or after["n"] == before["n"]:
        return None
    return (after["tool"] - before["tool"]) / (after["n"] - before["n"])


def calls(row: dict) -> str:
    return "n/a" if row.get("restic_calls") is None else str(row["restic_calls"])


def fmt(x: float | None, nd: int = 2) -> str:
    return benchlib.fmt(x, nd)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--env", required=True, help="the environment to measure (its nodes must be up)")
    ap.add_argument("--runs", type=int, default=3, help="timed repetitions of each snapshot/copy (default 3)")
    ap.add_argument("--write", metavar="PATH", help="write the results into the '## Snapshots' section of PATH")
    ap.add_argument("--raw", metavar="PATH", help="also save the raw measurements as JSON")
    ap.add_argument("--extra-mb", type=int, default=0, metavar="MB",
                    help="first add this much synthetic artifact data (random 64 MiB files in /data/bench/artifacts,"
                         " snapshotted once untimed), to see how both methods grow with the size of /data")
    args = ap.parse_args()
    if args.env == "test":
        sys.exit("refusing --env test: the e2e tests use it; every snapshot pauses its containers")

    t0 = time.time()
    machine = benchlib.Machine.at_start()
    info = {"date": datetime.date.today().isoformat(), "machine": machine.as_dict(), "runs": args.runs, "env": args.env}
    b = Bench(args.env)
    changed, unchanged, tars, before, after = [], [], [], {}, {}
    try:
        info["extra_mb"] = args.extra_mb
        if args.extra_mb:
            files = max(1, args.extra_mb // 64)
            print(f"adding {files * 64} MiB of synthetic artifacts to /data/bench/artifacts, then one untimed snapshot", flush=True)
            b.master(f"mkdir -p {BENCH_DIR}/artifacts && for i in $(seq 1 {files}); do"
                     f" head -c 67108864 /dev/urandom > {BENCH_DIR}/artifacts/a$i.bin; done")
            b.snapshot("bench-seed")
        info["data_bytes"] = int(b.master("du -sb /data").split()[0])
        info["registry_bytes"] = int(b.master("du -sb /data/registry").split()[0])
        info["tar_bytes_expected"] = int(b.master(
            "du -sb " + " ".join(f"--exclude=/data/{e[2:]}" for e in TAR_EXCLUDES) + " /data").split()[0])
        info["restic_version"] = b.master("docker exec infra_backup restic version", warn=True).strip()
        info["paused_containers"] = len([n for n in b.master("docker ps --format '{{.Names}}'").split()
                                         if n.startswith("infra_") and n != "infra_backup"])
        info["fallback"] = not b.ssh_path_works()
        if info["fallback"]:
            print("ssh from the master to the backup node with the backup key FAILED: "
                  "timing a local full tar (tar | cat >/dev/null) instead")

        print("reading from the latest snapshot, before:", flush=True)
        b.wait_for_scheduler()
        before = {"list": b.list_(), "digest": [b.digest() for _ in range(args.runs)]}
        print(f"  N={before['list']['n']}: list {before['list']['cli']:.2f}s, "
              f"digest {secs(before['digest'])}s", flush=True)

        def changed_snapshot(run: int) -> dict:
            b.master(f"mkdir -p {BENCH_DIR} && head -c 1048576 /dev/urandom > {BENCH_DIR}/random.bin")
            return b.snapshot("bench-changed")

        measured = {"changed": changed, "unchanged": unchanged, "tar": tars}   # filled as the rounds go

        def progress(run: int, method: str, row: dict) -> None:
            measured[method].append(row)
            if method == "tar":
                print(f"  run {run}/{args.runs}: changed {changed[-1]['cli']:.2f}s (restic {fmt(changed[-1]['restic'])}s), "
                      f"unchanged {unchanged[-1]['cli']:.2f}s (restic {fmt(unchanged[-1]['restic'])}s), "
                      f"full tar {tars[-1]['cli']:.2f}s (inside {tars[-1]['inside']:.2f}s)", flush=True)

        methods = {"changed": changed_snapshot,
                   "unchanged": lambda run: b.snapshot("bench-unchanged"),
                   "tar": lambda run: b.tar_full(info["fallback"])}
        benchlib.round_robin(methods, args.runs, each=progress)

        print("reading from the latest snapshot, after:", flush=True)
        b.wait_for_scheduler()
        after = {"list": b.list_(), "digest": [b.digest() for _ in range(args.runs)]}
        print(f"  N={after['list']['n']}: list {after['list']['cli']:.2f}s, "
              f"digest {secs(after['digest'])}s", flush=True)

        ids = {r["id"] for r in changed + unchanged}
        info["parents"] = [{"id": s["short_id"], "hostname": s.get("hostname"), "parent": (s.get("parent") or "")[:8]}
                           for s in b.repo_snapshots() if s["short_id"] in ids]
    finally:
        b.master(f"rm -rf {BENCH_DIR}", warn=True)
        if not info.get("fallback", True):
            b.master(b.backup_ssh(f"rm -f {TAR_REMOTE}"), warn=True)
        b.master("rm -f /tmp/bench-tar.err", warn=True)
        b.close()
    info["machine"] = machine.finish().as_dict()
    info["elapsed"] = time.time() - t0
    if args.raw:
        Path(args.raw).write_text(json.dumps([info, changed, unchanged, tars, before, after], indent=1))
    benchlib.publish(render(info, changed, unchanged, tars, before, after), args.write)


def render(info, changed, unchanged, tars, before, after) -> str:
    un_cli, un_restic = med(unchanged, "cli"), med(unchanged, "restic")
    tar_cli, tar_in = med(tars, "cli"), med(tars, "inside")
    figures = dict(info, machine=benchlib.Machine(**info["machine"]), changed=changed, unchanged=unchanged, tars=tars,
                   before=before, after=after, un_cli=un_cli, un_restic=un_restic, tar_cli=tar_cli, tar_in=tar_in,
                   ratio=tar_cli / un_cli, ratio_in=tar_in / un_restic if un_restic else None, target=TARGET,
                   excluded=", ".join("/data/" + e[2:] for e in TAR_EXCLUDES), key=KEY, tar_remote=TAR_REMOTE,
                   no_parent=[p for p in info.get("parents", []) if not p["parent"]], parents=info.get("parents", []),
                   waited=sum(1 for r in changed + unchanged if r.get("waited")), digest_path=DIGEST_PATH,
                   med=med, sub=sub, div=div, calls=calls, per_snap=per_snap)
    figures.setdefault("extra_mb", 0)
    return benchlib.render("snapshot", **figures)


if __name__ == "__main__":
    main()
