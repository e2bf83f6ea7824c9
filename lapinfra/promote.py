"""Promotion: the seed's deployToProduction.sh as one safe command.

``invoke build test deploy --env=prod`` on an environment that names the one it
is promoted from (``promoted_from: test``):

1. gate      the exact images (image ids, i.e. config digests) of the release
             passed the verification suite on the source environment (its
             ``verified.jsonl``); ``--force`` skips this and is recorded
2. lock      one deploy per environment (``/var/lib/lapinfra/deploy.lock`` on
             the master, created with O_EXCL, kept alive by a heartbeat)
3. snapshot  the target's ``/data`` on its backup node
4. push      only the images the target's registry lacks, through the tunnel
5. git       the infrastructure repository to the target's git server
6. start     recreate only the containers whose image or config changed
7. verify    the suite on the target

A failure after the snapshot restores it (images and data: the registry is part
of ``/data``) and starts the previous release. Every deploy and rollback is
appended to ``/data/lapinfra/releases.jsonl``, the audit log, which a restore
never rewinds. Environments without ``promoted_from`` (``test``) get the lock and
the audit log only: they are where releases are tried first.
"""
from __future__ import annotations

import contextlib
import difflib
import json
import os
import shlex
import socket
import sys
import tempfile
import threading
import time
from pathlib import Path

from . import services as svc
from . import verify
from .deploy import (DeployResult, MasterSession, activate, config_files, host_images, push_release,
                     registry_has, release_record)
from .errors import LapinfraError
from .gitinfo import release_id

RELEASES = f"{svc.STATE_DIR}/releases.jsonl"
RELEASE = f"{svc.STATE_DIR}/release.json"
LOCK = "/var/lib/lapinfra/deploy.lock"      # outside /data: a restore never brings a lock back
HEARTBEAT_SECONDS = 10
STALE_SECONDS = 60


# ---- the gate -----------------------------------------------------------------------

def check_gate(project, release: str, images: dict, force: bool = False) -> dict | None:
    """The source environment's passing run of exactly these images, or LapinfraError."""
    source_name = project.env.promoted_from
    if not source_name:
        return None
    if force:
        project.reporter.warn(f"--force: the gate (verified on {source_name}) is skipped; this is recorded")
        return {"source": source_name, "forced": True}
    from .project import Project

    source = Project(source_name, root=project.root, reporter=project.reporter)
    want = {name: image.id for name, image in images.items()}
    try:
        with MasterSession(source) as s:
            runs = verify.runs(s)
    except LapinfraError as exc:
        raise LapinfraError(f"cannot read {source_name}'s verification record ({exc}); "
                            f"{project.name} is promoted from {source_name} only") from None
    run = verified_run(runs, release, want)
    if run is not None:
        project.reporter.info(f"gate: release {release} passed the suite on {source_name} at {run['at']} ({run['by']})")
        return {"source": source_name, "verified_at": run["at"], "verified_by": run["by"], "forced": False}
    raise LapinfraError(
        f"release {release} may not be deployed to {project.name}: {refusal(runs, release)}. {project.name} takes only "
        f"images that passed the verification suite on {source_name}: run `invoke build deploy test --env={source_name}` "
        f"first (or `--force`, which is recorded)")


def verified_run(runs: list[dict], release: str, images: dict[str, str]) -> dict | None:
    """The latest full, passing run of exactly ``images`` (name -> id) as ``release``."""
    for run in reversed(runs):
        if run.get("passed") and not run.get("partial") and run.get("release") == release and run.get("images") == images:
            return run
    return None


def refusal(runs: list[dict], release: str) -> str:
    same = [r for r in runs if r.get("release") == release and not r.get("partial")]
    if not same:
        return "it was never verified there"
    if not same[-1].get("passed"):
        return "its last run there failed"
    return "the images differ from the ones verified there"


# ---- the lock -----------------------------------------------------------------------

def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


