"""Backups: scheduled snapshots are recent, the repository is sound, a restored file is right."""
import datetime as dt

import pytest

from lapinfra import backup

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


def test_backup_repository_passes_its_integrity_check(project):
    result = backup.check(project)
    assert result["ok"], result.get("output")


def test_a_file_from_the_latest_snapshot_equals_the_master(project, node):
    stored = backup.digest(project, "latest", STABLE_FILE)
    on_master = node.check_output(f"sha256sum /data/{STABLE_FILE}").split()[0]
    assert stored["sha256"] == on_master
