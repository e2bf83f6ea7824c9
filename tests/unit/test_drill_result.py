"""A restore drill's result beyond the backup node: the master's copy (lapbackup drill-status,
over sftp), `invoke backup.drill` (lapvault drill over the admin SSH, stand-in connection),
and the suite's verdict on the last drill."""
import json
from types import SimpleNamespace

import pytest
from invoke import Exit

from lapinfra import backup
from lapinfra.errors import LapinfraError
from lapinfra.report import Recorder
from tests.unit.test_guarded_tasks import load_tasks, stage  # noqa: F401 - stage is a fixture
from tests.unit.test_lapbackup import load_lapbackup

PASSED = {"at": "2026-12-04T12:00:00+00:00", "ok": True, "snapshot": "b2b2b2b2", "seconds": 41.5, "subset": "3/7",
          "checked": ["restic check --read-data-subset=3/7 of the vault: no errors (9.1 s)"], "failures": []}
FAILED = dict(PASSED, ok=False, failures=["restic check --read-data-subset=3/7 of the vault: pack 1a2b3c4d"
                                          + "5" * 56 + " is damaged (/data/vault/data/1a/...): Pack ID does not match"])


# ---- the master's copy: lapbackup drill-status --------------------------------------------------

@pytest.fixture
def lb(tmp_path, monkeypatch):
    lb = load_lapbackup(tmp_path, monkeypatch, name="lapbackup_drill")
    monkeypatch.setattr(lb, "STATE", str(tmp_path / "backup"))
    monkeypatch.setattr(lb, "DRILL_COPY", str(tmp_path / "backup" / "drill.json"))
    key = tmp_path / "key"
    key.write_text("key")
    monkeypatch.setattr(lb, "KEY_COPY", str(key))
    monkeypatch.setenv("BACKUP_REPOSITORY", "sftp://backup@192.0.2.1:2222//restic")
    return lb


class FakeSftp:
    """sftp -b -: 'get REMOTE LOCAL' answered from ``files`` (remote path -> content) or an error."""

    def __init__(self, files=None, stderr=None):
        self.files, self.stderr, self.calls = files or {}, stderr, []

    def __call__(self, cmd, input=None, **kw):
        self.calls.append((cmd, input))
        _, remote, local = input.split()
        if self.stderr:
            return SimpleNamespace(returncode=1, stdout="", stderr=self.stderr)
        if remote not in self.files:
            return SimpleNamespace(returncode=1, stdout="", stderr=f'File "{remote}" not found.\n')
        with open(local, "w") as f:
            f.write(self.files[remote])
        return SimpleNamespace(returncode=0, stdout="", stderr="")


def test_the_master_copies_the_backup_nodes_record_through_the_sftp_users_chroot(lb):
    sftp = FakeSftp({"/lapinfra/vault/drill.json": json.dumps(FAILED)})
    doc = lb.refresh_drill_copy(fetch=lambda: lb.fetch_drill(run=sftp))
    assert doc == FAILED and json.load(open(lb.DRILL_COPY)) == FAILED
    [(cmd, batch)] = sftp.calls
    assert cmd[0] == "sftp" and cmd[-1] == "backup@192.0.2.1" and cmd[cmd.index("-P") + 1] == "2222"
    assert "StrictHostKeyChecking=yes" in cmd and f"UserKnownHostsFile={lb.KNOWN_HOSTS}" in cmd
    assert cmd[cmd.index("-i") + 1] == lb.KEY_COPY and "-b" in cmd
    assert batch.startswith("get /lapinfra/vault/drill.json ")
    import os

    assert sorted(os.listdir(lb.STATE)) == ["drill.json"], "nothing but the copy is left"


def test_a_backup_node_without_a_record_leaves_no_old_copy_behind(lb):
    lb.refresh_drill_copy(fetch=lambda: lb.fetch_drill(run=FakeSftp({"/lapinfra/vault/drill.json": json.dumps(PASSED)})))
    assert lb.refresh_drill_copy(fetch=lambda: lb.fetch_drill(run=FakeSftp())) == {"at": None}
    import os

    assert not os.path.exists(lb.DRILL_COPY)


@pytest.mark.parametrize("answer, message", [
    (FakeSftp(stderr='remote open("/lapinfra/vault/drill.json"): Permission denied\n'), "not readable by the sftp user"),
    (FakeSftp(stderr="Host key verification failed.\n"), "host key does not match"),
    (FakeSftp({"/lapinfra/vault/drill.json": "{half"}), "is not JSON"),
    (FakeSftp({"/lapinfra/vault/drill.json": '{"ok": "yes"}'}), "is not a drill record"),
])
def test_an_unreadable_or_strange_record_is_an_error_and_the_copy_stays(lb, answer, message):
    lb.refresh_drill_copy(fetch=lambda: lb.fetch_drill(run=FakeSftp({"/lapinfra/vault/drill.json": json.dumps(PASSED)})))
    with pytest.raises(lb.Fail, match=message):
        lb.refresh_drill_copy(fetch=lambda: lb.fetch_drill(run=answer))
    assert json.load(open(lb.DRILL_COPY)) == PASSED


