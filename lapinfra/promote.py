"""Promotion: the gate a release passes before it is deployed to an environment, the lock of an
environment, rollback and plan. The deploy itself, which takes the gate and the lock, is
lapinfra/deploy.py.

An environment that names the one it is promoted from (``promoted_from: test``) takes only
the exact images (image ids, i.e. config digests) of a release that passed the verification
suite on the source environment (its ``verified.jsonl``; ``--force`` skips this and is
recorded). One writer per environment (lapinfra/lock.py: ``/var/lib/lapinfra/deploy.lock``
on the master, created with O_EXCL, kept alive by a heartbeat).

``rollback`` by hand brings back an earlier release's images and config and keeps today's
data; ``rollback --data`` also its data, after showing what that discards and taking a
safety snapshot. Every deploy and rollback is appended to ``releases.jsonl``
(records.RELEASES), the audit log, which a restore never rewinds. ``plan`` is the list of
actions a deploy would apply, decided on facts read at once, changing nothing.
"""
from __future__ import annotations

import difflib
import time

from . import backup, facts, lock, records, services as svc
from . import status, verify
from .actions import ChangeContainer, PushImage, RemoveFile, TagImage, WriteFile, as_json
from .errors import LapinfraError
from .executor import Executor
from .gitinfo import release_id
from .phases import (Target, built_images, config_files, deploy_phases, pending_secrets, planned_actions, read_facts,
                     release_record, seed_images)
from .project import Project
from .session import MasterSession

RELEASES = records.RELEASES
LOCK = lock.LOCK


# ---- the gate -----------------------------------------------------------------------

def check_gate(project, release: str, images: dict, force: bool = False) -> dict | None:
    """The source environment's passing run of exactly these images, or LapinfraError."""
    source_name = project.env.promoted_from
    if not source_name:
        return None
    if force:
        project.reporter.warn(f"--force: the gate (verified on {source_name}) is skipped; this is recorded")
        return {"source": source_name, "forced": True}
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


# ---- the lock (lapinfra/lock.py) ------------------------------------------------------

def env_lock(s: MasterSession, project, purpose: str = "deploy", wait: float = 0) -> lock.EnvLock:
    """The environment's lock through the session's connection (re-entrant: a no-op
    when this process holds it already, as a task that took it does)."""
    return lock.EnvLock(lock.RemoteLockFile(s.conn), project.name, project.reporter, purpose, wait)


def unlock(project, force: bool = False) -> dict | None:
    """Break a stale lock (or, with ``force``, any lock); the holder that was removed."""
    with MasterSession(project) as s:
        holder = lock.break_lock(lock.RemoteLockFile(s.conn), project.name, project.reporter, force=force)
        if holder is None:
            return None
        holder = {k: v for k, v in holder.items() if k not in ("raw", "token")}
        s.append_jsonl(RELEASES, {"outcome": "lock broken", "holder": holder, "by": verify.who(), "at": verify.now()})
        project.reporter.info(f"broke the lock of {lock.describe(holder)} ({holder['stale'] or 'forced'})")
        return holder


# ---- safety snapshots -------------------------------------------------------------

def safety_snapshot(s: MasterSession, project, purpose: str) -> str | None:
    """A snapshot of /data as it is now, before something discards it; its id (None: nothing to keep)."""
    return backup.safety_snapshot(s, project, purpose)


def safety_note(snapshot_id: str | None) -> str:
    """Where the data written meanwhile is kept (a failed deploy's and rollback --data's message)."""
    if snapshot_id is None:
        return "no safety snapshot was taken of the data written meanwhile"
    return (f"the data written meanwhile is kept in safety snapshot {snapshot_id} "
            f"(`invoke snapshot.list`; `invoke restore --snapshot {snapshot_id}` brings it back)")


# ---- releases and rollback --------------------------------------------------------

def releases(project) -> list[dict]:
    with MasterSession(project) as s:
        return s.read_jsonl(RELEASES)


# What a rollback without --data brings back from the snapshot: the release's rendered
# config and its release record (which names its images, still in the registry).
RELEASE_PATHS = (records.below_data(svc.ENV_DIR), records.below_data(records.RELEASE))
STATE = records.STATE_IN_DATA      # lapinfra's own folder below /data


