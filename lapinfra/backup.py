"""Snapshots of the master's /data on the backup node, restore, and disaster recovery.

restic runs on the master in the ``infra/backup`` image (a copy kept on the node
itself, like the registry's) and stores into the backup node's inbox over sftp, with a
key the backup node accepts only for its chrooted sftp-only user ``backup`` (no shell,
no forwarding, no pty) and its host key pinned. The backup node copies each snapshot
into its vault, which that user can read but not change, and applies the retention
there (nodes/image/lapvault): nothing the master holds deletes a snapshot. ``infra_backup`` takes the scheduled snapshots; every command here runs
a one-off container of the same image, so it also works while the
infrastructure is stopped or the master is brand new.

Every command that touches the master first runs ``recover_interrupted`` (a restore a kill
interrupted is finished or undone, containers a killed snapshot left paused are unpaused);
every command that replaces /data first takes a ``safety_snapshot`` that undoes it. No
snapshot holds /data/secrets: they come from the workstation's secrets folder.
"""
from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path

from . import nodeup, services as svc
from .actions import as_json
from .backuptool import STOP_GRACE, TOOL_TIMEOUT, recovery_messages  # noqa: F401 - part of this module's interface
from .backuptool import recover_interrupted, run_tool
from .phases import seed, upload_secrets
from .errors import LapinfraError
from .executor import Executor
from .nodes import Nodes, write_backup_known_hosts
from . import records
from .session import MasterSession
from .startstop import start_services, stop_all

STATUS = f"{svc.DATA}/backup/status.json"


def _prepare(s: MasterSession, project, seed_all: bool = False) -> None:
    """The backup tool's secrets and image on the master (with ``seed_all`` every image of phases.seed_tags)."""
    upload_secrets(s, project, [svc.backup_service(project.env)])
    seed(s, project, None if seed_all else ["infra/backup"])


# ---- repairs and safety nets ----------------------------------------------------------

SAFETY_TAG = "safety"


def safety_snapshot(s: MasterSession, project, purpose: str) -> str | None:
    """A snapshot (label ``safety-<purpose>``, tag ``safety``) of the master's /data before
    a command replaces it, and how to undo that command with it; its id. None when /data
    holds nothing to save (no release record: a brand-new master)."""
    release = records.read_release(s)
    if release is None:
        return None
    env = project.name
    with project.reporter.step(f"safety snapshot of {project.env.master.name}:/data before {purpose}"):
        snap = run_tool(s, ["snapshot", "--label", f"safety-{purpose}", "--tag", SAFETY_TAG,
                            "--tag", commit_tag(release.release)])
    project.reporter.info(f"safety snapshot {snap['id']} of {env} before {purpose}; "
                          f"undo with `invoke restore --env={env} --snapshot {snap['id']}`")
    return snap["id"]


def commit_tag(release: str) -> str:
    """The tag that names the release /data held when a snapshot was taken (lapbackup's scheduler
    tags its snapshots the same way, from the release record)."""
    return f"commit={release}"


def choose_snapshot(snaps: list[dict], wanted: str, env: str, foreign: bool = False) -> str:
    """The id of the snapshot to restore: ``latest`` is this environment's own latest,
    resolved before a safety snapshot becomes the latest; another environment's
    snapshot only with ``foreign`` (snapshot.fetch)."""
    if not snaps:
        raise LapinfraError("the backup repository holds no snapshot yet")
    if wanted == "latest":
        own = [snap for snap in snaps if _origin(snap, env) == env]
        if not own:
            raise LapinfraError(f"the backup repository holds no snapshot of {env}; `invoke snapshot.list --env={env}` shows them")
        return max(own, key=lambda snap: snap["time"])["id"]
    known = {snap["id"]: snap for snap in snaps}
    if wanted not in known:
        raise LapinfraError(f"no snapshot {wanted!r} in the backup repository; `invoke snapshot.list --env={env}` shows them")
    origin = _origin(known[wanted], env)
    if origin != env and not foreign:
        raise LapinfraError(f"snapshot {wanted} holds {origin}'s data (its config too): "
                            f"`invoke snapshot.fetch --from={origin} --to={env} --snapshot {wanted}` restores it safely")
    return wanted


