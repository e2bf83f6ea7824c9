"""restore, dr.recover and snapshot against a stand-in master: the order of what they do
to it (repair first, safety snapshot before the stop, audit logs kept, secrets uploaded
before the start), and the backup tool's container stopped gently when interrupted."""
from types import SimpleNamespace

import docker.errors
import pytest

from lapinfra import backup, backuptool, nodeup, records, services as svc
from lapinfra.actions import ChangeContainer
from lapinfra.executor import Executor
from lapinfra.errors import LapinfraError

SNAPS = [
    {"id": "aaaa1111", "time": "2026-12-01T10:00:00+00:00", "label": "manual", "tags": ["env=test"]},
    {"id": "bbbb2222", "time": "2026-12-02T10:00:00+00:00", "label": "scheduled", "tags": ["env=test", "commit=c1"]},
    {"id": "cccc3333", "time": "2026-12-03T10:00:00+00:00", "label": "scheduled", "tags": ["env=staging"]},
]


class Master:
    """A stand-in MasterSession: the node's files, its images, and what was done to it."""

    def __init__(self, project, events, release=True, has_tool=True, recovered=None):
        self.p, self.env, self.events = project, project.env, events
        self.files = {records.RELEASE: {"release": "c1", "images": {}, "config": {}}} if release else {}
        self.recovered = recovered or {"swap": None, "unpaused": []}

        def get(ref):
            if not has_tool:
                raise docker.errors.ImageNotFound(ref)
        self.docker = SimpleNamespace(images=SimpleNamespace(get=get), containers=SimpleNamespace(list=lambda **kw: []))
        # a restore's journal folder on the node: the repair runs (its outcome is `recovered`)
        self.conn = SimpleNamespace(run=lambda *a, **kw: SimpleNamespace(ok=True))
        self.logged = {}              # path -> the entries appended to that JSON-lines log

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read_json(self, path):
        return self.files.get(path)

    def append_jsonl(self, path, entry):
        self.logged.setdefault(path, []).append(entry)

    def tool(self, s, args):
        self.events.append("tool " + " ".join(args))
        if args[0] == "recover":
            return self.recovered
        if args[0] == "list":
            return SNAPS
        if args[0] == "snapshot":
            return {"id": "5afe0001", "paused": []}
        return {"restored": args[1]}


@pytest.fixture
def master(project, monkeypatch):
    events = []

    def make(**kw):
        m = Master(project, events, **kw)
        monkeypatch.setattr(backup, "MasterSession", lambda p: m)
        monkeypatch.setattr(backup, "run_tool", m.tool)
        monkeypatch.setattr(backuptool, "run_tool", m.tool)    # recover_interrupted's
        return m
    monkeypatch.setattr(backup, "_prepare", lambda s, p, seed_all=False: events.append("prepare"))
    monkeypatch.setattr(backup, "stop_all", lambda s, reporter: events.append("stop"))

    def start(s, release, reporter, executor):       # its start applies one action, through the command's executor
        events.append("start")
        executor.apply([ChangeContainer("infra_dns", "start", spec="x")])
    monkeypatch.setattr(backup, "start_services", start)
    monkeypatch.setattr(Executor, "_ChangeContainer", lambda self, action: None)
    monkeypatch.setattr(backup, "upload_secrets",
                        lambda s, p, services: events.append("secrets " + " ".join(x.name for x in services if x.secrets)))
    monkeypatch.setattr(backup, "Nodes", lambda p: SimpleNamespace(state=lambda node: "running"))
    make.events = events
    return make


KEEP_AUDIT = " ".join(f"--keep={k}" for k in records.AUDIT_LOGS)


def test_restore_repairs_first_then_takes_a_safety_snapshot_before_it_stops_anything(project, master):
    m = master()
    backup.restore(project, "aaaa1111")
    assert m.events == ["prepare", "tool recover", "tool list",
                        "tool snapshot --label safety-restore --tag safety --tag commit=c1",
                        "stop", f"tool restore aaaa1111 {KEEP_AUDIT}", "start"]
    assert ("safety snapshot 5afe0001 of test before restore; undo with "
            "`invoke restore --env=test --snapshot 5afe0001`") in project.reporter.lines


def test_restore_and_dr_recover_record_what_they_restored_and_the_actions_of_their_start(project, master):
    m = master()
    backup.restore(project, "latest")
    backup.recover(project)
    restored, recovered = m.logged[records.RELEASES]
    started = [{"action": "container", "verb": "start", "container": "infra_dns", "spec": "x"}]
    assert restored == {**restored, "outcome": "restored", "purpose": "restore", "snapshot": "bbbb2222", "previous": "c1",
                        "release": "c1", "safety_snapshot": "5afe0001", "actions": started}
    assert recovered == {**recovered, "outcome": "recovered", "snapshot": "bbbb2222", "release": "c1", "actions": started}
    assert restored["by"] and restored["at"]