class DeployLock:
    """One deploy (or rollback) at a time per environment, on the master itself."""

    def __init__(self, session: MasterSession, project, purpose: str = "deploy"):
        self.s, self.p, self.purpose = session, project, purpose
        self.info = {"purpose": purpose, "by": verify.who(), "host": socket.gethostname(), "pid": os.getpid(),
                     "since": verify.now(), "command": " ".join(["invoke", *sys.argv[1:]])[:200]}
        self._stop = threading.Event()
        self._thread = None

    def state(self) -> dict | None:
        """The current holder with ``age`` (seconds since its heartbeat) and ``stale`` (why, or "")."""
        r = self.s.conn.run(f"cat {LOCK} && echo && echo $(( $(date +%s) - $(stat -c %Y {LOCK}) ))", hide=True, warn=True)
        if r.failed:
            return None
        *body, age = r.stdout.strip().splitlines()
        try:
            holder = json.loads("\n".join(body))
        except json.JSONDecodeError:
            holder = {"by": "unknown", "since": "unknown", "pid": 0, "host": ""}
        holder["age"] = int(age)
        holder["stale"] = ""
        if holder.get("host") == socket.gethostname() and holder.get("pid") and not _alive(int(holder["pid"])):
            holder["stale"] = f"its process {holder['pid']} on {holder['host']} is gone"
        elif holder["age"] > STALE_SECONDS:
            holder["stale"] = f"no heartbeat for {holder['age']}s"
        return holder

    def describe(self, holder: dict) -> str:
        return f"{holder.get('purpose', 'deploy')} by {holder.get('by')} (pid {holder.get('pid')}) since {holder.get('since')}"

    def __enter__(self):
        data = shlex.quote(json.dumps(self.info))
        r = self.s.conn.run(f"mkdir -p {Path(LOCK).parent} && (set -C; printf '%s' {data} > {LOCK})", hide=True, warn=True)
        if r.failed:
            holder = self.state()
            if holder is None:   # released between the two calls: try once more
                return self.__enter__()
            env = self.p.name
            if holder["stale"]:
                raise LapinfraError(f"{env} is locked by a stale {self.describe(holder)}: {holder['stale']}. "
                                    f"Check that no deploy runs, then break it with `invoke unlock --env={env}`")
            raise LapinfraError(f"{env} is being changed by another {self.describe(holder)} "
                                f"(heartbeat {holder['age']}s ago): wait for it to finish")
        self._thread = threading.Thread(target=self._beat, name="deploy-lock-heartbeat", daemon=True)
        self._thread.start()
        return self

    def _beat(self):
        while not self._stop.wait(HEARTBEAT_SECONDS):
            with contextlib.suppress(Exception):
                self.s.conn.run(f"touch -c {LOCK}", hide=True, warn=True)

    def __exit__(self, *exc):
        self._stop.set()
        if self._thread:
            self._thread.join(timeout=5)
        holder = self.state()
        if holder and holder.get("pid") == self.info["pid"] and holder.get("since") == self.info["since"]:
            self.s.conn.run(f"rm -f {LOCK}", hide=True, warn=True)


def unlock(project, force: bool = False) -> dict | None:
    """Break a stale lock (or, with ``force``, any lock); the holder that was removed."""
    with MasterSession(project) as s:
        lock = DeployLock(s, project)
        holder = lock.state()
        if holder is None:
            project.reporter.info(f"{project.name} is not locked")
            return None
        if not holder["stale"] and not force:
            raise LapinfraError(f"{project.name} is held by a live {lock.describe(holder)} (heartbeat {holder['age']}s ago); "
                                f"not breaking it (--force breaks it anyway)")
        s.conn.run(f"rm -f {LOCK}", hide=True)
        s.append_jsonl(RELEASES, {"outcome": "lock broken", "holder": holder, "by": verify.who(), "at": verify.now()})
        project.reporter.info(f"broke the lock of {lock.describe(holder)} ({holder['stale'] or 'forced'})")
        return holder


# ---- the git repository ---------------------------------------------------------

def push_git(s: MasterSession, project) -> str | None:
    """Push HEAD to the target's infrastructure repository (branch ``master``, the seed's
    productive version, and tag ``deployed-<commit>``); None when its git server is not up yet."""
    import git

    host_key = s.conn.run(f"cat {svc.DATA}/git/ssh/ssh_host_ed25519_key.pub", hide=True, warn=True)
    running = [c for c in s.docker.containers.list(filters={"name": "infra_git"}) if c.name == "infra_git"]
    if host_key.failed or not running:
        return None
    env = project.env
    repo = git.Repo(project.root)
    commit = repo.head.commit.hexsha[:12]
    with tempfile.TemporaryDirectory(prefix="lapinfra-git-") as tmp:
        known = Path(tmp) / "known_hosts"
        known.write_text(f"{env.master.ip} {' '.join(host_key.stdout.split()[:2])}\n")
        ssh = ["ssh", "-i", str(project.secrets.path("admin_ed25519")), "-o", "IdentitiesOnly=yes", "-o", "BatchMode=yes",
               "-o", f"UserKnownHostsFile={known}", "-o", "GlobalKnownHostsFile=/dev/null",
               "-o", "StrictHostKeyChecking=yes", "-o", "ConnectTimeout=20"]
        url = f"git@{env.master.ip}:{env.cd.repository}"
        try:
            repo.git.push(url, "+HEAD:refs/heads/master", f"+HEAD:refs/tags/deployed-{commit}",
                          env={"GIT_SSH_COMMAND": shlex.join(ssh), "GIT_TERMINAL_PROMPT": "0"})
        except git.GitCommandError as exc:
            raise LapinfraError(f"git push to {url} failed: {exc.stderr.strip()[-400:]}") from None
    return commit