def _origin(snap: dict, default: str) -> str:
    """The environment a snapshot was taken of (its tag env=<name>)."""
    return dict(t.split("=", 1) for t in snap.get("tags", []) if "=" in t).get("env", default)


# ---- commands -------------------------------------------------------------------------

def snapshot(project, label: str = "manual") -> dict:
    with MasterSession(project) as s:
        return snapshot_in(s, project, label)


def snapshot_in(s: MasterSession, project, label: str = "manual") -> dict:
    """A snapshot of /data through the command's open session ``s`` (a deploy's pre-deploy one)."""
    _prepare(s, project)
    recover_interrupted(s, project)
    record = records.read_release(s)
    release = record.release if record else "none"
    with project.reporter.step(f"snapshot of {project.env.master.name}:/data to {project.env.node('backup').name} ({label})"):
        return run_tool(s, ["snapshot", "--label", label, "--tag", commit_tag(release)])


def snapshots(project) -> list[dict]:
    with MasterSession(project) as s:
        return snapshots_in(s, project)


def snapshots_in(s: MasterSession, project) -> list[dict]:
    """The backup repository's snapshots, through the command's open session ``s``."""
    _prepare(s, project)
    return run_tool(s, ["list"])


def status(project) -> dict:
    with MasterSession(project) as s:
        return s.read_json(STATUS) or {"last_run": None}


def check(project) -> dict:
    with MasterSession(project) as s:
        _prepare(s, project)
        return run_tool(s, ["check"])


@dataclass
class Restored:
    """What restore_in did: the backup tool's result, the snapshot restored (``latest`` resolved),
    the safety snapshot taken first (None: none) and the release it started (None: not started)."""
    result: dict
    snapshot: str
    safety_snapshot: str | None = None
    release: str | None = None


def restore(project, snapshot_id: str, start: bool = True, keep: tuple[str, ...] = (), foreign: bool = False,
            purpose: str = "restore", safety: bool = True) -> dict:
    """Restore: stop, restore /data from a snapshot, start (stopping once); restore_in, in a session of
    its own, recorded in releases.jsonl (outcome ``restored``, with the actions its start applied)."""
    with MasterSession(project) as s:
        executor = Executor(project.reporter, s)
        entry = {"outcome": "restored", "purpose": purpose, "previous": records.running(s)}
        done = restore_in(s, project, snapshot_id, start, keep, foreign, purpose, safety, executor)
        _record(s, entry, done, executor)
        return done.result


def restore_in(s: MasterSession, project, snapshot_id: str, start: bool = True, keep: tuple[str, ...] = (),
               foreign: bool = False, purpose: str = "restore", safety: bool = True,
               executor: Executor | None = None) -> Restored:
    """Restore through the command's open session ``s``: stop, restore /data from a snapshot, start.
    Paths in ``keep`` (below /data), the audit logs and the secrets stay as they are on the
    node; ``foreign`` allows another environment's snapshot (snapshot.fetch). A safety
    snapshot (``safety``; labelled for ``purpose``) is taken first, when /data holds a release.
    The start's actions are applied by ``executor`` (the caller's, which records them)."""
    _prepare(s, project)
    recover_interrupted(s, project)
    sid = choose_snapshot(run_tool(s, ["list"]), snapshot_id, project.name, foreign)
    safe = safety_snapshot(s, project, purpose) if safety else None
    stop_all(s, project.reporter)
    with project.reporter.step(f"restore {sid} into {project.env.master.name}:/data"):
        result = _restore_tool(s, sid, keep)
    done = Restored(result, sid, safe)
    if start:
        release = records.read_release(s)
        if release is None:
            raise LapinfraError("the restored /data holds no release record: deploy to start the infrastructure")
        start_services(s, release, project.reporter, executor)
        done.release = release.release
    return done


def _record(s: MasterSession, entry: dict, done: Restored, executor: Executor) -> None:
    """A restore's or dr.recover's entry in releases.jsonl (the audit log every restore keeps): the
    snapshot, the safety snapshot, the release started and the actions the start applied."""
    entry.update(release=done.release, snapshot=done.snapshot, safety_snapshot=done.safety_snapshot,
                 by=records.who(), at=records.now(), actions=as_json(executor.applied))
    s.append_jsonl(records.RELEASES, entry)


