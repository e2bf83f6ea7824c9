"""Promotion's decisions that need no node: the gate's match, rollback's choice of snapshot, the lock's staleness."""

import pytest

from lapinfra import deploy, gitpush, phases, promote, records
from lapinfra.actions import WriteRelease
from lapinfra.errors import LapinfraError

IMAGES = {"dns": "sha256:aaa", "git": "sha256:bbb"}


def run(release="c1", images=IMAGES, passed=True, partial=False):
    return {"release": release, "images": dict(images), "passed": passed, "partial": partial, "at": "t", "by": "me"}


def test_gate_takes_only_a_full_passing_run_of_exactly_these_images():
    assert promote.verified_run([run()], "c1", IMAGES) is not None
    assert promote.verified_run([run(passed=False)], "c1", IMAGES) is None
    assert promote.verified_run([run(partial=True)], "c1", IMAGES) is None
    assert promote.verified_run([run(release="c0")], "c1", IMAGES) is None
    assert promote.verified_run([run(images={**IMAGES, "git": "sha256:other"})], "c1", IMAGES) is None


def test_gate_says_why_it_refuses():
    assert promote.refusal([], "c1") == "it was never verified there"
    assert promote.refusal([run(), run(passed=False)], "c1") == "its last run there failed"
    assert promote.refusal([run(images={"dns": "x"})], "c1") == "the images differ from the ones verified there"


HISTORY = [
    {"release": "r1", "previous": None, "snapshot": "s0", "outcome": "deployed"},
    {"release": "r2", "previous": "r1", "snapshot": "s1", "outcome": "deployed"},
    {"release": "r3", "previous": "r2", "snapshot": "s2", "outcome": "rolled back"},
    {"release": "r3", "previous": "r2", "snapshot": "s3", "outcome": "deployed"},
]


def test_rollback_restores_the_snapshot_taken_before_the_release_was_replaced():
    assert promote.rollback_target(HISTORY, "r3", None, "staging") == ("r2", "s3")
    assert promote.rollback_target(HISTORY, "r3", "r1", "staging") == ("r1", "s1")


def test_rollback_refuses_what_no_snapshot_holds():
    with pytest.raises(LapinfraError, match="no snapshot holds release 'r9'.*r1, r2"):
        promote.rollback_target(HISTORY, "r3", "r9", "staging")
    with pytest.raises(LapinfraError, match="already runs r3"):
        promote.rollback_target(HISTORY, "r3", "r3", "staging")
    with pytest.raises(LapinfraError, match="no earlier release"):
        promote.rollback_target(HISTORY[:1], "r1", None, "staging")


# ---- rollback: today's data stays unless --data ------------------------------------

def test_a_rollback_without_data_takes_only_the_release_from_the_snapshot():
    top = ["backup", "dns", "environment", "git", "lapinfra", "maven", "registry", "secrets", "trac"]
    state = ["apps.json", "release.json", "releases.jsonl", "ssh", "verified.jsonl"]
    keep = promote.release_only_keep(top, state)
    assert "environment" not in keep and "lapinfra" not in keep and "lapinfra/release.json" not in keep
    assert {"git", "maven", "trac", "dns", "registry", "secrets", "lapinfra/apps.json", "lapinfra/ssh"} <= set(keep)


def test_what_rollback_data_discards_is_shown_per_folder():
    changed = ["git/repositories/infra.git/refs/heads/master", "git/repositories/x.git/HEAD", "git/a", "git/b",
               "maven/com/x/1.0/x.jar", "lapinfra/releases.jsonl", "backup/status.json", "lapinfra/ssh/host_key"]
    lines = promote.discard_summary("s1", changed, ["dns", "git", "maven", "backup", "trac"], examples=3)
    assert lines[0].startswith("rollback --data replaces /data with snapshot s1")
    assert "  dns: unchanged" in lines and "  trac: unchanged" in lines
    git = next(line for line in lines if line.startswith("  git:"))
    assert "4 files changed" in git and "(1 more)" in git
    assert any(line.startswith("  maven: 1 file changed, discarded: maven/com/x/1.0/x.jar") for line in lines)
    assert not any("backup" in line or "releases.jsonl" in line or "lapinfra" in line for line in lines[1:]), \
        "what every restore keeps is not shown as lost"


def test_nothing_written_since_is_said_so():
    lines = promote.discard_summary("s1", ["lapinfra/verified.jsonl"], ["git"])
    assert lines[-1] == "  nothing changed since the snapshot: nothing written since is lost"


