"""The backup tool (``lapbackup`` in the ``infra/backup`` image) run once on the master, and
the repair every command that touches the master's /data runs first.

`run_tool` runs a one-off container of the image the master keeps itself (so it works
while the infrastructure is stopped or the master is brand new) and returns the tool's
JSON. `recover_interrupted` finishes or undoes a restore a kill interrupted and unpauses
what a killed snapshot left paused; it pays one command and one API call when all is well.
"""
from __future__ import annotations

import contextlib
import json
import uuid

from . import services as svc
from .errors import LapinfraError
from .session import MasterSession


TOOL_TIMEOUT = 3600      # above every restic limit in lapbackup (restore: 3000 s)
STOP_GRACE = 60          # SIGTERM first: an interrupted restore undoes its swap at once
RESTORE_TMP = f"{svc.DATA}/.restore-tmp"   # a restore's journal folder while it swaps /data (lapbackup's TMP)


def run_tool(s: MasterSession, args: list[str]) -> object:
    """Run the backup tool once on the master; return its JSON output.
    Interrupted (Ctrl-C, the time limit), the tool is stopped with SIGTERM and time to
    undo what it was doing before it is removed; what a hard kill leaves, the next
    command's recover_interrupted repairs."""
    service = svc.backup_service(s.env)
    volumes = svc.run_kwargs(service, "infra/backup", s.env, "", "")["volumes"]
    container = s.docker.containers.run(
        # restic picks an earlier snapshot as parent only from the same host name:
        # the same name as infra_backup, so unchanged files are not read again
        "infra/backup", args, detach=True, hostname=service.name, volumes=volumes, environment=dict(service.environment),
        name=f"lapinfra-backup-{args[0]}-{uuid.uuid4().hex[:8]}", labels={"lapinfra.purpose": "backup tool"},
    )
    finished = False
    try:
        code = container.wait(timeout=TOOL_TIMEOUT)["StatusCode"]
        finished = True
        out = container.logs(stdout=True, stderr=False).decode(errors="replace")
        err = container.logs(stdout=False, stderr=True).decode(errors="replace")
    finally:
        if not finished:
            _stop_gently(container)
        container.remove(force=True)
    if code != 0:
        tail = "\n".join(f"    {line}" for line in err.strip().splitlines()[-12:])
        raise LapinfraError(f"backup tool `{' '.join(args)}` failed (exit {code}):\n{tail}")
    try:
        return json.loads(out)
    except json.JSONDecodeError:
        raise LapinfraError(f"backup tool `{' '.join(args)}` printed no JSON: {out[-500:]!r}") from None


def _stop_gently(container) -> None:
    with contextlib.suppress(Exception):   # best effort: remove(force=True) follows
        container.stop(timeout=STOP_GRACE)


def _repair_needed(s: MasterSession) -> bool:
    """Cheap facts first (one command, one API call): a restore's journal folder on the
    master, or an infra container left paused. Only then does the tool run."""
    journal = s.conn.run(f"test -e {RESTORE_TMP}", hide=True, warn=True).ok
    paused = s.docker.containers.list(filters={"status": "paused", "name": svc.PREFIX})
    return journal or bool(paused)


def recover_interrupted(s: MasterSession, project) -> dict | None:
    """Finish or undo a restore that a kill interrupted on the master and unpause what a
    killed snapshot left paused (``lapbackup recover``), reporting what was done. None
    when the master has no backup image (the tool never ran there: nothing to repair).

    Must run first in every command that touches the master's /data: backup's own (lapinfra/backup.py),
    and start and deploy (lapinfra/startstop.py, lapinfra/promote.py), after _prepare's
    uploads of the backup tool's secrets and image."""
    import docker.errors

    if not _repair_needed(s):
        return None
    try:
        s.docker.images.get("infra/backup")
    except docker.errors.ImageNotFound:
        return None
    try:
        result = run_tool(s, ["recover"])
    except LapinfraError as exc:
        if "invalid choice: 'recover'" not in str(exc):
            raise
        # a master's copy of the tool older than the journal: it cannot have left one
        project.reporter.info(f"{project.env.master.name}'s backup tool predates `lapbackup recover`; "
                              f"`invoke node.seed --env={project.name}` brings the current one")
        return None
    for message in recovery_messages(project.name, project.env.master.name, result):
        project.reporter.warn(message)
    return result


def recovery_messages(env: str, master: str, result: dict) -> list[str]:
    """What ``lapbackup recover`` did, in words (nothing when it had nothing to do)."""
    out = []
    swap = result.get("swap") or {}
    sid = swap.get("snapshot")
    if swap.get("action") == "undone":
        out.append(f"an interrupted restore of snapshot {sid} on {master} was undone: /data is as it was "
                   f"before that restore (`invoke restore --env={env} --snapshot {sid}` runs it again)")
    elif swap.get("action") == "finished":
        out.append(f"an interrupted restore of snapshot {sid} on {master} was finished: /data is that snapshot")
    elif swap.get("action") == "removed leftover":
        out.append(f"removed the leftover folder of an earlier restore on {master} (/data was not changed)")
    if result.get("unpaused"):
        out.append(f"unpaused {', '.join(result['unpaused'])} on {master}: an interrupted snapshot had left them paused")
    return out