def _restore_tool(s: MasterSession, sid: str, keep: tuple[str, ...] = ()) -> dict:
    return run_tool(s, ["restore", sid, *[f"--keep={k}" for k in (*keep, *records.AUDIT_LOGS)]])


def recover(project) -> dict:
    """Disaster recovery: a fresh master from the backup node alone, then start. A master
    that still runs is snapshotted (safety), stopped, then restored; on either, the audit
    logs stay, and every service's secrets come from the workstation (no snapshot holds them).
    Recorded in releases.jsonl (outcome ``recovered``, with the actions its start applied)."""
    if Nodes(project).state(project.env.master) == "absent":
        nodeup.up(project, project.env.master.name)
    with MasterSession(project) as s:
        _prepare(s, project, seed_all=True)
        recover_interrupted(s, project)
        executor = Executor(project.reporter, s)
        entry = {"outcome": "recovered", "previous": records.running(s)}
        sid = choose_snapshot(run_tool(s, ["list"]), "latest", project.name)
        done = Restored({}, sid, safety_snapshot(s, project, "recover"))
        stop_all(s, project.reporter)
        with project.reporter.step(f"restore the latest snapshot ({sid}) into {project.env.master.name}:/data"):
            done.result = _restore_tool(s, sid)
        with project.reporter.step("upload every service's secrets"):
            upload_secrets(s, project, svc.services(project.env))
        release = records.read_release(s)
        if release is None:
            raise LapinfraError("the latest snapshot holds no release record; deploy instead")
        start_services(s, release, project.reporter, executor)
        done.release = release.release
        _record(s, entry, done, executor)
        return done.result


# What a fetched snapshot never replaces on the target: its own secrets, rendered
# config, release record and host keys, DNS state (the source's addresses), its
# registry (the images of the release it runs), the backup tool's state, and its git
# server's host keys (private keys of the source's; the target's CD server pins its own).
FETCH_KEEP = ("secrets", "environment", "lapinfra", "dns", "registry", "backup", "git/ssh")
FETCH_MOUNT = "/run/lapinfra-fetch"
SFTP_USER = "backup"      # the backup node's sftp-only user, chrooted to its /data (nodes/image/sshd_config)
INBOX = "/restic"         # the inbox, /data/restic on the backup node, as that user sees it