def rollback(project, to: str | None = None, data: bool = False, confirm=None, wait: float = 0) -> dict:
    """Back to an earlier release R.

    Without ``data``: R's images and config (its release record and rendered config,
    from the snapshot taken just before the deploy that replaced R), with today's data.
    With ``data``: also R's /data of then; first shows what that discards, asks
    ``confirm(summary)`` (which raises to stop), takes a safety snapshot of today's."""
    with MasterSession(project) as s, env_lock(s, project, purpose="rollback", wait=wait):
        executor = Executor(project.reporter, s)
        entries = s.read_jsonl(RELEASES)
        current = records.running(s)
        to, snap = rollback_target(entries, current, to, project.name)
        entry = {"release": to, "previous": current, "snapshot": snap, "outcome": "rolled back", "by_hand": True,
                 "data": data, "by": verify.who(), "at": verify.now()}
        if data:
            summary = discard_summary(snap, changed_since(s, snapshot_time(s, project, snap)), data_folders(s))
            for line in summary:
                project.reporter.info(line)
            if confirm is not None:
                confirm(summary)
            entry["safety_snapshot"] = safety_snapshot(s, project, f"rollback --data to {to}")
            project.reporter.info(f"rolling {project.name} back from {current} to {to}, images, config and data "
                                  f"(snapshot {snap}); {safety_note(entry['safety_snapshot'])}")
            backup.restore_in(s, project, snap, start=True, safety=False, executor=executor)   # taken above
        else:
            keep = release_only_keep(*_listing(s))
            project.reporter.info(f"rolling {project.name} back from {current} to {to}: its images and config "
                                  f"(from snapshot {snap}); today's data stays")
            backup.restore_in(s, project, snap, start=True, keep=tuple(keep), executor=executor)
        entry["actions"] = as_json(executor.applied)      # what the start of the restored release applied
        s.append_jsonl(RELEASES, entry)
        status.publish_quietly(s, project)
        return entry


def release_only_keep(top: list[str], state: list[str]) -> list[str]:
    """The paths below /data a restore keeps so that only RELEASE_PATHS come from the
    snapshot: every top-level entry but ``environment`` and ``lapinfra``, and every
    entry of ``lapinfra`` but the release record (records.RELEASE)."""
    folder = {p.split("/", 1)[0] for p in RELEASE_PATHS}
    restored = set(RELEASE_PATHS)
    keep = [name for name in top if name not in folder and name not in restored]
    keep += [f"{STATE}/{name}" for name in state if f"{STATE}/{name}" not in restored]
    return sorted(set(keep))


def _listing(s: MasterSession) -> tuple[list[str], list[str]]:
    out = s.conn.run(f"cd {svc.DATA} && ls -A && echo /// && (ls -A {STATE} 2>/dev/null || true)", hide=True).stdout
    top, _, state = out.partition("///")
    return top.split(), state.split()


def data_folders(s: MasterSession) -> list[str]:
    return _listing(s)[0]


# Not shown as discarded: what every restore keeps (lapbackup's own state, host keys, audit logs).
NEVER_DISCARDED = ("backup", records.HOST_KEYS_IN_DATA, *records.AUDIT_LOGS)


def snapshot_time(s: MasterSession, project, snapshot_id: str) -> float:
    """When a snapshot was taken (seconds since the epoch), from the backup repository's list."""
    for snap in backup.snapshots_in(s, project):
        if snap["id"].startswith(snapshot_id) or snapshot_id.startswith(snap["id"]):
            return parse_time(snap["time"])
    raise LapinfraError(f"snapshot {snapshot_id} is not in {project.name}'s backup repository "
                        f"(`invoke snapshot.list --env={project.name}`)")


def parse_time(text: str) -> float:
    """restic's time (``2026-12-04T01:02:03.123456789+01:00`` or ``...Z``) as epoch seconds."""
    import datetime
    import re

    m = re.fullmatch(r"(\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d)(?:\.(\d+))?(Z|[+-]\d\d:?\d\d)?", text.strip())
    if not m:
        raise LapinfraError(f"cannot read the snapshot time {text!r}")
    zone = (m.group(3) or "Z").replace("Z", "+00:00")
    stamp = datetime.datetime.fromisoformat(m.group(1) + zone)
    return stamp.timestamp() + float(f"0.{m.group(2) or 0}")


def changed_since(s: MasterSession, epoch: float) -> list[str]:
    """Files below /data (relative paths) modified after ``epoch``, by their mtime."""
    cmd = (f"cd {svc.DATA} && find . -mindepth 1 \\( -path ./backup -o -path ./{records.HOST_KEYS_IN_DATA} "
           f"-o -name '*.restore-tmp' \\) "
           f"-prune -o \\( -type f -o -type l \\) -newermt @{int(epoch)} -printf '%P\\n'")
    return [line for line in s.conn.run(cmd, hide=True).stdout.splitlines() if line.strip()]


