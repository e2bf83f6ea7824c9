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


@task(help={"from_": "the environment whose snapshot is fetched (e.g. prod)",
            "to": "the environment prepared from it (default: test)",
            "snapshot": "snapshot id in the source's repository, or latest (default)",
            "no_restore": "only copy the snapshot into the target's backup repository"})
def fetch(c, from_="", to="test", snapshot="latest", no_restore=False):
    """The seed's "prepare a test node": copy a snapshot of --from's backup into --to's, then restore it there."""
    if not from_:
        from invoke import Exit

        raise Exit("usage: invoke snapshot.fetch --from=ENV [--to=ENV] [--snapshot ID|latest] [--no-restore]", code=2)
    source, target = project(from_), project(to)
    result = _backup().fetch(source, target, snapshot, restore_after=not no_restore)
    done = "restored on" if result.get("restored") else "copied into the backup repository of"
    target.reporter.info(f"snapshot {result['source_snapshot']} of {source.name} is {result['snapshot']} of {target.name}, {done} "
                         f"{target.name} (kept {target.name}'s own {', '.join(_backup().FETCH_KEEP)})")


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


ns = Collection("snapshot", create, list_, fetch)
backup_ns = Collection("backup", status, check)
dr_ns = Collection("dr", recover)