def fetch(source, target, snapshot_id: str = "latest", restore_after: bool = True) -> dict:
    """Prepare one environment from another's data: copy one snapshot
    of ``source``'s backup repository into ``target``'s (restic copy, deduplicated,
    re-encrypted with the target's password), then restore it on ``target``'s master,
    keeping the target's own secrets, config and release (FETCH_KEEP)."""
    import tempfile

    if source.name == target.name:
        raise LapinfraError(f"--from and --to are both {source.name!r}: fetch copies between two environments")
    sides = {"from": source, "to": target}
    with tempfile.TemporaryDirectory(prefix="lapinfra-fetch-") as tmp:
        volumes, ssh = {}, []
        for side, p in sides.items():
            write_backup_known_hosts(p)
            node = p.env.node("backup")
            for name in ("backup_ed25519", "backup_known_hosts", "restic.password"):
                volumes[str(p.secrets.path(name).resolve())] = {"bind": f"{FETCH_MOUNT}/{side}/{name}", "mode": "ro"}
            ssh.append(
                f"Host lapinfra-{side}\n  HostName {node.ip}\n  Port {node.admin_port}\n  User {SFTP_USER}\n"
                f"  IdentityFile {FETCH_MOUNT}/{side}/backup_ed25519\n  IdentitiesOnly yes\n  BatchMode yes\n"
                f"  UserKnownHostsFile {FETCH_MOUNT}/{side}/backup_known_hosts\n  GlobalKnownHostsFile /dev/null\n"
                f"  StrictHostKeyChecking yes\n  ConnectTimeout 20\n  ServerAliveInterval 30\n")
        config = Path(tmp) / "lapinfra-fetch.conf"
        config.write_text("\n".join(ssh))
        config.chmod(0o644)
        volumes[str(config)] = {"bind": "/etc/ssh/ssh_config.d/lapinfra-fetch.conf", "mode": "ro"}
        networking = _fetch_networking(source, target)
        ls = ["--no-cache", "-r", f"sftp:lapinfra-from:{INBOX}", "--password-file", f"{FETCH_MOUNT}/from/restic.password",
              "ls", snapshot_id, SNAPSHOT_SECRETS]
        with target.reporter.step(f"check that snapshot {snapshot_id} of {source.name} holds none of its secrets"):
            code, out = _run_local_restic(target, ls, networking, volumes, check=False)
        _refuse_unfetchable(source, snapshot_id, code, out)
        command = ["--no-cache", "-r", f"sftp:lapinfra-to:{INBOX}", "--password-file", f"{FETCH_MOUNT}/to/restic.password",
                   "copy", "--from-repo", f"sftp:lapinfra-from:{INBOX}",
                   "--from-password-file", f"{FETCH_MOUNT}/from/restic.password", snapshot_id]
        with target.reporter.step(f"copy snapshot {snapshot_id} of {source.name} into {target.name}'s backup repository"):
            _, out = _run_local_restic(target, command, networking, volumes)
    if "no matching ID found" in out:
        raise LapinfraError(f"no snapshot {snapshot_id!r} in {source.name}'s backup repository; "
                            f"`invoke snapshot.list --env={source.name}` shows them")
    copied = _copied_snapshot(out)
    if copied is None:
        raise LapinfraError(f"restic copy did not report the copied snapshot:\n{out[-1500:]}")
    result = {"source": source.name, "source_snapshot": copied[0], "snapshot": copied[1]}
    if restore_after:
        restore(target, copied[1], keep=FETCH_KEEP, foreign=True, purpose="fetch")
        result["restored"] = True
    return result


# where an older snapshot holds /data/secrets (lapbackup's view: /data is its BACKUP_DATA)
SNAPSHOT_SECRETS = f"{svc.BACKUP_DATA}/{records.below_data(svc.SECRETS_DIR)}"


def _refuse_unfetchable(source, snapshot_id: str, code: int, out: str) -> None:
    """A snapshot that does not exist, or one taken before /data/secrets was excluded from
    snapshots (it holds the source's keys and passwords), is not copied."""
    if "no matching ID found" in out:
        raise LapinfraError(f"no snapshot {snapshot_id!r} in {source.name}'s backup repository; "
                            f"`invoke snapshot.list --env={source.name}` shows them")
    if code != 0:
        tail = "\n".join(f"    {line}" for line in out.strip().splitlines()[-12:])
        raise LapinfraError(f"restic ls of {source.name}'s snapshot {snapshot_id} failed (exit {code}){_restic_hint(out)}:\n{tail}")
    if lists_secrets(out):
        raise LapinfraError(f"snapshot {snapshot_id} of {source.name} holds {source.name}'s secrets (it was taken before "
                            f"secrets were left out of snapshots) and is not copied: take a new one with "
                            f"`invoke snapshot.create --env={source.name}` and fetch that")


def lists_secrets(out: str) -> bool:
    """Whether restic ls's output names the secrets folder or anything in it."""
    return any(line.strip() == SNAPSHOT_SECRETS or line.strip().startswith(SNAPSHOT_SECRETS + "/")
               for line in out.splitlines())


def _fetch_networking(source, target) -> dict:
    """Both backup nodes must be reachable: attach to both environments' docker
    networks (the project's own); VM environments are reached from the host's."""
    if all(p.env.provider == "docker" for p in (source, target)):
        return {"networks": [source.env.network.name, target.env.network.name]}
    return {"network_mode": "host"}