def test_a_restore_that_does_not_start_records_no_action(project, master):
    m = master()
    backup.restore(project, "aaaa1111", start=False)
    [entry] = m.logged[records.RELEASES]
    assert entry["actions"] == [] and entry["release"] is None and entry["snapshot"] == "aaaa1111"


def test_latest_is_resolved_to_the_environments_own_before_the_safety_snapshot_becomes_the_latest(project, master):
    m = master()
    backup.restore(project, "latest", start=False)
    assert f"tool restore bbbb2222 {KEEP_AUDIT}" in m.events     # not cccc3333 (staging's), not the safety one


def test_a_master_without_release_has_nothing_to_save(project, master):
    m = master(release=False)
    backup.restore(project, "aaaa1111", start=False)
    assert not any(e.startswith("tool snapshot") for e in m.events)
    assert not any("safety" in line for line in project.reporter.lines)


def test_an_unknown_or_foreign_snapshot_is_refused_before_anything_is_stopped_or_snapshotted(project, master):
    m = master()
    with pytest.raises(LapinfraError, match="no snapshot 'deadbeef'"):
        backup.restore(project, "deadbeef")
    with pytest.raises(LapinfraError, match="snapshot.fetch --from=staging --to=test --snapshot cccc3333"):
        backup.restore(project, "cccc3333")
    assert m.events == ["prepare", "tool recover", "tool list"] * 2


def test_what_the_repair_did_is_reported(project, master):
    master(recovered={"swap": {"action": "undone", "snapshot": "aaaa1111", "renames_undone": 7},
                      "unpaused": ["infra_git", "infra_trac"]})
    backup.restore(project, "aaaa1111", start=False)
    warnings = [line for line in project.reporter.lines if line.startswith("! ")]
    assert any("interrupted restore of snapshot aaaa1111" in w and "was undone" in w
               and "invoke restore --env=test --snapshot aaaa1111" in w for w in warnings)
    assert any("unpaused infra_git, infra_trac" in w for w in warnings)


def test_nothing_to_repair_says_nothing_and_a_master_without_the_tool_is_not_asked(project, master):
    m = master(has_tool=False)
    assert backup.recover_interrupted(m, project) is None
    assert m.events == [] and project.reporter.lines == []
    assert backup.recovery_messages("test", "master", {"swap": None, "unpaused": []}) == []
    assert "was finished" in backup.recovery_messages("test", "master", {"swap": {"action": "finished", "snapshot": "x"}})[0]


def test_snapshot_repairs_first(project, master):
    m = master()
    backup.snapshot(project, "manual")
    assert m.events[:2] == ["prepare", "tool recover"] and m.events[2].startswith("tool snapshot --label manual")


def test_dr_recover_on_a_running_master_saves_it_stops_it_keeps_the_audit_logs_and_uploads_every_secret(project, master):
    m = master()
    backup.recover(project)
    with_secrets = " ".join(s.name for s in svc.services(project.env) if s.secrets)
    assert m.events == ["prepare", "tool recover", "tool list",
                        "tool snapshot --label safety-recover --tag safety --tag commit=c1",
                        "stop", f"tool restore bbbb2222 {KEEP_AUDIT}", f"secrets {with_secrets}", "start"]
    assert {"registry", "dns", "git", "cd", "backup"} <= set(with_secrets.split())


def test_dr_recover_on_a_fresh_master_takes_no_safety_snapshot(project, master, monkeypatch):
    m = master(release=False)
    ups = []
    monkeypatch.setattr(backup, "Nodes", lambda p: SimpleNamespace(state=lambda node: "absent"))
    monkeypatch.setattr(nodeup, "up", lambda p, name: ups.append(name))

    def restored(s, args):
        result = Master.tool(m, s, args)
        if args[0] == "restore":
            m.files[records.RELEASE] = {"release": "c1"}
        return result
    monkeypatch.setattr(backup, "run_tool", restored)
    backup.recover(project)
    assert ups == [project.env.master.name]
    assert not any(e.startswith("tool snapshot") for e in m.events) and m.events[-1] == "start"


# ---- fetch: no snapshot that holds the source's secrets --------------------------------