@pytest.mark.parametrize("text, epoch", [
    ("2026-12-04T01:00:00Z", 1796346000.0),
    ("2026-12-04T02:00:00.5+01:00", 1796346000.5),
    ("2026-12-04T01:00:00.123456789+00:00", 1796346000.123456789),
])
def test_restic_times_are_read(text, epoch):
    assert promote.parse_time(text) == pytest.approx(epoch)


class Session:
    """A stand-in MasterSession: the node's release record, audit log and /data listing."""

    registry_host = "docker.internal:5000"

    def __init__(self, entries, current="r3"):
        self.entries, self.current, self.appended, self.commands = list(entries), current, [], []
        self.conn = self

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read_jsonl(self, path):
        return list(self.entries)

    def read_json(self, path):
        return {"release": self.current}

    def append_jsonl(self, path, entry):
        self.appended.append(entry)

    def run(self, command, hide=True, warn=False, timeout=None):
        from types import SimpleNamespace

        self.commands.append(command)
        if command.startswith("cd /data && ls -A"):
            return SimpleNamespace(stdout="environment\ngit\nlapinfra\nmaven\n///\nrelease.json\nreleases.jsonl\n", failed=False)
        if "-newermt" in command:
            return SimpleNamespace(stdout="git/repositories/x.git/HEAD\n", failed=False)
        return SimpleNamespace(stdout="", failed=False)


@pytest.fixture
def node(monkeypatch):
    """promote.rollback against a stand-in session and backup module: what it restores, in what order."""
    from types import SimpleNamespace

    from lapinfra import backup
    from lapinfra.report import Recorder

    session = Session(HISTORY)
    calls = []
    monkeypatch.setattr(promote, "MasterSession", lambda project: session)
    monkeypatch.setattr(promote, "env_lock", lambda *a, **kw: session)

    def restore_in(s, p, snap, start=True, keep=(), executor=None, **kw):
        calls.append(("restore", snap, tuple(keep)))
        executor.record([WriteRelease("r2", records.Release("r2"))])     # what its start applied
    monkeypatch.setattr(backup, "restore_in", restore_in)
    monkeypatch.setattr(backup, "snapshots_in", lambda s, p: [{"id": "s3", "time": "2026-12-04T01:00:00Z"}])
    monkeypatch.setattr(backup, "safety_snapshot", lambda s, p, purpose: calls.append(("snapshot", f"safety {purpose}")) or "safe1")
    monkeypatch.setattr(backup, "recover_interrupted", lambda s, p: None)
    project = SimpleNamespace(name="staging", reporter=Recorder())
    return SimpleNamespace(session=session, calls=calls, project=project)


def test_rollback_brings_back_the_release_and_keeps_todays_data(node):
    entry = promote.rollback(node.project)
    assert entry["release"] == "r2" and entry["data"] is False
    [(what, snap, keep)] = node.calls
    assert (what, snap) == ("restore", "s3")
    assert "git" in keep and "maven" in keep and "lapinfra/releases.jsonl" in keep
    assert "environment" not in keep and "lapinfra/release.json" not in keep
    assert node.session.appended == [entry]
    assert entry["actions"] == [{"action": "write release record", "release": "r2"}]     # the restore's start


def test_rollback_data_shows_what_it_discards_asks_and_keeps_it_in_a_safety_snapshot(node):
    shown = []
    entry = promote.rollback(node.project, data=True, confirm=shown.append)
    assert any("git: 1 file changed, discarded: git/repositories/x.git/HEAD" in line for line in shown[0])
    assert any("-newermt @1796346000" in c for c in node.session.commands)
    assert node.calls == [("snapshot", "safety rollback --data to r2"), ("restore", "s3", ())]
    assert entry["safety_snapshot"] == "safe1" and entry["data"] is True
    assert any("safety snapshot safe1" in line for line in node.project.reporter.lines)


def test_rollback_data_not_confirmed_changes_nothing(node):
    def refuse(summary):
        raise LapinfraError("not confirmed")

    with pytest.raises(LapinfraError, match="not confirmed"):
        promote.rollback(node.project, data=True, confirm=refuse)
    assert node.calls == [] and node.session.appended == []