def _run_local_restic(project, command: list[str], networking: dict, volumes: dict, check: bool = True) -> tuple[int, str]:
    """restic in a one-off infra/backup container on the workstation; its exit code and
    output (with ``check``, an exit code other than 0 is an error)."""
    import docker.errors

    client = project.docker
    networks = networking.get("networks", [])
    container = client.containers.create(
        "infra/backup", command, entrypoint=["restic"], volumes=volumes,
        network=networks[0] if networks else None, network_mode=networking.get("network_mode"),
        name=f"lapinfra-fetch-{uuid.uuid4().hex[:8]}", labels={"lapinfra.purpose": "fetch"},
    )
    try:
        for name in networks[1:]:
            client.networks.get(name).connect(container)
        container.start()
        code = container.wait(timeout=3600)["StatusCode"]
        out = container.logs(stdout=True, stderr=True).decode(errors="replace")
    except docker.errors.APIError as exc:
        raise LapinfraError(f"cannot run the fetch container: {exc.explanation or exc}") from None
    finally:
        container.remove(force=True)
    if code != 0 and check:
        tail = "\n".join(f"    {line}" for line in out.strip().splitlines()[-12:])
        raise LapinfraError(f"restic copy failed (exit {code}){_restic_hint(out)}:\n{tail}")
    return code, out


def _restic_hint(out: str) -> str:
    if "wrong password" in out:
        return " (a restic.password does not open its repository)"
    if "Host key verification failed" in out:
        return " (a backup node's host key differs from the pinned one)"
    return ""


def _copied_snapshot(out: str) -> tuple[str, str] | None:
    """(source id, target id) from restic copy's report."""
    import re

    skipped = re.search(r"skipping (?:source )?snapshot ([0-9a-f]+), was already copied to snapshot ([0-9a-f]+)", out)
    if skipped:
        return skipped.group(1)[:8], skipped.group(2)[:8]
    source = re.search(r"snapshot ([0-9a-f]+) of \[", out)
    saved = re.search(r"snapshot ([0-9a-f]+) saved", out)
    if source and saved:
        return source.group(1)[:8], saved.group(1)[:8]
    return None


def digest(project, snapshot_id: str, path: str) -> dict:
    """sha256 of a file below /data as stored in a snapshot."""
    with MasterSession(project) as s:
        _prepare(s, project)
        return run_tool(s, ["digest", snapshot_id, path])


# ---- restore drills (nodes/image/lapvault drill; docs/data.md "Restore drills") ----------

VAULT_TOOL = "/usr/local/sbin/lapvault"                 # on the backup node
DRILL_ON_BACKUP_NODE = records.DRILL_ON_BACKUP_NODE
DRILL_COPY = f"{svc.DATA}/backup/drill.json"            # the master's copy (lapbackup drill-status)
DRILL_TIMEOUT = 4 * 3600                                # restic's own limits: check and restore 3000 s each
STALE_MARGIN_S = 3600


class _LineWriter:
    """A stream for Fabric's err_stream: each complete line to ``emit``, and kept."""

    def __init__(self, emit):
        self.emit, self.buffer, self.lines = emit, "", []

    def write(self, text: str) -> None:
        self.buffer += text
        *done, self.buffer = self.buffer.split("\n")
        for line in done:
            self.lines.append(line)
            shown = progress_line(line)
            if shown:
                self.emit(shown)

    def flush(self) -> None:
        pass


def progress_line(raw: str) -> str | None:
    """lapvault's log line as progress: without its timestamp and name; None for blank."""
    import re

    text = re.sub(r"^\S+Z lapvault: ", "", raw.rstrip())
    return text or None


def drill(project, full: bool = False, connect=None) -> dict:
    """One restore drill on the backup node now (``lapvault drill`` over the admin SSH), its
    progress shown as it goes; then the master's copy of the record refreshed. The record
    (``ok`` False when the drill failed); an error when no drill could run."""
    node = project.env.node("backup")
    command = VAULT_TOOL + " drill" + (" --full" if full else "")
    connect = connect or Nodes(project).connect
    err = _LineWriter(project.reporter.info)
    what = "every pack" if full else "the next subset of packs"
    with project.reporter.step(f"restore drill on {node.name}: restic check of {what}, the latest snapshot "
                               f"restored and compared, service probes"):
        with connect(node) as conn:
            result = conn.run(command, warn=True, hide="out", err_stream=err, timeout=DRILL_TIMEOUT)
    err.write("\n")
    doc = drill_outcome(project.name, node.name, result.exited, result.stdout, "\n".join(err.lines))
    refresh_drill_copy(project)
    return doc