def discard_summary(snapshot_id: str, changed: list[str], folders: list[str], examples: int = 3) -> list[str]:
    """Per top-level /data folder: the files changed since the snapshot, which
    ``rollback --data`` discards (files deleted since cannot be seen this way)."""
    never = set(NEVER_DISCARDED)
    by_folder: dict[str, list[str]] = {}
    for path in changed:
        if path in never or any(path.startswith(n + "/") for n in never):
            continue
        by_folder.setdefault(path.split("/", 1)[0], []).append(path)
    lines = [f"rollback --data replaces /data with snapshot {snapshot_id}; changed since it (by mtime; "
             f"files deleted since are not seen):"]
    for folder in sorted(set(folders) | set(by_folder)):
        if folder in never:
            continue
        files = sorted(by_folder.get(folder, []))
        if not files:
            lines.append(f"  {folder}: unchanged")
            continue
        shown = ", ".join(files[:examples]) + (f", ... ({len(files) - examples} more)" if len(files) > examples else "")
        lines.append(f"  {folder}: {len(files)} file{'s' if len(files) != 1 else ''} changed, discarded: {shown}")
    if not by_folder:
        lines.append("  nothing changed since the snapshot: nothing written since is lost")
    return lines


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

def image_plan(actions: list, name: str) -> str:
    """The image's action as plan's ``images`` shows it."""
    for action in actions:
        if isinstance(action, TagImage) and action.name == name:
            return f"tag in registry (same image as {action.source})"
        if isinstance(action, PushImage) and action.name == name:
            return "push"
    return "in registry"


def container_plan(actions: list, container: str) -> str:
    return next((a.verb for a in actions if isinstance(a, ChangeContainer) and a.container == container), "keep")


def plan(project) -> dict:
    """What a deploy would do, changing nothing: the very actions deploy applies (files to write,
    images to load, push or tag, the swarm's changes, containers to create, recreate or start), decided by the same
    functions on facts read at once; with plan's own summary of images and containers, and a
    diff of each rendered config file that differs."""
    env = project.env
    release = release_id(project.root)
    images = built_images(project)
    files = config_files(project)
    seeds = seed_images(project)
    out = {"release": release, "images": {}, "containers": {}, "config": {}, "gate": None}
    try:
        gate = check_gate(project, release, images)
        out["gate"] = "passed" if gate else "none (not a promotion target)"
    except LapinfraError as exc:
        out["gate"] = f"refused: {exc}"
    with MasterSession(project) as s:
        pending = pending_secrets(project, facts.read_git_host_key(s))
        target = Target(project, release_record(project, release, images, files, pending), s.registry_host, images,
                        files, seeds, pending)
        node = read_facts(s, target)
        out["current"] = node.release.release if node.release else None
        actions = planned_actions(target, node, deploy_phases(env))
        out["images"] = {name: image_plan(actions, name) for name in images}
        out["containers"] = {service.container: container_plan(actions, service.container) for service in svc.services(env)}
        out["config"] = config_diffs(s, [a for a in actions if getattr(a, "folder", None) == svc.ENV_DIR],
                                     node.files.get(svc.ENV_DIR, {}))
    out["actions"] = as_json(actions)
    out["summary"] = [action.describe() for action in actions]
    return out


def config_diffs(s: MasterSession, actions: list, remote: dict[str, str]) -> dict:
    """Relative path -> {change: add|modify|remove, diff} of each write or removal of a config file
    (``remote``: the files the node holds, relative path -> sha256)."""
    sftp = s.conn.sftp()
    out = {}
    for action in sorted(actions, key=lambda a: a.path):
        existed = action.path in remote
        old = b""
        if existed:
            with sftp.open(f"{action.folder}/{action.path}") as f:
                old = f.read()
        new = action.data if isinstance(action, WriteFile) else b""
        diff = difflib.unified_diff(old.decode(errors="replace").splitlines(True), new.decode(errors="replace").splitlines(True),
                                    f"node:{action.path}", f"rendered:{action.path}")
        out[action.path] = {"change": "remove" if isinstance(action, RemoveFile) else "modify" if existed else "add",
                            "diff": "".join(diff)}
    return out