# ---- deploy ---------------------------------------------------------------------

class Step:
    """The step a deploy is in, for the message when it fails."""

    def __init__(self):
        self.name = "start"

    def __call__(self, name: str) -> None:
        self.name = name


def deploy(project, force: bool = False) -> DeployResult:
    """Gate, lock, snapshot, push, git, start, verify; roll back on failure."""
    from . import backup

    env, rep = project.env, project.reporter
    gated = bool(env.promoted_from)
    release = release_id(project.root)
    images = host_images(project)
    files = config_files(project)
    gate = check_gate(project, release, images, force)
    record = release_record(project, release, images, files)
    result = DeployResult(release)
    started = time.monotonic()
    entry = {"release": release, "images": {n: i.id for n, i in images.items()}, "gate": gate,
             "by": verify.who(), "at": verify.now(), "snapshot": None, "suite": None}
    with MasterSession(project) as s, DeployLock(s, project):
        previous = (s.read_json(RELEASE) or {}).get("release")
        entry["previous"] = previous
        step = Step()
        try:
            if gated:
                step("snapshot")
                snap = backup.snapshot(project, label=f"pre-deploy {release[:12]}")
                entry["snapshot"] = snap["id"]
            step("push images")
            push_release(s, project, record, images, files, result)
            step("git push")
            git_commit = push_git(s, project)
            step("start containers")
            result.containers.update(activate(s, record, rep))
            if git_commit is None:
                step("git push")
                git_commit = push_git(s, project)
            entry["git"] = git_commit
            if gated:
                step("verification suite")
                passed, counts = verify.run_suite(project)
                entry["suite"] = {"passed": passed, **counts}
                _record_suite(s, record, passed, counts)
                if not passed:
                    raise LapinfraError(f"the verification suite failed on {env.name} "
                                        f"({counts.get('failures', 0)} failed, {counts.get('errors', 0)} errors; "
                                        f"report: {project.build_dir / 'junit.xml'})")
        except (Exception, KeyboardInterrupt) as exc:
            entry.update(step=step.name, error=str(exc).splitlines()[0][:500], seconds=round(time.monotonic() - started, 1))
            if entry["snapshot"] is None:
                entry["outcome"] = "failed"
                s.append_jsonl(RELEASES, entry)
                raise
            rep.warn(f"deploy of {release} failed at {step.name}: rolling back to "
                     f"{previous or 'nothing deployed'} (snapshot {entry['snapshot']})")
            try:
                backup.restore(project, entry["snapshot"], start=previous is not None)
            except Exception as again:
                entry.update(outcome="failed", rollback_error=str(again).splitlines()[0][:500])
                s.append_jsonl(RELEASES, entry)
                raise LapinfraError(f"deploy of {release} to {env.name} failed at {step.name}: {exc}\n"
                                    f"and the rollback to snapshot {entry['snapshot']} failed too: {again}") from None
            entry["outcome"] = "rolled back"
            s.append_jsonl(RELEASES, entry)
            raise LapinfraError(f"deploy of {release} to {env.name} failed at {step.name}: {exc}\n"
                                f"rolled back: {env.name} runs {previous or 'nothing'} again, with /data of snapshot "
                                f"{entry['snapshot']} (`invoke releases --env={env.name}`)") from None
        entry.update(outcome="deployed", seconds=round(time.monotonic() - started, 1),
                     pushed=result.pushed, containers=result.containers)
        s.append_jsonl(RELEASES, entry)
    result.verified = gated
    return result


def _record_suite(s: MasterSession, record: dict, passed: bool, counts: dict) -> None:
    s.append_jsonl(verify.VERIFIED, verify.run_entry(record, passed, counts))


# ---- releases and rollback --------------------------------------------------------

