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
import statistics
import subprocess
import sys
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perfdoc import write_section  # noqa: E402  (bench/, the script's own folder)

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
        from lapinfra.deploy import MasterSession
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
        start = time.perf_counter()
        proc = subprocess.run(cmd, cwd=ROOT, capture_output=True, text=True, env=self.run_env)
        elapsed = time.perf_counter() - start
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
    vals = [r[key] for r in rows if r.get(key) is not None]
    return statistics.median(vals) if vals else None


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
    return "n/a" if x is None else f"{x:.{nd}f}"


def machine() -> dict:
    mem = int(re.search(r"MemTotal:\s+(\d+)", Path("/proc/meminfo").read_text()).group(1)) / 2**20
    return {"cpus": os.cpu_count(), "mem": mem, "load": os.getloadavg()}


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
    info = {"date": datetime.date.today().isoformat(), "machine": machine(), "runs": args.runs, "env": args.env}
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

        for i in range(args.runs):
            b.master(f"mkdir -p {BENCH_DIR} && head -c 1048576 /dev/urandom > {BENCH_DIR}/random.bin")
            changed.append(b.snapshot("bench-changed"))
            unchanged.append(b.snapshot("bench-unchanged"))
            tars.append(b.tar_full(info["fallback"]))
            print(f"  run {i + 1}/{args.runs}: changed {changed[-1]['cli']:.2f}s (restic {fmt(changed[-1]['restic'])}s), "
                  f"unchanged {unchanged[-1]['cli']:.2f}s (restic {fmt(unchanged[-1]['restic'])}s), "
                  f"full tar {tars[-1]['cli']:.2f}s (inside {tars[-1]['inside']:.2f}s)", flush=True)

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
    info["load_end"] = os.getloadavg()
    info["elapsed"] = time.time() - t0
    if args.raw:
        Path(args.raw).write_text(json.dumps([info, changed, unchanged, tars, before, after], indent=1))
    report = render(info, changed, unchanged, tars, before, after)
    print("\n" + report)
    if args.write:
        write_section(Path(args.write), heading(info), report)
        print(f"written to {args.write}")


def heading(info) -> str:
    return "Snapshots" if not info.get("extra_mb") else f"Snapshots of a larger /data (+{info['extra_mb'] / 1000:.0f} GB of artifacts)"


