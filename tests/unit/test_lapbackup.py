"""The backup tool's unpause step, against a stand-in Docker API: a container stopped or
recreated while a snapshot held it paused is not "left paused" (it failed scheduled
snapshots whenever a deploy or a `docker stop` met one)."""
import importlib.machinery
import importlib.util

import pytest

from tests.conftest import ROOT


def load_lapbackup(tmp_path, monkeypatch, data=None):
    """The script as a module; with ``data`` its /srv/data (and everything below) is that folder."""
    loader = importlib.machinery.SourceFileLoader("lapbackup", str(ROOT / "images/backup/lapbackup"))
    spec = importlib.util.spec_from_loader("lapbackup", loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    monkeypatch.setattr(module, "PAUSED_FILE", str(tmp_path / "paused.json"))
    monkeypatch.setattr(module, "log", lambda message: None)
    if data is not None:
        data = str(data)
        for name, value in {"DATA": data, "STATE": f"{data}/backup", "STATUS": f"{data}/backup/status.json",
                            "PAUSED_FILE": f"{data}/backup/paused.json", "LOCK_FILE": f"{data}/backup/lock",
                            "SEEN_PAUSED": f"{data}/backup/paused-seen.json", "SIZES": f"{data}/backup/sizes.json",
                            "TMP": f"{data}/.restore-tmp", "JOURNAL": f"{data}/.restore-tmp/journal.json"}.items():
            monkeypatch.setattr(module, name, value)
    return module


@pytest.fixture
def lapbackup(tmp_path, monkeypatch):
    return load_lapbackup(tmp_path, monkeypatch)


def _engine(lapbackup, monkeypatch, unpause, paused_now):
    calls = []

    def docker(method, path):
        calls.append((method, path))
        if path.endswith("/unpause"):
            return unpause
        return (200, {"State": {"Paused": paused_now}}) if paused_now is not None else (404, b"")

    monkeypatch.setattr(lapbackup, "docker", docker)
    return calls


@pytest.mark.parametrize("unpause,paused_now", [
    ((500, {"message": "Container abc is not paused"}), False),   # Docker 20.10 after a `docker stop`
    ((409, {"message": "Container abc is not paused"}), False),
    ((500, {"message": "No such container: abc"}), None),         # removed (recreated by a deploy)
    ((204, b""), True),                                             # unpaused as asked
])
def test_a_container_that_is_no_longer_paused_is_done(lapbackup, monkeypatch, tmp_path, unpause, paused_now):
    _engine(lapbackup, monkeypatch, unpause, paused_now)
    lapbackup.unpause_all([{"id": "abc", "name": "infra_artifact"}])
    assert not (tmp_path / "paused.json").exists()


def test_a_container_that_stays_paused_is_an_error_and_remembered(lapbackup, monkeypatch, tmp_path):
    _engine(lapbackup, monkeypatch, (500, {"message": "cannot unpause"}), True)
    with pytest.raises(lapbackup.Fail, match="containers left paused: infra_artifact"):
        lapbackup.unpause_all([{"id": "abc", "name": "infra_artifact"}])
    assert "infra_artifact" in (tmp_path / "paused.json").read_text()   # retried by the next run


# ---- what a snapshot holds ----------------------------------------------------------

def test_no_snapshot_holds_the_environments_secrets(lapbackup, monkeypatch):
    argv = []

    def backup(args):
        argv.extend(args)
        return 0, '{"message_type": "summary", "snapshot_id": "1234abcd", "total_bytes_processed": 5}\n', "", []
    monkeypatch.setattr(lapbackup, "_backup_paused", backup)
    monkeypatch.setattr(lapbackup, "_cache_size", lambda sid, size: None)
    lapbackup.do_snapshot("safety-restore", ["safety", "commit=abc"])
    excluded = [argv[i + 1] for i, a in enumerate(argv) if a == "--exclude"]
    assert "/srv/data/secrets" in excluded
    assert argv[-1] == "/srv/data"
    tags = [argv[i + 1] for i, a in enumerate(argv) if a == "--tag"]
    assert {"label:safety-restore", "safety", "commit=abc"} <= set(tags)


def test_a_tag_is_k_v_or_one_word(lapbackup):
    with pytest.raises(lapbackup.Fail, match="neither K=V nor a lower-case word"):
        lapbackup.do_snapshot(None, ["two words"])


# ---- pauses ---------------------------------------------------------------------------

def test_left_paused_counts_from_the_recorded_pause_or_from_first_sight(lapbackup):
    recorded = [{"id": "a", "name": "infra_git", "since": 1000.0}]
    problems, seen = lapbackup.left_paused(1030.0, ["infra_git"], recorded, {}, 60)
    assert problems == [] and seen == {}                      # a snapshot's pause, 30 s: fine
    problems, _ = lapbackup.left_paused(1100.0, ["infra_git"], recorded, {}, 60)
    assert problems == [{"name": "infra_git", "paused_s": 100}]
    # paused by someone else: counted from when health first saw it
    problems, seen = lapbackup.left_paused(2000.0, ["infra_trac"], [], {}, 60)
    assert problems == [] and seen == {"infra_trac": 2000.0}
    problems, seen = lapbackup.left_paused(2061.0, ["infra_trac"], [], seen, 60)
    assert problems == [{"name": "infra_trac", "paused_s": 61}]
    assert lapbackup.left_paused(2100.0, [], [], seen, 60) == ([], {})   # unpaused: forgotten


def test_health_is_unhealthy_while_an_infra_container_is_left_paused(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "backup").mkdir(parents=True)
    lb = load_lapbackup(tmp_path, monkeypatch, data)
    (data / "backup" / "paused.json").write_text('[{"id": "a", "name": "infra_git", "since": 1000}]')

    def engine(method, path):
        assert method == "GET" and "paused" in path
        return 200, [{"Names": ["/infra_git"], "State": "paused"}, {"Names": ["/other"], "State": "paused"}]
    monkeypatch.setattr(lb, "docker", engine)
    status, rc = lb.cmd_health(None, now=1010)
    assert rc == 0 and status["paused"] == ["infra_git"]
    status, rc = lb.cmd_health(None, now=1200)
    assert rc == 1 and status["left_paused"] == [{"name": "infra_git", "paused_s": 200}]


def test_every_command_but_the_read_only_ones_first_unpauses_what_a_killed_run_left(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "backup").mkdir(parents=True)
    lb = load_lapbackup(tmp_path, monkeypatch, data)
    calls = []
    monkeypatch.setattr(lb, "docker", lambda method, path: (calls.append(path), (204, b""))[1])
    monkeypatch.setattr(lb, "cmd_list", lambda a: [])
    monkeypatch.setattr(lb, "cmd_status", lambda a: {"last_run": None})
    (data / "backup" / "paused.json").write_text('[{"id": "abc", "name": "infra_git"}]')
    assert lb.main(["status"]) == 0 and calls == []            # read-only: never repairs
    assert lb.main(["list"]) == 0
    assert calls == ["/containers/abc/unpause"] and not (data / "backup" / "paused.json").exists()


def test_a_restic_call_past_its_time_limit_is_stopped_and_an_error(lapbackup, monkeypatch, tmp_path):
    import subprocess

    monkeypatch.setenv("BACKUP_REPOSITORY", "sftp:root@192.0.2.1:/data/restic")
    monkeypatch.setenv("BACKUP_RESTIC_TIMEOUT_S", "1")
    monkeypatch.setattr(lapbackup, "CACHE", str(tmp_path / "cache"))
    real = subprocess.Popen
    monkeypatch.setattr(lapbackup.subprocess, "Popen",
                        lambda cmd, **kw: real(["sleep", "30"], **kw))
    import time

    start = time.monotonic()
    with pytest.raises(lapbackup.Fail, match="did not finish within 1s"):
        lapbackup.restic("backup", "/srv/data")
    assert time.monotonic() - start < 15
    assert lapbackup.restic_timeout("restore") == 1
    monkeypatch.delenv("BACKUP_RESTIC_TIMEOUT_S")
    assert lapbackup.restic_timeout("restore") > lapbackup.restic_timeout("snapshots")


def test_a_pause_interrupted_half_way_unpauses_what_it_had_paused(lapbackup, monkeypatch, tmp_path):
    calls = []

    def docker(method, path):
        calls.append((method, path))
        if path == "/containers/json":
            return 200, [{"Names": [f"/infra_{n}"], "Id": n, "State": "running"} for n in ("a", "b", "c")]
        if path == "/containers/b/pause":
            raise lapbackup.Terminated(15)
        return 204, b""
    monkeypatch.setattr(lapbackup, "docker", docker)
    with pytest.raises(lapbackup.Terminated):
        lapbackup.pause_all()
    assert ("POST", "/containers/a/unpause") in calls and not (tmp_path / "paused.json").exists()