def test_the_sftp_target_of_both_repository_spellings(lb, monkeypatch):
    monkeypatch.setenv("BACKUP_REPOSITORY", "sftp:backup@192.0.2.7:/restic")
    cmd = lb.sftp_get_command()
    assert cmd[-1] == "backup@192.0.2.7" and "-P" not in cmd
    monkeypatch.setenv("BACKUP_REPOSITORY", "/local/restic")
    with pytest.raises(lb.Fail, match="must be an sftp: repository"):
        lb.sftp_get_command()


def test_drill_status_is_a_command_that_prints_the_record(lb, monkeypatch, capsys):
    monkeypatch.setattr(lb, "prepare", lambda: None)
    monkeypatch.setattr(lb, "fetch_drill", lambda: FAILED)
    monkeypatch.setattr(lb, "recover_if_idle", lambda: pytest.fail("a read-only command repairs nothing"))
    assert lb.main(["drill-status"]) == 0
    assert json.loads(capsys.readouterr().out) == FAILED


def test_the_scheduler_refreshes_the_copy_after_each_run_and_a_failure_there_is_not_the_runs(lb, monkeypatch, tmp_path):
    monkeypatch.setenv("BACKUP_INTERVAL", "1")
    monkeypatch.setattr(lb, "STATUS", str(tmp_path / "status.json"))
    monkeypatch.setattr(lb, "LOCK_FILE", str(tmp_path / "lock"))
    monkeypatch.setattr(lb, "prepare", lambda: None)
    monkeypatch.setattr(lb, "recover_all", lambda: {})
    monkeypatch.setattr(lb, "ensure_repo", lambda create=True: None)
    monkeypatch.setattr(lb, "do_snapshot", lambda *a, progress=None, **kw: progress.update(snapshot="5afe0001") or {})
    refreshed = []

    def fetch():
        refreshed.append(json.load(open(lb.STATUS))["snapshot"])     # after the run's status
        raise lb.Fail("the backup node is unreachable")

    monkeypatch.setattr(lb, "fetch_drill", fetch)

    class Stop(BaseException):
        pass

    sleeps = []
    monkeypatch.setattr(lb.time, "sleep", lambda s: sleeps.append(s) if len(sleeps) < 2 else (_ for _ in ()).throw(Stop))
    with pytest.raises(Stop):
        lb.cmd_scheduler(None)
    assert refreshed and refreshed[0] == "5afe0001"
    assert json.load(open(lb.STATUS))["outcome"] == "ok"


# ---- invoke backup.drill: lapvault drill over the admin SSH ------------------------------------

class FakeConnection:
    """The backup node's admin SSH: lapvault drill logs to stderr, prints its record."""

    def __init__(self, code=1, out=json.dumps(FAILED), log=("2026-12-04T12:00:01Z lapvault: drill: restic check "
                                                            "--read-data-subset=3/7 of the vault\n")):
        self.code, self.out, self.log, self.commands = code, out, log, []

    def __call__(self, node):
        self.node = node
        return self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def run(self, command, warn=False, hide=None, err_stream=None, timeout=None):
        assert warn and hide == "out" and timeout and timeout >= 3600
        self.commands.append(command)
        for piece in (self.log[:20], self.log[20:]):     # a line may arrive in pieces
            err_stream.write(piece)
        return SimpleNamespace(exited=self.code, stdout=self.out, ok=self.code == 0)


@pytest.fixture
def drill_project(monkeypatch):
    refreshed = []
    monkeypatch.setattr(backup, "refresh_drill_copy", lambda p: refreshed.append(p.name))
    p = SimpleNamespace(name="test", reporter=Recorder(),
                        env=SimpleNamespace(node=lambda role: SimpleNamespace(name="backup")))
    p.refreshed = refreshed
    return p


def test_a_drill_runs_lapvault_on_the_backup_node_shows_its_progress_and_refreshes_the_masters_copy(drill_project):
    conn = FakeConnection()
    doc = backup.drill(drill_project, full=True, connect=conn)
    assert conn.commands == ["/usr/local/sbin/lapvault drill --full"] and conn.node.name == "backup"
    assert doc == FAILED and drill_project.refreshed == ["test"]
    assert "drill: restic check --read-data-subset=3/7 of the vault" in drill_project.reporter.lines


@pytest.mark.parametrize("code, out, log, message", [
    (1, json.dumps({"error": "the vault holds no snapshot yet: nothing to drill"}), "", "no restore drill on backup: the vault holds no snapshot"),
    (2, "", "lapvault: unknown command 'drill' (loop, once)\n", "older node image"),
    (1, "", "Traceback (most recent call last):\nOSError: boom\n", r"failed \(exit 1\) without a result"),
])
def test_a_drill_that_could_not_run_says_why_and_what_to_do(drill_project, code, out, log, message):
    with pytest.raises(LapinfraError, match=message):
        backup.drill(drill_project, connect=FakeConnection(code, out, log))


