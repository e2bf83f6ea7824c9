"""snapshot, backup, restore, dr: the master's /data on the backup node."""
import json

from invoke import Collection

from tasks._common import LOCK_WAIT_HELP, YES_HELP, confirmed, locked, project, task
from tasks.images import build
from tasks.render import render
from tasks.verify import test


def _backup():
    from lapinfra import backup  # lazy: fabric and docker load only for these tasks

    return backup


@task(help={"label": "a label stored with the snapshot, shown by snapshot.list"})
def create(c, env=None, label="manual"):
    """Snapshot the master's /data onto the backup node, without downtime.

    What is written by rename (registry, git, Maven/artifact files) is read live; a
    service that writes a database or a journal in place (Trac, Buildbot, bind9's
    dynamic zones) is paused only while its own files are copied, milliseconds.

    Examples:
      invoke snapshot.create --env=staging
      invoke snapshot.create --env=prod --label=before-upgrade
    """
    p = project(c, env)
    snap = _backup().snapshot(p, label)
    p.reporter.info(f"snapshot {snap['id']} ({snap.get('size_bytes', 0) / 1e6:.1f} MB, {held(snap)})")


def held(snap: dict) -> str:
    """How long the snapshot held each service: "paused: infra_trac 14 ms, ..."."""
    frozen = [f for f in snap.get("frozen", []) if f.get("paused_ms")]
    if frozen:
        return "paused: " + ", ".join(f"{f['name']} {f['paused_ms']:.0f} ms" for f in frozen)
    return "paused: " + (", ".join(snap.get("paused", [])) or "none")


@task(name="list", help={"json": "print JSON"})
def list_(c, env=None, json_=False):
    """List snapshots: id, time, label, size, the commit deployed when it was taken.

    Examples:
      invoke snapshot.list --env=prod
      invoke snapshot.list --env=prod --json
    """
    snaps = _backup().snapshots(project(c, env))
    if json_:
        print(json.dumps(snaps, indent=2))
        return
    for snap in snaps:
        tags = dict(t.split("=", 1) if "=" in t else (t, "") for t in snap.get("tags", []))
        print(f"{snap['id']:10} {snap['time'][:19]:20} {snap.get('label') or '':12} {snap.get('size_bytes', 0) / 1e6:9.1f} MB  "
              f"commit {tags.get('commit', '-')}")


@task(help={"snapshot": "snapshot id (from snapshot.list), or latest", "no_start": "leave the infrastructure stopped after the restore",
            "yes": YES_HELP, "lock_wait": LOCK_WAIT_HELP}, required=("snapshot",))
def restore(c, env=None, snapshot="", no_start=False, yes=False, lock_wait=0):
    """Bring /data back from a snapshot: stop, restore /data, start (unless --no-start).

    What was written since the snapshot is lost; a protected environment asks first.

    Examples:
      invoke restore --env=staging --snapshot=latest
      invoke restore --env=prod --snapshot=3f2a9c1e --yes
    """
    if not snapshot:
        from invoke import Exit

        raise Exit("usage: invoke restore --env=X --snapshot ID|latest", code=2)
    p = project(c, env)
    confirmed(p, f"replace /data of {p.name} with snapshot {snapshot} (what was written since is lost)", yes,
              f"invoke restore --env={p.name} --snapshot {snapshot}")
    with locked(p, "restore", lock_wait):
        _backup().restore(p, snapshot, start=not no_start)


FETCH_DEFAULT_TARGET = "test"


def _project_for(c, flag: str, name: str):
    """The Project of an environment named by ``flag`` (not --env): an unknown one is named so."""
    from lapinfra.errors import ConfigError

    try:
        return project(c, name)
    except ConfigError as exc:
        if exc.key != "--env":
            raise
        raise ConfigError(exc.file, flag, exc.message, exc.line) from None


@task(required=("from_",), help={"from_": "the environment whose snapshot is fetched (e.g. prod)",
            "to": f"the environment prepared from it (default: {FETCH_DEFAULT_TARGET}; a protected one only when named here, "
                  "and confirmed)",
            "snapshot": "snapshot id in the source's repository, or latest (default: latest)",
            "no_restore": "only copy the snapshot into the target's backup repository",
            "yes": YES_HELP, "lock_wait": LOCK_WAIT_HELP})
