"""Backups: scheduled snapshots are recent, the repository is sound, a restored file is right."""
import datetime as dt
import json

import pytest

from lapinfra import backup, services

STABLE_FILE = "environment/registry/config.yml"   # rendered config: changes only with a redeploy of new config


@pytest.fixture(scope="module")
def status(node):
    """The scheduler's record; right after a first deploy its first run may still be going."""
    import json
    import time

    f = node.file("/data/backup/status.json")
    deadline = time.monotonic() + 120
    while not f.exists and time.monotonic() < deadline:
        time.sleep(3)
    assert f.exists, "the backup scheduler has not finished a run (no /data/backup/status.json)"
    return json.loads(f.content_string)


def test_latest_scheduled_snapshot_is_younger_than_twice_the_interval(status, env):
    assert status["outcome"] == "ok", status.get("error")
    last = dt.datetime.fromisoformat(status["last_run"])
    age = dt.datetime.now(dt.timezone.utc) - last.astimezone(dt.timezone.utc)
    assert age < dt.timedelta(minutes=2 * env.backup.interval_minutes), f"last snapshot {age} ago"
    assert status["snapshot"]


def lapbackup(engine, env, *args: str, none_if: str = ""):
    """The backup tool's answer, asked of the running scheduler (infra_backup: the same tool,
    mounts, secrets and repository as `invoke snapshot.list` and the rest use) through the
    suite's one connection to the master's engine, instead of a one-off tool container and a
    session of its own per call."""
    name = services.backup_service(env).container
    container = engine.containers.get(name)
    assert container.status == "running", f"{name} is {container.status}: no scheduled snapshots are taken"
    code, (out, err) = container.exec_run(["lapbackup", *args], demux=True)
    out, err = (out or b"").decode(errors="replace"), (err or b"").decode(errors="replace")
    try:
        answer = json.loads(out)
    except json.JSONDecodeError:
        answer = None
    tail = "\n".join(err.strip().splitlines()[-12:])
    assert isinstance(answer, (dict, list)), f"lapbackup {' '.join(args)} in {name} exited {code}, no JSON:\n{tail}"
    if code != 0 and isinstance(answer, dict) and "error" in answer:
        if none_if and none_if in answer["error"]:
            return None
        raise AssertionError(f"lapbackup {' '.join(args)} in {name} failed: {answer['error']}\n{tail}")
    return answer


@pytest.mark.slow
def test_backup_repository_passes_its_integrity_check(engine, env):
    result = lapbackup(engine, env, "check")
    assert result["ok"], result.get("output")


@pytest.mark.slow
def test_a_snapshot_of_the_running_release_holds_its_config(project, engine, env, node, release):
    """Judged by a snapshot of the running release, never by whichever is latest: right after a
    deploy the latest can be the deploy's own, taken before the new config was written (tagged
    with the release before it), or one fetched from another environment. lapbackup picks the
    newest of the environment's own snapshots tagged commit=<release> and reads the file from it,
    in one call. When no snapshot was taken since the release was activated, the check takes one."""
    tags = ("--tag", f"env={project.name}", "--tag", f"commit={release['release']}")
    stored = lapbackup(engine, env, "digest", "latest", *tags, STABLE_FILE, none_if="no snapshots tagged")
    if stored is None:
        snap = backup.snapshot(project, label="verify")
        stored = lapbackup(engine, env, "digest", snap["id"], STABLE_FILE)
    on_master = node.check_output(f"sha256sum /data/{STABLE_FILE}").split()[0]
    assert stored["sha256"] == on_master, f"{STABLE_FILE} in snapshot {stored.get('snapshot')} differs from the master's"


@pytest.fixture(scope="module")
def drills(node, project):
    """The last restore drill's record as the backup node holds it (admin SSH) and as the
    master's copy has it (lapbackup drill-status); whichever copy can be read."""
    import json

    copies = []
    copy = node.file(backup.DRILL_COPY)
    if copy.exists:
        copies.append(json.loads(copy.content_string))
    try:
        copies.append(backup.read_drill_on_backup_node(project))
    except Exception as exc:  # noqa: BLE001 - the master's copy still speaks; the vault's checks name the node
        print(f"the backup node's drill record could not be read: {exc}")
    return [c for c in copies if c is not None]


def test_the_last_restore_drill_passed(drills, env):
    """A failed drill (a damaged pack, a restore that lacks files, a repository git fsck
    refuses) turns this red with its failures; no drill yet (a fresh environment) passes."""
    import time

    message = backup.drill_verdict(env.name, backup.latest_drill(drills), time.time(), env.backup.drill_interval_s)
    assert message is None, message