def drill_outcome(env: str, node: str, code: int, out: str, err: str) -> dict:
    """What ``lapvault drill`` answered: its record, else an error that says what to do."""
    try:
        doc = json.loads(out)
    except json.JSONDecodeError:
        doc = None
    if isinstance(doc, dict) and isinstance(doc.get("ok"), bool):
        return doc
    if isinstance(doc, dict) and doc.get("error"):
        raise LapinfraError(f"no restore drill on {node}: {doc['error']}")
    if (code == 2 and "unknown command" in err) or code == 127:
        raise LapinfraError(f"{node} runs a lapvault without drills (an older node image): "
                            f"`invoke node.down --env={env} --node {node}` and `invoke node.up --env={env}` bring "
                            f"the current one (the repository volume is kept)")
    tail = "\n".join(f"    {line}" for line in err.strip().splitlines()[-8:])
    raise LapinfraError(f"`lapvault drill` on {node} failed (exit {code}) without a result:\n{tail}")


def refresh_drill_copy(project) -> None:
    """The master's copy of the backup node's drill record (``lapbackup drill-status``), which
    the status page reads; a master that cannot be reached is only warned about."""
    try:
        with MasterSession(project) as s:
            _prepare(s, project)
            run_tool(s, ["drill-status"])
    except Exception as exc:  # noqa: BLE001 - the drill's own result stands
        project.reporter.warn(f"the master's copy of the drill record ({DRILL_COPY}) was not refreshed: {exc}")


def drill_lines(doc: dict) -> list[str]:
    """A drill's record as lines for people: the verdict, what was checked, what failed."""
    verdict = "passed" if doc.get("ok") else f"FAILED ({len(doc.get('failures', []))} failures)"
    head = (f"restore drill of snapshot {doc.get('snapshot')} {verdict} in {doc.get('seconds')} s "
            f"(packs read: {doc.get('subset', '?')}, at {doc.get('at')})")
    return ([head] + [f"  ok      {c}" for c in doc.get("checked", [])]
            + [f"  FAILED  {f}" for f in doc.get("failures", [])])


def latest_drill(docs: list) -> dict | None:
    """The newest drill record of several copies (the backup node's, the master's)."""
    import datetime as dt

    def at(doc):
        try:
            return dt.datetime.fromisoformat(doc["at"]).timestamp()
        except (KeyError, TypeError, ValueError):
            return None

    dated = [d for d in docs if isinstance(d, dict) and isinstance(d.get("ok"), bool) and at(d) is not None]
    return max(dated, key=at, default=None)


def drill_verdict(env: str, doc: dict | None, now: float, interval_s: int) -> str | None:
    """Why the backup is not proven restorable (the suite's message), or None: the last drill
    passed and is recent (within two intervals and an hour), or none ran yet (a fresh environment)."""
    import datetime as dt

    if doc is None:
        return None
    if not doc["ok"]:
        first, *more = doc.get("failures") or ["(no failure recorded)"]
        rest = "".join(f"\n  - {f}" for f in more)
        return (f"the last restore drill ({doc['at']}, snapshot {doc.get('snapshot')}) failed: {first}{rest}\n"
                f"fix the cause, then `invoke backup.drill --env={env}` (docs/data.md, \"Restore drills\")")
    age = now - dt.datetime.fromisoformat(doc["at"]).timestamp()
    if age > 2 * interval_s + STALE_MARGIN_S:
        return (f"the last restore drill ran {age / 3600:.0f} h ago; the backup node drills every {interval_s / 3600:g} h: "
                f"is lapvault running? (`invoke node.ssh --env={env} --node=backup -- tail /var/log/lapvault.log`)")
    return None


def read_drill_on_backup_node(project, connect=None) -> dict | None:
    """The backup node's own drill record (admin SSH), None when it has none."""
    connect = connect or Nodes(project).connect
    with connect(project.env.node("backup")) as conn:
        result = conn.run(f"cat {DRILL_ON_BACKUP_NODE}", hide=True, warn=True)
    if not result.ok:
        return None
    try:
        return json.loads(result.stdout)
    except json.JSONDecodeError:
        raise LapinfraError(f"{DRILL_ON_BACKUP_NODE} on the backup node is not JSON") from None
