"""Snapshots of the master's /data on the backup node, restore, and disaster recovery.

restic runs on the master in the ``infra/backup`` image (a copy kept on the node
itself, like the registry's) and stores into a repository on the backup node
over sftp, with a key the backup node accepts (``restrict``: no forwarding, no
pty) and its host key pinned. ``infra_backup`` takes the scheduled snapshots; every command here runs
a one-off container of the same image, so it also works while the
infrastructure is stopped or the master is brand new.
"""
from __future__ import annotations

import json
import uuid

from . import services as svc
from .deploy import MasterSession, load_local_images, start_services, stop_all, upload_secrets
from .errors import LapinfraError
from .nodes import Nodes

RELEASE = f"{svc.STATE_DIR}/release.json"
STATUS = f"{svc.DATA}/backup/status.json"


def write_backup_known_hosts(project) -> None:
    """The backup node's pinned host key, as the backup container's known_hosts."""
    backup = project.env.node("backup")
    known = Nodes(project).known_hosts
    lines = [l for l in (known.read_text().splitlines() if known.exists() else []) if l.startswith(f"{backup.ssh_host} ")]
    if not lines:
        raise LapinfraError(f"the backup node {backup.name} ({backup.ip}) has no pinned host key: is it up? (`invoke node.up --env={project.name}`)")
    content = "\n".join(lines) + "\n"
    path = project.secrets.path("backup_known_hosts")
    if not path.exists() or path.read_text() != content:
        project.secrets._write("backup_known_hosts", content)


def _prepare(s: MasterSession, project) -> None:
    upload_secrets(s, project, [svc.backup_service(project.env)])
    load_local_images(s, {"backup": project.docker.images.get("infra/backup")}, project.reporter)


def run_tool(s: MasterSession, args: list[str]) -> object:
    """Run the backup tool once on the master; return its JSON output."""
    service = svc.backup_service(s.env)
    volumes = svc.run_kwargs(service, "infra/backup", s.env, "", "")["volumes"]
    container = s.docker.containers.run(
        # restic picks an earlier snapshot as parent only from the same host name:
        # the same name as infra_backup, so unchanged files are not read again
        "infra/backup", args, detach=True, hostname=service.name, volumes=volumes, environment=dict(service.environment),
        name=f"lapinfra-backup-{args[0]}-{uuid.uuid4().hex[:8]}", labels={"lapinfra.purpose": "backup tool"},
    )
    try:
        code = container.wait(timeout=3600)["StatusCode"]
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
    finally:
        container.remove(force=True)
    if code != 0:
        tail = "\n".join(f"    {line}" for line in err.strip().splitlines()[-12:])
        raise LapinfraError(f"backup tool `{' '.join(args)}` failed (exit {code}):\n{tail}")
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        raise LapinfraError(f"backup tool `{' '.join(args)}` printed no JSON: {out[-500:]!r}") from None


def snapshot(project, label: str = "manual") -> dict:
    with MasterSession(project) as s:
        _prepare(s, project)
        release = (s.read_json(RELEASE) or {}).get("release", "none")
        with project.reporter.step(f"snapshot of {project.env.master.name}:/data to {project.env.node('backup').name} ({label})"):
            return run_tool(s, ["snapshot", "--label", label, "--tag", f"commit={release}"])


def snapshots(project) -> list[dict]:
    with MasterSession(project) as s:
        _prepare(s, project)
        return run_tool(s, ["list"])


def status(project) -> dict:
    with MasterSession(project) as s:
        return s.read_json(STATUS) or {"last_run": None}


def check(project) -> dict:
    with MasterSession(project) as s:
        _prepare(s, project)
        return run_tool(s, ["check"])


def restore(project, snapshot_id: str, start: bool = True) -> dict:
    """The seed's restore.sh: stop, restore /data, start (stopping once)."""
    with MasterSession(project) as s:
        _prepare(s, project)
        known = {snap["id"] for snap in run_tool(s, ["list"])}
        if snapshot_id != "latest" and snapshot_id not in known:
            raise LapinfraError(f"no snapshot {snapshot_id!r} in the backup repository; `invoke snapshot.list --env={project.name}` shows them")
        if not known:
            raise LapinfraError("the backup repository holds no snapshot yet")
        stop_all(s, project.reporter)
        with project.reporter.step(f"restore {snapshot_id} into {project.env.master.name}:/data"):
            result = run_tool(s, ["restore", snapshot_id])
        if start:
            release = s.read_json(RELEASE)
            if release is None:
                raise LapinfraError("the restored /data holds no release record: deploy to start the infrastructure")
            start_services(s, release, project.reporter)
        return result


def recover(project) -> dict:
    """Disaster recovery: a fresh master from the backup node alone, then start."""
    nodes = Nodes(project)
    if nodes.state(project.env.master) == "absent":
        nodes.up(project.env.master.name)
    with MasterSession(project) as s:
        _prepare(s, project)
        registry = {"registry": project.docker.images.get("infra/registry")}
        load_local_images(s, registry, project.reporter)
        with project.reporter.step("restore the latest snapshot into the new master's /data"):
            result = run_tool(s, ["restore", "latest"])
        release = s.read_json(RELEASE)
        if release is None:
            raise LapinfraError("the latest snapshot holds no release record; deploy instead")
        start_services(s, release, project.reporter)
        return result


def digest(project, snapshot_id: str, path: str) -> dict:
    """sha256 of a file below /data as stored in a snapshot."""
    with MasterSession(project) as s:
        _prepare(s, project)
        return run_tool(s, ["digest", snapshot_id, path])