@pytest.fixture
def failing_deploy(node, monkeypatch):
    """A gated deploy whose push fails after the pre-deploy snapshot."""
    from types import SimpleNamespace

    from lapinfra import backup

    node.project.env = SimpleNamespace(name="staging", promoted_from="test")
    node.project.root = "."
    monkeypatch.setattr(deploy, "MasterSession", lambda project: node.session)
    monkeypatch.setattr(deploy, "env_lock", lambda *a, **kw: node.session)
    monkeypatch.setattr(deploy, "release_id", lambda root: "r4")
    monkeypatch.setattr(deploy, "built_images", lambda p: {})
    monkeypatch.setattr(deploy, "config_files", lambda p: {})
    monkeypatch.setattr(deploy, "seed_images", lambda p: {})
    monkeypatch.setattr(deploy, "check_gate", lambda *a: {"source": "test", "forced": False})
    monkeypatch.setattr(deploy, "release_record", lambda *a: records.Release("r4"))
    monkeypatch.setattr(deploy, "ensure_infra_network", lambda client: None)
    monkeypatch.setattr(gitpush, "check_git", lambda *a: None)       # no git server here (tests/unit/test_push_git.py)

    class Unreachable(phases.Phase):
        name = "upload"

        def apply(self, s, target, executor):
            raise LapinfraError("the registry went away")

    monkeypatch.setattr(deploy, "deploy_steps", lambda env: [("push images", [Unreachable()])])
    labels = iter(["pre1"])
    monkeypatch.setattr(backup, "snapshot_in", lambda s, p, label: node.calls.append(("snapshot", label)) or {"id": next(labels)})
    monkeypatch.setattr(deploy, "safety_snapshot", lambda s, p, purpose: node.calls.append(("snapshot", f"safety {purpose}")) or "safe1")
    return node


def test_a_failed_deploy_keeps_the_data_written_meanwhile_in_a_named_safety_snapshot(failing_deploy):
    node = failing_deploy
    with pytest.raises(LapinfraError) as failed:
        deploy.deploy(node.project)
    assert node.calls == [("snapshot", "pre-deploy r4"), ("snapshot", "safety failed deploy r4"), ("restore", "pre1", ())]
    assert "rolled back" in str(failed.value) and "safety snapshot safe1" in str(failed.value)
    assert node.session.appended[-1]["safety_snapshot"] == "safe1"
    # the deploy's own actions (none: it failed at its first) apart from what the rollback's start applied
    assert node.session.appended[-1]["actions"] == []
    assert node.session.appended[-1]["rollback_actions"] == [{"action": "write release record", "release": "r2"}]


def test_without_a_safety_snapshot_a_failed_deploy_discards_nothing(failing_deploy, monkeypatch):
    from lapinfra import backup

    node = failing_deploy

    def safety(s, p, purpose):
        raise LapinfraError("backup node unreachable")

    monkeypatch.setattr(deploy, "safety_snapshot", safety)
    with pytest.raises(LapinfraError) as failed:
        deploy.deploy(node.project)
    assert [c for c in node.calls if c[0] == "restore"] == []
    assert "nothing was rolled back" in str(failed.value) and "rollback --data" in str(failed.value)
    assert node.session.appended[-1]["outcome"] == "failed"


def test_the_files_changed_since_a_snapshot_are_found_by_the_nodes_shell(tmp_path, monkeypatch):
    """The find command of rollback --data, run by a local shell on a stand-in /data."""
    import os
    import subprocess
    from types import SimpleNamespace

    from lapinfra import services as svc

    data = tmp_path / "data"
    for rel in ("git/repositories/x.git/HEAD", "git/old", "maven/a.jar", "backup/status.json",
                "lapinfra/ssh/key", "lapinfra/release.json", "trac/db"):
        (data / rel).parent.mkdir(parents=True, exist_ok=True)
        (data / rel).write_text(rel)
    snapshot_at = 1_700_000_000
    for rel in ("git/old", "trac/db", "lapinfra/release.json"):
        os.utime(data / rel, (snapshot_at - 100, snapshot_at - 100))

    def run(command, hide=True, warn=False):
        r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, check=True)
        return SimpleNamespace(stdout=r.stdout, failed=False)

    monkeypatch.setattr(svc, "DATA", str(data))
    s = SimpleNamespace(conn=SimpleNamespace(run=run))
    changed = sorted(promote.changed_since(s, snapshot_at))
    assert changed == ["git/repositories/x.git/HEAD", "maven/a.jar"]
    assert promote._listing(s) == (["backup", "git", "lapinfra", "maven", "trac"], ["release.json", "ssh"])