LS_CLEAN = "snapshot 2f690f72 of [/srv/data] filtered by [/srv/data/secrets] at 2026-12-01 10:00:00 +0000 UTC):\n"
LS_SECRETS = LS_CLEAN + "/srv/data/secrets\n/srv/data/secrets/backup\n/srv/data/secrets/backup/restic.password\n"


def test_a_snapshot_that_holds_secrets_is_not_fetched(tree):
    from lapinfra.project import Project

    prod = Project("prod", root=tree)
    assert backup.lists_secrets(LS_SECRETS) and not backup.lists_secrets(LS_CLEAN)
    assert not backup.lists_secrets(LS_CLEAN + "/srv/data/secrets-notes.txt\n")
    backup._refuse_unfetchable(prod, "latest", 0, LS_CLEAN)
    with pytest.raises(LapinfraError, match="holds prod's secrets.*invoke snapshot.create --env=prod"):
        backup._refuse_unfetchable(prod, "latest", 0, LS_SECRETS)
    with pytest.raises(LapinfraError, match="no snapshot 'deadbeef' in prod's backup repository"):
        backup._refuse_unfetchable(prod, "deadbeef", 1, 'Fatal: invalid id "deadbeef": no matching ID found for prefix "deadbeef"\n')
    with pytest.raises(LapinfraError, match="restic.password does not open"):
        backup._refuse_unfetchable(prod, "latest", 1, "Fatal: wrong password or no key found\n")


# ---- the tool's container, interrupted -------------------------------------------------

class Container:
    def __init__(self, interrupt):
        self.interrupt, self.calls = interrupt, []

    def wait(self, timeout):
        self.calls.append(("wait", timeout))
        if self.interrupt:
            raise KeyboardInterrupt
        return {"StatusCode": 0}

    def logs(self, stdout, stderr):
        return b'{"ok": true}' if stdout else b""

    def stop(self, timeout):
        self.calls.append(("stop", timeout))

    def remove(self, force):
        self.calls.append(("remove", force))


@pytest.mark.parametrize("interrupt", [True, False])
def test_an_interrupted_tool_gets_sigterm_and_time_to_undo_before_it_is_removed(project, interrupt):
    container = Container(interrupt)
    s = SimpleNamespace(env=project.env, docker=SimpleNamespace(containers=SimpleNamespace(run=lambda *a, **kw: container)))
    if interrupt:
        with pytest.raises(KeyboardInterrupt):
            backup.run_tool(s, ["restore", "aaaa1111"])
        assert container.calls == [("wait", backup.TOOL_TIMEOUT), ("stop", backup.STOP_GRACE), ("remove", True)]
    else:
        assert backup.run_tool(s, ["list"]) == {"ok": True}
        assert ("stop", backup.STOP_GRACE) not in container.calls


def test_a_master_with_an_older_backup_tool_is_not_an_error_but_a_hint(project, master, monkeypatch):
    m = master()

    def old_tool(s, args):
        raise LapinfraError("backup tool `recover` failed (exit 2):\n    lapbackup: error: argument cmd: invalid choice: 'recover' "
                            "(choose from 'scheduler', 'snapshot')")
    monkeypatch.setattr(backuptool, "run_tool", old_tool)
    assert backup.recover_interrupted(m, project) is None
    assert any("node.seed --env=test" in line for line in project.reporter.lines)
    monkeypatch.setattr(backuptool, "run_tool", lambda s, args: (_ for _ in ()).throw(LapinfraError("backup tool `recover` failed (exit 1)")))
    with pytest.raises(LapinfraError, match="exit 1"):
        backup.recover_interrupted(m, project)


@pytest.mark.parametrize("journal, paused, runs", [(False, [], False), (True, [], True), (False, ["infra_trac"], True)])
def test_the_repair_runs_the_tool_only_when_a_journal_or_a_paused_container_is_there(journal, paused, runs, monkeypatch):
    """start and deploy pay one command and one API call, not a tool container, when all is well."""
    ran = []
    s = SimpleNamespace(
        conn=SimpleNamespace(run=lambda *a, **kw: SimpleNamespace(ok=journal)),
        docker=SimpleNamespace(containers=SimpleNamespace(list=lambda **kw: paused), images=SimpleNamespace(get=lambda ref: None)))
    monkeypatch.setattr(backuptool, "run_tool", lambda s, args: ran.append(args) or {"swap": None, "unpaused": []})
    project = SimpleNamespace(name="test", env=SimpleNamespace(master=SimpleNamespace(name="master")), reporter=None)
    backup.recover_interrupted(s, project)
    assert ran == ([["recover"]] if runs else [])