def fetch(c, from_="", to="", snapshot="latest", no_restore=False, yes=False, lock_wait=0):
    """Prepare an environment with another's data: copy a snapshot of --from's backup into --to's, then restore it there.

    --to keeps its own secrets, rendered config, release record, DNS state, registry and
    backup state (the folders of /data listed when it is done).

    Examples:
      invoke snapshot.fetch --from=prod                 (into test, the default)
      invoke snapshot.fetch --from=prod --to=staging --snapshot=3f2a9c1e --yes
      invoke snapshot.fetch --from=prod --no-restore    (only copy it)
    """
    if not from_:
        from invoke import Exit

        raise Exit("usage: invoke snapshot.fetch --from=ENV [--to=ENV] [--snapshot ID|latest] [--no-restore]", code=2)
    source, target = _project_for(c, "--from", from_), _project_for(c, "--to", to or FETCH_DEFAULT_TARGET)
    what = (f"copy snapshot {snapshot} of {source.name} into {target.name}'s backup repository"
            + ("" if no_restore else f" and replace {target.name}'s /data with it"))
    confirmed(target, what, yes, f"invoke snapshot.fetch --from={source.name} --to={target.name}", explicit=bool(to))
    with locked(target, "snapshot.fetch", lock_wait):
        result = _backup().fetch(source, target, snapshot, restore_after=not no_restore)
    done = "restored on" if result.get("restored") else "copied into the backup repository of"
    target.reporter.info(f"snapshot {result['source_snapshot']} of {source.name} is {result['snapshot']} of {target.name}, {done} "
                         f"{target.name} (kept {target.name}'s own {', '.join(_backup().FETCH_KEEP)})")


@task()
def status(c, env=None):
    """Show the last scheduled backup: when, outcome, snapshot, next run.

    Example:
      invoke backup.status --env=prod
    """
    print(json.dumps(_backup().status(project(c, env)), indent=2))


@task()
def check(c, env=None):
    """Check the backup repository's integrity (restic check).

    Example:
      invoke backup.check --env=prod
    """
    result = _backup().check(project(c, env))
    print("ok" if result.get("ok") else f"FAILED\n{result.get('output', '')}")


@task(help={"full": "read every pack of the vault (restic check --read-data) instead of the next seventh",
            "lock_wait": LOCK_WAIT_HELP})
def drill(c, env=None, full=False, lock_wait=0):
    """Run a restore drill on the backup node now: check packs, restore the latest snapshot, compare, probe.

    restic check reads the next of seven rotating subsets of the vault's packs (every pack
    in seven drills; --full reads them all), the latest snapshot is restored into a scratch
    folder on the backup node and compared with its manifest, and each git repository, SQLite
    database and registry manifest of it is probed. The result is recorded on the backup node
    and copied to the master (the status page, the suite's backup check); the backup node also
    drills on its own every backup.drill_hours. Exits 1 when the drill failed.

    Examples:
      invoke backup.drill --env=test
      invoke backup.drill --env=prod --full
    """
    from invoke import Exit

    p = project(c, env)
    with locked(p, "backup.drill", lock_wait):
        result = _backup().drill(p, full=full)
    for line in _backup().drill_lines(result):
        print(line)
    if not result.get("ok"):
        raise Exit(code=1)


@task(pre=[build, render], post=[test], help={"yes": YES_HELP, "lock_wait": LOCK_WAIT_HELP})
def recover(c, env=None, yes=False, lock_wait=0):
    """Disaster recovery: a fresh master node, the latest snapshot restored, started, verified.

    Example:
      invoke dr.recover --env=prod --yes
    """
    p = project(c, env)
    confirmed(p, f"replace /data of {p.name}'s master with the latest snapshot (bringing up a new master if there is none)",
              yes, f"invoke dr.recover --env={p.name}")
    # The lock lives on the master: with no master yet, bring it up first, then take it
    # (a brand-new master has no lock, so nothing else can be changing it).
    from lapinfra import nodeup
    from lapinfra.nodes import Nodes

    if Nodes(p).state(p.env.master) == "absent":
        nodeup.up(p, p.env.master.name)
    with locked(p, "dr.recover", lock_wait):
        _backup().recover(p)


ns = Collection("snapshot", create, list_, fetch)
backup_ns = Collection("backup", status, check, drill)
dr_ns = Collection("dr", recover)