def releases(project) -> list[dict]:
    with MasterSession(project) as s:
        return s.read_jsonl(RELEASES)


def rollback(project, to: str | None = None) -> dict:
    """Back to an earlier release, images and data: restore the snapshot taken just
    before the deploy that replaced it (that /data still runs it), then start it."""
    from . import backup

    with MasterSession(project) as s, DeployLock(s, project, purpose="rollback"):
        entries = s.read_jsonl(RELEASES)
        current = (s.read_json(RELEASE) or {}).get("release")
        to, snap = rollback_target(entries, current, to, project.name)
        project.reporter.info(f"rolling {project.name} back from {current} to {to} (snapshot {snap})")
        backup.restore(project, snap, start=True)
        entry = {"release": to, "previous": current, "snapshot": snap, "outcome": "rolled back", "by_hand": True,
                 "by": verify.who(), "at": verify.now()}
        s.append_jsonl(RELEASES, entry)
        return entry


def rollback_target(entries: list[dict], current: str | None, to: str | None, env: str) -> tuple[str, str]:
    """(release, snapshot): the snapshot taken just before the latest deploy that replaced ``to``
    (default: the release the current one replaced)."""
    deployed = [e for e in entries if e.get("outcome") == "deployed"]
    if to is None:
        mine = [e for e in deployed if e.get("release") == current]
        to = mine[-1].get("previous") if mine else None
        if not to:
            raise LapinfraError(f"{env} runs {current or 'nothing'}, and no earlier release is recorded "
                                f"to go back to (`invoke releases --env={env}`)")
    if to == current:
        raise LapinfraError(f"{env} already runs {to}")
    matches = [e for e in deployed if e.get("previous") == to and e.get("snapshot")]
    if not matches:
        known = sorted({e["previous"] for e in deployed if e.get("previous") and e.get("snapshot")})
        raise LapinfraError(f"no snapshot holds release {to!r} running on {env}; releases that can be rolled back to "
                            f"(replaced by a later deploy): {', '.join(known) or 'none'}")
    return to, matches[-1]["snapshot"]


# ---- plan -----------------------------------------------------------------------

def plan(project) -> dict:
    """What a deploy would do, changing nothing: images to push, containers to
    create, recreate or keep, rendered config that differs (with a diff)."""
    import docker.errors

    env = project.env
    release = release_id(project.root)
    images = host_images(project)
    files = config_files(project)
    record = release_record(project, release, images, files)
    out = {"release": release, "images": {}, "containers": {}, "config": {}, "gate": None}
    try:
        gate = check_gate(project, release, images)
        out["gate"] = "passed" if gate else "none (not a promotion target)"
    except LapinfraError as exc:
        out["gate"] = f"refused: {exc}"
    with MasterSession(project) as s:
        current = s.read_json(RELEASE) or {"images": {}}
        out["current"] = current.get("release")
        by_id = {image["id"]: image["repository"] for image in current["images"].values()}
        for name, image in images.items():
            repository = f"infra/{release}/{name}"
            try:
                present = registry_has(s, repository)
            except Exception:          # no registry running yet: everything goes
                present = False
            out["images"][name] = ("in registry" if present else
                                   f"tag in registry (same image as {by_id[image.id]})" if image.id in by_id else "push")
        for service in svc.services(env):
            kwargs = svc.run_kwargs(service, "", env, record["config"][service.name], images[service.image].id)
            try:
                current = s.docker.containers.get(service.container)
                same = current.labels.get(svc.SPEC_LABEL) == kwargs["labels"][svc.SPEC_LABEL]
                out["containers"][service.container] = "keep" if same else "recreate"
            except docker.errors.NotFound:
                out["containers"][service.container] = "create"
        remote = s.remote_hashes(svc.ENV_DIR)
        import hashlib

        sftp = s.conn.sftp()
        for rel in sorted(set(remote) | set(files)):
            local = files.get(rel)
            if local is not None and remote.get(rel) == hashlib.sha256(local).hexdigest():
                continue
            old = b""
            if rel in remote:
                with sftp.open(f"{svc.ENV_DIR}/{rel}") as f:
                    old = f.read()
            diff = difflib.unified_diff(old.decode(errors="replace").splitlines(True),
                                        (local or b"").decode(errors="replace").splitlines(True),
                                        f"node:{rel}", f"rendered:{rel}")
            out["config"][rel] = {"change": "add" if rel not in remote else "remove" if local is None else "modify",
                                  "diff": "".join(diff)}
    return out
