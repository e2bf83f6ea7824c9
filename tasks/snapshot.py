"""snapshot, backup, restore, dr: the master's /data on the backup node."""
import json

from invoke import Collection

from tasks._common import project, task
from tasks.render import render
from tasks.verify import test


def _backup():
    from lapinfra import backup  # lazy: fabric and docker load only for these tasks

    return backup


@task(help={"label": "a label stored with the snapshot"})
def create(c, env=None, label="manual"):
    """Snapshot the master's /data (writers paused for the moment) onto the backup node."""
    p = project(env)
    snap = _backup().snapshot(p, label)
    p.reporter.info(f"snapshot {snap['id']} ({snap.get('size_bytes', 0) / 1e6:.1f} MB, paused: {', '.join(snap.get('paused', [])) or 'none'})")


@task(name="list", help={"json": "print JSON"})
def list_(c, env=None, json_=False):
    """List snapshots: id, time, label, size, the commit deployed when it was taken."""
    snaps = _backup().snapshots(project(env))
    if json_:
        print(json.dumps(snaps, indent=2))
        return
    for s in snaps:
        tags = dict(t.split("=", 1) if "=" in t else (t, "") for t in s.get("tags", []))
        print(f"{s['id']:10} {s['time'][:19]:20} {s.get('label') or '':12} {s.get('size_bytes', 0) / 1e6:9.1f} MB  commit {tags.get('commit', '-')}")


@task(help={"snapshot": "snapshot id, or latest", "no_start": "leave the infrastructure stopped after the restore"})
def restore(c, env=None, snapshot="", no_start=False):
    """The seed's restore.sh: stop, restore /data from a snapshot, start."""
    if not snapshot:
        from invoke import Exit

        raise Exit("usage: invoke restore --env=X --snapshot ID|latest", code=2)
    _backup().restore(project(env), snapshot, start=not no_start)


@task()
def status(c, env=None):
    """Show the last scheduled backup: when, outcome, snapshot, next run."""
    print(json.dumps(_backup().status(project(env)), indent=2))


@task()
def check(c, env=None):
    """Check the backup repository's integrity (restic check)."""
    result = _backup().check(project(env))
    print("ok" if result.get("ok") else f"FAILED\n{result.get('output', '')}")


@task(pre=[render], post=[test])
def recover(c, env=None):
    """Disaster recovery: a fresh master node, the latest snapshot restored, started, verified."""
    _backup().recover(project(env))


ns = Collection("snapshot", create, list_)
backup_ns = Collection("backup", status, check)
dr_ns = Collection("dr", recover)