def render(info, changed, unchanged, tars, before, after) -> str:
    m = info["machine"]
    load = ", ".join(f"{x:.1f}" for x in m["load"])
    load_end = ", ".join(f"{x:.1f}" for x in info["load_end"])
    un_cli, un_restic = med(unchanged, "cli"), med(unchanged, "restic")
    tar_cli, tar_in = med(tars, "cli"), med(tars, "inside")
    ratio = tar_cli / un_cli
    ratio_in = tar_in / un_restic if un_restic else None
    baseline = ("local `tar -C /data -cf - . | cat >/dev/null` on the master (the ssh path to the "
                "backup node FAILED, so nothing is copied)" if info["fallback"] else
                f"`tar -C /data -cf - . | ssh -i {KEY} root@<backup node> 'cat > {TAR_REMOTE}'` "
                "run on the master (the backup key and pinned host key; file removed after each run)")
    no_parent = [p for p in info.get("parents", []) if not p["parent"]]
    ran = f"{info['runs']} runs" if info["runs"] > 1 else "1 run"
    rows = [
        f"| snapshot, unchanged /data | {fmt(un_cli)} | {fmt(min(r['cli'] for r in unchanged))} | {fmt(med(unchanged, 'tool'))} | {fmt(un_restic)} | {fmt(med(unchanged, 'pause'))} | 1.0x |",
        f"| snapshot after a 1 MiB change | {fmt(med(changed, 'cli'))} | {fmt(min(r['cli'] for r in changed))} | {fmt(med(changed, 'tool'))} | {fmt(med(changed, 'restic'))} | {fmt(med(changed, 'pause'))} | {med(changed, 'cli') / un_cli:.1f}x |",
        f"| full tar copy (baseline) | {fmt(tar_cli)} | {fmt(min(r['cli'] for r in tars))} | - | {fmt(tar_in)} (tar) | none | {ratio:.1f}x |",
    ]
    waited = sum(1 for r in changed + unchanged if r.get("waited"))
    bl, al = before["list"], after["list"]
    bd, ad = med(before["digest"], "cli"), med(after["digest"], "cli")
    bdt, adt = med(before["digest"], "tool"), med(after["digest"], "tool")
    lines = [
        f"## {heading(info)}",
        "",
        "`invoke snapshot.create` runs restic on the master (a one-off `infra/backup` container)",
        "and stores into the repository on the backup node over sftp; restic uploads only chunks the",
        "repository lacks. The baseline a user would otherwise run copies the whole tree every time.",
        (f"Measured on the `{info['env']}` environment's real /data, in one run, {ran} of each" if not info.get("extra_mb") else
         f"Measured on the `{info['env']}` environment's /data plus {info['extra_mb']} MB of synthetic artifacts"
         f" (random, incompressible 64 MiB files, as a company's Maven/artifact repositories and registry grow), {ran} of each"),
        "taken round-robin (write 1 MiB, snapshot; snapshot again with nothing changed; full tar),",
        "wall-clock seconds as a user runs them (`python -m invoke ...`: Python start-up, SSH and",
        "the tunnel to the master's Docker API included) and from the inside (restic's backup",
        "step and the pause, from the backup tool's log timestamps; tar's own run, from",
        "timestamps on the master).",
        "",
        f"- date: {info['date']}",
        f"- machine: {m['cpus']} CPUs (nproc), {m['mem']:.1f} GiB memory; both nodes are containers",
        f"  on this host; load average {load} at the start, {load_end} at the end"
        + (": other work was running on the host, so absolute times are noisy" if max(*m["load"], *info["load_end"]) > 1.5 else ""),
        f"- data: /data {info['data_bytes'] / 1e6:.0f} MB, of it {info['registry_bytes'] / 1e6:.0f} MB registry images;"
        f" the tar copies {info['tar_bytes_expected'] / 1e6:.0f} MB"
        f" (without {', '.join('/data/' + e[2:] for e in TAR_EXCLUDES)}:",
        "  restic excludes the first two, and secrets must not land in plain text on the backup node)",
        f"- {info['restic_version'] or 'restic (version unknown)'}; no warm-up pass (/data fits in the page cache many"
        f" times over); first pass vs median: full tar {fmt(tars[0]['cli'])} s vs"
        f" {fmt(tar_cli)} s, unchanged snapshot {fmt(unchanged[0]['cli'])} s vs {fmt(un_cli)} s",
        f"- baseline: {baseline}",
        f"- benchmark run time: {info['elapsed'] / 60:.1f} min",
        "",
        "| method | median (s) | min (s) | tool container (s) | inside: restic backup / tar (s) | infra containers paused (s) | median / unchanged snapshot |",
        "|---|---|---|---|---|---|---|",
        *rows,
        "",
        f"- full tar copy / incremental snapshot of unchanged data: {ratio:.1f}x as a user runs them"
        f" (target: at least {TARGET:.0f}x: {'met' if ratio >= TARGET else 'NOT met'}"
        f"{'' if ratio >= 1 else f': the full copy is {1 / ratio:.1f}x FASTER'}); inside only"
        f" (tar vs restic's backup step): {fmt(ratio_in, 1)}x",
        f"- where a snapshot's {fmt(un_cli, 1)} s go (unchanged, medians): {fmt(sub(un_cli, med(unchanged, 'tool')), 1)} s on the"
        " workstation side (Python and invoke start-up, SSH, two tunnels, syncing the secrets, checking the"
        " tool image, creating and removing the container), "
        f"{fmt(sub(med(unchanged, 'tool'), un_restic), 1)} s in the tool container around the backup"
        f" ({calls(unchanged[0])} restic call(s) in all), and "
        f"{fmt(un_restic, 1)} s for `restic backup` itself",
        f"- every snapshot pauses the {info['paused_containers']} running infra_* containers (all but infra_backup) for"
        " the whole restic backup step: the pause column is that window as logged"
        " (`paused ...` to `unpaused ...`), median "
        f"{fmt(med(unchanged, 'pause'))} s unchanged, {fmt(med(changed, 'pause'))} s after the change; the tar copy"
        " pauses nothing but is not a consistent copy of live data either",
    ]
    if no_parent:
        lines.append(
            f"- restic used NO parent snapshot for {len(no_parent)} of the {len(info.get('parents', []))} benchmark snapshots "
            f"(hostnames {', '.join(sorted({p['hostname'] for p in no_parent}))}): each one-off tool container has a random"
            " hostname, and restic 0.14 looks for a parent of the same host, so every `snapshot.create` reads and"
            " hashes all of /data instead of skipping unchanged files (the 1 MiB change costs no more than no"
            " change for that reason). Giving the tool containers a fixed hostname (the scheduler's, `backup`)"
            " or `--host` would let restic skip unchanged files; not measured here")
    elif info.get("parents"):
        lines.append("- every benchmark snapshot had a parent snapshot (unchanged files are skipped, not re-read)")
    if waited:
        lines.append(f"- {waited} snapshot(s) waited for the scheduled snapshot's lock; their times include that wait")
    lines += [
        "",
        "Reading from the latest snapshot while snapshots accumulate (one file: `lapbackup digest latest",
        f"{DIGEST_PATH}`, median of {info['runs']}, timed as `python -c` calling `lapinfra.backup.digest`",
        "since no invoke task exposes it; `invoke snapshot.list --json`, once each; tool = the backup",
        f"container's run, from its log). Between the two rows the benchmark took its {2 * info['runs']} snapshots:",
        "",
        "| snapshots kept (N) | digest, CLI (s) | digest, tool (s) | restic calls by digest | list, CLI (s) | list, tool (s) | restic calls by list |",
        "|---|---|---|---|---|---|---|",
        *(f"| {x['list']['n']} | {fmt(med(x['digest'], 'cli'))} | {fmt(med(x['digest'], 'tool'))} | {calls(x['digest'][0])}"
          f" | {fmt(x['list']['cli'])} | {fmt(x['list']['tool'])} | {calls(x['list'])} |" for x in (before, after)),
        "",
        f"- digest at N={al['n']} / at N={bl['n']}: {div(ad, bd)}x as a user runs it, {div(adt, bdt)}x for the tool"
        f" ({al['n'] / bl['n']:.1f}x the snapshots): reading one file from the latest snapshot stays about flat."
        " restic resolves `latest` by reading the N small snapshot files, then loads only the trees on the path"
        " to the file and its data; it never walks the older snapshots' trees",
        f"- list at N={al['n']} / at N={bl['n']}: {al['cli'] / bl['cli']:.2f}x, {calls(bl)} and {calls(al)} restic calls:"
        " `lapbackup list` is one `restic snapshots` plus a `restic stats` only for a snapshot whose size it has"
        " not recorded yet (a snapshot records its size when it is taken); about"
        f" {fmt(per_snap(bl, al))} s per snapshot kept here",
        "- the benchmark's snapshots stay in the repository until the retention (`backup.keep`) forgets them;"
        " it removes /data/bench on the master and the tar on the backup node",
        "",
        f"Reproduce: `.venv/bin/python bench/snapshot.py --env {info['env']} --write docs/performance.md`",
        "",
    ]
    return "\n".join(lines)


if __name__ == "__main__":
    main()