def test_the_drill_as_lines_names_every_check_and_failure():
    lines = backup.drill_lines(FAILED)
    assert lines[0].startswith("restore drill of snapshot b2b2b2b2 FAILED (1 failures) in 41.5 s (packs read: 3/7")
    assert lines[1].startswith("  ok      restic check") and lines[2].startswith("  FAILED  restic check")
    assert "pack 1a2b3c4d" in lines[2]
    assert backup.drill_lines(PASSED)[0].startswith("restore drill of snapshot b2b2b2b2 passed in 41.5 s")


@pytest.fixture
def drill_task(monkeypatch, stage):
    s = stage()
    snapshot = load_tasks("snapshot")
    results = []
    monkeypatch.setattr(backup, "drill", lambda p, full=False: s.events.append(("drill", p.name, full)) or results.pop(0))
    return snapshot.drill, s, results


def test_backup_drill_takes_the_lock_prints_the_result_and_exits_1_when_it_failed(drill_task, capsys):
    drill, s, results = drill_task
    results += [FAILED, PASSED]
    with pytest.raises(Exit) as failed:
        drill.body(None, env="test", full=True)
    assert failed.value.code == 1
    assert s.events == [("lock", "test", "backup.drill", 0), ("drill", "test", True), ("unlock", "test")]
    out = capsys.readouterr().out
    assert "FAILED (1 failures)" in out and "pack 1a2b3c4d" in out
    drill.body(None, env="test")
    assert "passed in 41.5 s" in capsys.readouterr().out


# ---- the suite's verdict -------------------------------------------------------------------------

NOW = 1_796_400_000.0


def at(hours_ago):
    import datetime as dt

    return dt.datetime.fromtimestamp(NOW - hours_ago * 3600, dt.timezone.utc).isoformat(timespec="seconds")


def test_no_drill_yet_passes_and_the_newest_copy_decides():
    assert backup.drill_verdict("test", backup.latest_drill([]), NOW, 86400) is None
    old_failed, new_passed = dict(FAILED, at=at(30)), dict(PASSED, at=at(1))
    assert backup.latest_drill([old_failed, new_passed]) is new_passed
    assert backup.latest_drill([new_passed, old_failed, {"at": None}, "junk"]) is new_passed
    assert backup.drill_verdict("test", backup.latest_drill([old_failed, new_passed]), NOW, 86400) is None


def test_a_failed_drill_is_red_with_its_failures_and_the_way_back():
    two = dict(FAILED, at=at(1), failures=FAILED["failures"] + ["git fsck of git/git/repositories/x.git failed (exit 1)"])
    message = backup.drill_verdict("test", two, NOW, 86400)
    first = message.splitlines()[0]      # what `invoke test` shows of a failed check
    assert first.startswith("the last restore drill (") and "failed: restic check" in first and "pack 1a2b3c4d" in first
    assert "\n  - git fsck of git/git/repositories/x.git failed" in message
    assert "invoke backup.drill --env=test" in message


def test_a_drill_long_overdue_is_red_the_schedules_own_slack_is_not():
    assert backup.drill_verdict("test", dict(PASSED, at=at(48)), NOW, 86400) is None
    message = backup.drill_verdict("test", dict(PASSED, at=at(50)), NOW, 86400)
    assert "ran 50 h ago" in message and "every 24 h" in message and "lapvault.log" in message


def test_the_suite_reads_the_backup_nodes_own_record_over_the_admin_ssh():
    class Conn(FakeConnection):
        def run(self, command, hide=None, warn=False, **kw):
            self.commands.append(command)
            return SimpleNamespace(ok=self.code == 0, stdout=self.out)

    p = SimpleNamespace(env=SimpleNamespace(node=lambda role: SimpleNamespace(name=role)))
    conn = Conn(code=0, out=json.dumps(PASSED))
    assert backup.read_drill_on_backup_node(p, connect=conn) == PASSED
    assert conn.commands == ["cat /data/lapinfra/vault/drill.json"] and conn.node.name == "backup"
    assert backup.read_drill_on_backup_node(p, connect=Conn(code=1, out="")) is None


def test_progress_lines_lose_lapvaults_timestamp():
    assert backup.progress_line("2026-12-04T12:00:01Z lapvault: drill: restoring x\n") == "drill: restoring x"
    assert backup.progress_line("  restic: 12 packs\n") == "  restic: 12 packs"
    assert backup.progress_line("   \n") is None



def test_the_suites_backup_check_is_red_with_the_failures_of_the_newest_drill():
    from tests.unit.test_verify import _backup_checks

    check = _backup_checks().test_the_last_restore_drill_passed
    env = SimpleNamespace(name="test", backup=SimpleNamespace(drill_interval_s=86400))
    import datetime as dt

    now = dt.datetime.now(dt.timezone.utc)
    failed = dict(FAILED, at=now.isoformat(timespec="seconds"))
    older_pass = dict(PASSED, at=(now - dt.timedelta(hours=2)).isoformat(timespec="seconds"))
    with pytest.raises(AssertionError, match="pack 1a2b3c4d"):
        check(drills=[older_pass, failed], env=env)
    check(drills=[], env=env)                           # a fresh environment: no drill yet
    check(drills=[older_pass], env=env)
