"""The backup tool's unpause step, against a stand-in Docker API: a container stopped or
recreated while a snapshot held it paused is not "left paused" (it failed scheduled
snapshots whenever a deploy or a `docker stop` met one)."""
import json

import pytest

from lapinfra import services as svc
from tests.conftest import ROOT, load_tool

LAPBACKUP = "images/backup/lapbackup.py"


def load_lapbackup(tmp_path, monkeypatch, data=None, name="lapbackup"):
    """The tool as a module, with what lapinfra hands its container (services.backup_names) in
    its environment; with ``data`` its /srv/data (and everything below) is that folder."""
    module = load_tool(LAPBACKUP, name, svc.backup_names(), monkeypatch)
    monkeypatch.setattr(module, "PAUSED_FILE", str(tmp_path / "paused.json"))
    monkeypatch.setattr(module, "log", lambda message: None)
    if data is not None:
        data = str(data)
        for attribute, value in {"DATA": data, "STATE": f"{data}/backup", "STATUS": f"{data}/backup/status.json",
                            "PAUSED_FILE": f"{data}/backup/paused.json", "LOCK_FILE": f"{data}/backup/lock",
                            "SEEN_PAUSED": f"{data}/backup/paused-seen.json", "SIZES": f"{data}/backup/sizes.json",
                            "TMP": f"{data}/.restore-tmp", "JOURNAL": f"{data}/.restore-tmp/journal.json"}.items():
            monkeypatch.setattr(module, attribute, value)
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
    monkeypatch.setattr(lapbackup, "_backup_frozen", lambda args, policy: backup(args))
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
    real, started = subprocess.Popen, []

    def hanging(cmd, **kw):        # a restic that would take 30 s
        started.append(real(["sleep", "30"], **kw))
        return started[-1]

    monkeypatch.setattr(lapbackup.subprocess, "Popen", hanging)
    with pytest.raises(lapbackup.Fail, match="did not finish within 1s"):
        lapbackup.restic("backup", "/srv/data")
    # stopped by a signal (SIGINT, then SIGKILL), not waited for until it ended by itself (exit 0)
    assert started[0].poll() is not None and started[0].returncode < 0, started[0].returncode
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


# ---- consistency per service: frozen copies instead of one global pause ----------------

def _running_engine(lapbackup, monkeypatch, names, events):
    """A stand-in Docker API with running containers ``names``; pauses and unpauses go to ``events``."""
    def docker(method, path):
        if path == "/containers/json":
            return 200, [{"Names": [f"/{n}"], "Id": n, "State": "running"} for n in names]
        if path.endswith("/pause") or path.endswith("/unpause"):
            events.append((path.split("/")[-1], path.split("/")[2]))
            return 204, b""
        return 200, {"State": {"Paused": False}}
    monkeypatch.setattr(lapbackup, "docker", docker)


def test_a_snapshot_pauses_only_the_frozen_services_and_each_only_for_its_own_copy(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "trac/env/db").mkdir(parents=True)
    (data / "trac/env/db/trac.db").write_bytes(b"db-then")
    (data / "cd/master").mkdir(parents=True)
    (data / "cd/master/state.sqlite").write_bytes(b"state")
    (data / "cd/master/http.log").write_text("log")
    (data / "registry/blob").mkdir(parents=True)
    (data / "backup").mkdir()
    lb = load_lapbackup(tmp_path, monkeypatch, data)
    monkeypatch.setenv("BACKUP_FREEZE", '{"infra_trac": ["trac/env/db"], "infra_cd": ["cd/master/state.sqlite*"]}')
    events, seen = [], {}
    _running_engine(lb, monkeypatch, ["infra_trac", "infra_cd", "infra_registry", "infra_git"], events)

    def restic(*args):
        # what restic sees: the copies, while nothing is paused
        seen["paused_during_backup"] = [n for kind, n in events if kind == "pause"] != \
            [n for kind, n in events if kind == "unpause"]
        seen["copy"] = (data / ".lapsnap/trac/env/db/trac.db").read_bytes()
        seen["index"] = json.loads((data / ".lapsnap/index.json").read_text())
        seen["args"] = args
        return 0, '{"message_type": "summary", "snapshot_id": "1234abcd", "total_bytes_processed": 5}\n', ""
    monkeypatch.setattr(lb, "restic", restic)
    monkeypatch.setattr(lb, "_cache_size", lambda sid, size: None)
    result = lb.do_snapshot()

    assert events == [("pause", "infra_cd"), ("unpause", "infra_cd"), ("pause", "infra_trac"), ("unpause", "infra_trac")]
    assert seen["paused_during_backup"] is False
    assert seen["copy"] == b"db-then"
    assert sorted(seen["index"]) == ["cd/master/state.sqlite", "trac/env/db"]
    excluded = [seen["args"][i + 1] for i, a in enumerate(seen["args"]) if a == "--exclude"]
    assert f"{data}/trac/env/db" in excluded and f"{data}/cd/master/state.sqlite*" in excluded
    assert not (data / ".lapsnap").exists()            # the copies are gone after the backup
    assert {f["name"] for f in result["frozen"]} == {"infra_trac", "infra_cd"}


def test_pause_all_is_the_old_way_every_infra_container_for_the_whole_backup(tmp_path, monkeypatch):
    data = tmp_path / "data"
    (data / "trac/env/db").mkdir(parents=True)
    (data / "backup").mkdir()
    lb = load_lapbackup(tmp_path, monkeypatch, data)
    monkeypatch.setenv("BACKUP_FREEZE", '{"infra_trac": ["trac/env/db"]}')
    events = []
    _running_engine(lb, monkeypatch, ["infra_trac", "infra_git"], events)
    during = []
    monkeypatch.setattr(lb, "restic", lambda *a: (during.extend(events),
                        (0, '{"message_type": "summary", "snapshot_id": "1234abcd"}\n', ""))[1])
    monkeypatch.setattr(lb, "_cache_size", lambda sid, size: None)
    lb.do_snapshot(pause_everything=True)
    assert during == [("pause", "infra_git"), ("pause", "infra_trac")]


def test_a_restore_puts_each_frozen_copy_back_in_its_place(tmp_path, monkeypatch):
    import os
    root = tmp_path / "restored"
    (root / "trac/env").mkdir(parents=True)
    (root / "trac/env/trac.ini").write_text("ini")
    (root / ".lapsnap/trac/env/db").mkdir(parents=True)
    (root / ".lapsnap/trac/env/db/trac.db").write_bytes(b"consistent")
    (root / ".lapsnap/cd/master").mkdir(parents=True)
    (root / ".lapsnap/cd/master/state.sqlite").write_bytes(b"state")
    (root / ".lapsnap/index.json").write_text('["trac/env/db", "cd/master/state.sqlite"]')
    lb = load_lapbackup(tmp_path, monkeypatch)
    os.utime(root / "trac/env", (1000, 1000))
    lb.place_frozen_copies(str(root))
    assert (root / "trac/env").stat().st_mtime == 1000     # the parent's time as in the snapshot
    assert (root / "trac/env/db/trac.db").read_bytes() == b"consistent"
    assert (root / "cd/master/state.sqlite").read_bytes() == b"state"
    assert not (root / ".lapsnap").exists()


def test_a_frozen_copy_keeps_the_owner_of_its_original(tmp_path, monkeypatch):
    import os
    data = tmp_path / "data"
    (data / "dns/dynamic").mkdir(parents=True)
    (data / "dns/dynamic/node.zone.jnl").write_bytes(b"j")
    (data / "dns/dynamic/sub").mkdir()
    lb = load_lapbackup(tmp_path, monkeypatch, data)
    _running_engine(lb, monkeypatch, [], [])
    chowned = []
    monkeypatch.setattr(lb.os, "lchown", lambda path, uid, gid: chowned.append(os.path.relpath(path, data)))
    held = lb.copy_frozen({"infra_dns": ["dns/dynamic"]})
    assert (data / ".lapsnap/dns/dynamic/node.zone.jnl").read_bytes() == b"j"
    assert held == [{"name": "infra_dns", "paused_ms": 0.0, "paths": ["dns/dynamic"]}]   # not running: no pause
    assert {".lapsnap/dns/dynamic", ".lapsnap/dns/dynamic/node.zone.jnl", ".lapsnap/dns/dynamic/sub"} <= set(chowned)


@pytest.mark.parametrize("raw,error", [
    ("[1]", "must map container names"),
    ('{"infra_trac": ["/data/trac"]}', "relative to /srv/data"),
    ('{"infra_trac": ["trac/../secrets"]}', "without '..'"),
    ("{", "not JSON"),
])
def test_a_bad_freeze_policy_is_refused_before_anything_is_paused(lapbackup, raw, error):
    with pytest.raises(lapbackup.Fail, match=error):
        lapbackup.freeze_policy(raw)


def test_digest_reads_a_frozen_file_from_its_copy(lapbackup):
    policy = {"infra_trac": ["trac/env/db"], "infra_cd": ["cd/master/state.sqlite*"]}
    assert lapbackup.stored_path("trac/env/db/trac.db", policy) == ".lapsnap/trac/env/db/trac.db"
    assert lapbackup.stored_path("cd/master/state.sqlite", policy) == ".lapsnap/cd/master/state.sqlite"
    assert lapbackup.stored_path("cd/master/http.log", policy) == "cd/master/http.log"


def test_check_runs_the_inbox_and_the_vault_check_at_once_and_asks_a_failed_vault_again(lapbackup, monkeypatch):
    """`lapbackup check` (the suite's integrity check): the vault's check starts while the inbox's
    runs, and a vault check that failed (the backup node mid-copy) is asked again before it counts."""
    import threading

    both_running = threading.Barrier(2, timeout=5)
    vault_answers = iter([(1, "", "Fatal: pack 1234 not found"), (0, "no errors were found", "")])
    calls = []

    def restic(*args, quiet_errors=False, vault=False):
        calls.append(("vault" if vault else "inbox", args))
        if args == ("check",) and (not vault or len([c for c in calls if c[0] == "vault"]) == 1):
            both_running.wait()          # raises BrokenBarrierError unless the other check runs meanwhile
        return next(vault_answers) if vault else (0, "no errors were found", "")

    monkeypatch.setattr(lapbackup, "restic", restic)
    monkeypatch.setattr(lapbackup, "prepare", lambda: None)
    monkeypatch.setattr(lapbackup, "ensure_repo", lambda create=True: None)
    monkeypatch.setattr(lapbackup, "op_lock", _NoLock)
    monkeypatch.setattr(lapbackup.time, "sleep", lambda s: None)
    answer, code = lapbackup.cmd_check(None)
    assert answer["ok"] and code == 0, answer
    assert [c[0] for c in calls].count("vault") == 2


def test_check_is_red_when_the_vault_stays_damaged(lapbackup, monkeypatch):
    monkeypatch.setattr(lapbackup, "restic", lambda *a, quiet_errors=False, vault=False:
                        (1, "", "Fatal: pack 1234 not found") if vault else (0, "no errors were found", ""))
    monkeypatch.setattr(lapbackup, "prepare", lambda: None)
    monkeypatch.setattr(lapbackup, "ensure_repo", lambda create=True: None)
    monkeypatch.setattr(lapbackup, "op_lock", _NoLock)
    monkeypatch.setattr(lapbackup.time, "sleep", lambda s: None)
    answer, code = lapbackup.cmd_check(None)
    assert not answer["ok"] and code == 1 and "pack 1234" in answer["output"]


class _NoLock:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_listing_and_reading_a_file_take_no_lock_so_they_run_beside_an_integrity_check(lapbackup, monkeypatch):
    """`lapbackup list` and `digest` (the suite's snapshot check, run while its integrity check
    holds the inbox's exclusive lock) read both repositories with --no-lock; check and snapshot
    still lock the inbox."""
    import hashlib
    import types

    commands = []
    inbox = [{"id": "a" * 64, "short_id": "aaaaaaaa", "time": "2026-12-07T10:00:00Z", "tags": ["env=test"], "paths": ["/srv/data"]}]

    class Proc:
        def __init__(self, cmd, **kwargs):
            commands.append(cmd)
            verb = cmd[cmd.index("-o") + 2:]
            verb = [v for v in verb if v != "--no-lock"][0]
            vault = kwargs["env"]["RESTIC_REPOSITORY"].endswith("/vault")
            out = {"snapshots": "[]" if vault else json.dumps(inbox), "stats": '{"total_size": 5}',
                   "dump": "stored config\n"}.get(verb, "")
            self.stdout, self.stderr, self.returncode = io.StringIO(out), io.StringIO(""), 0

        def wait(self, timeout=None):
            return 0

    import io

    monkeypatch.setenv("BACKUP_REPOSITORY", "sftp:backup@backup:/restic")
    monkeypatch.setattr(lapbackup.subprocess, "Popen", Proc)
    monkeypatch.setattr(lapbackup, "prepare", lambda: None)
    monkeypatch.setattr(lapbackup, "ssh_command", lambda: "ssh")
    monkeypatch.setattr(lapbackup, "_sizes", lambda: {})
    monkeypatch.setattr(lapbackup, "_cache_size", lambda *a: None)
    listed = lapbackup.cmd_list(None)
    digest = lapbackup.cmd_digest(types.SimpleNamespace(id="latest", path="environment/registry/config.yml"))
    assert [s["id"] for s in listed] == ["aaaaaaaa"]
    assert digest["sha256"] == hashlib.sha256(b"stored config\n").hexdigest()
    verbs = sorted({[v for v in c[c.index("-o") + 2:] if v != "--no-lock"][0] for c in commands})
    assert verbs == ["dump", "snapshots", "stats"], commands
    assert all("--no-lock" in c for c in commands), [c for c in commands if "--no-lock" not in c]


# ---- what lapinfra hands lapbackup, and what both must name alike -------------------------

def test_lapinfra_hands_the_backup_container_the_names_lapbackup_reads(project):
    from types import SimpleNamespace

    from lapinfra import backuptool

    service = svc.backup_service(project.env)
    assert service.environment["BACKUP_PAUSE_PREFIX"] == svc.PREFIX
    assert service.environment["BACKUP_CONTAINER"] == service.container
    assert svc.backup_names().items() <= service.environment.items()
    # and so does every one-off container of the tool
    started = []
    container = SimpleNamespace(wait=lambda timeout: {"StatusCode": 0}, logs=lambda stdout, stderr: b"[]" if stdout else b"",
                                remove=lambda force: None)
    engine = SimpleNamespace(containers=SimpleNamespace(run=lambda *a, **kw: started.append(kw) or container))
    assert backuptool.run_tool(SimpleNamespace(env=project.env, docker=engine), ["list"]) == []
    assert started[0]["environment"] == service.environment


def test_lapbackup_takes_no_default_for_what_lapinfra_hands_it(lapbackup, monkeypatch):
    monkeypatch.delenv("BACKUP_PAUSE_PREFIX")
    with pytest.raises(lapbackup.Fail, match="BACKUP_PAUSE_PREFIX is not set"):
        lapbackup.pause_all()
    monkeypatch.setenv("BACKUP_PAUSE_PREFIX", svc.PREFIX)
    monkeypatch.delenv("BACKUP_CONTAINER")
    with pytest.raises(lapbackup.Fail, match="BACKUP_CONTAINER is not set"):
        lapbackup.pause_all()


def test_the_paths_both_name_are_the_same(lapbackup, project):
    """lapbackup is one self-contained file in its image: the paths it shares with lapinfra
    are written in both, and equal."""
    import posixpath

    from lapinfra import backup, backuptool, records, status

    service = svc.backup_service(project.env)
    assert service.volumes[svc.DATA] == svc.BACKUP_DATA == lapbackup.DATA
    mounts = svc.run_kwargs(service, "infra/backup", project.env, "", "")["volumes"]
    assert mounts[f"{svc.SECRETS_DIR}/{service.name}"]["bind"] == lapbackup.SECRETS
    assert {posixpath.basename(p) for p in (lapbackup.PASSWORD, lapbackup.KEY, lapbackup.KNOWN_HOSTS)} == set(svc.BACKUP_SECRETS)
    assert lapbackup.HOST_KEYS_REL == records.HOST_KEYS_IN_DATA
    assert lapbackup.RELEASE_REL == records.below_data(records.RELEASE)
    assert lapbackup.SECRETS_REL == records.below_data(svc.SECRETS_DIR)
    assert lapbackup.STATE_REL == service.name == records.below_data(status.BACKUP_STATE)
    assert lapbackup.STATE == f"{lapbackup.DATA}/{lapbackup.STATE_REL}"
    assert posixpath.relpath(lapbackup.TMP, lapbackup.DATA) == records.below_data(backuptool.RESTORE_TMP)
    assert lapbackup.DRILL_REMOTE == "/" + records.below_data(records.DRILL_ON_BACKUP_NODE)   # chrooted to its /data
    assert backup.SNAPSHOT_SECRETS in lapbackup.EXCLUDES


def test_a_scheduled_snapshot_names_the_release_as_lapinfra_names_it(tmp_path, monkeypatch):
    from lapinfra import backup, records

    data = tmp_path / "data"
    lb = load_lapbackup(tmp_path, monkeypatch, data=data)
    (data / lb.RELEASE_REL).parent.mkdir(parents=True)
    (data / lb.RELEASE_REL).write_text(records.new_release("3ad1e5d0c4f2", {"dns": "sha256:d"}, {}).dump())
    assert lb.deployed_commit_tag() == [backup.commit_tag("3ad1e5d0c4f2")]


def test_the_image_runs_lapbackup_py_as_lapbackup_and_keeps_no_copy_of_lapinfras_names():
    dockerfile = (ROOT / "images/backup/Dockerfile").read_text()
    assert "COPY lapbackup.py /usr/local/bin/lapbackup\n" in dockerfile
    code = (ROOT / LAPBACKUP).read_text()
    assert "BACKUP_PAUSE_PREFIX=" not in dockerfile and '"infra_"' not in code and '"infra_backup"' not in code


def test_check_opens_the_inbox_with_the_check_itself_and_clears_a_stale_lock_only_when_one_is_in_the_way(lapbackup, monkeypatch):
    """No `cat config`/`unlock` ahead of every check (each restic call pays the key derivation);
    a lock left by a killed run is removed and the check asked again; a wrong password is an error."""
    calls = []
    inbox = iter([(1, "", "Fatal: unable to create lock in backend: repository is already locked by PID 7"),
                  (0, "no errors were found", "")])

    def restic(*args, quiet_errors=False, vault=False, lock=True):
        calls.append(("vault " if vault else "") + " ".join(args))
        if vault:
            return 0, "no errors were found", ""
        return next(inbox) if args == ("check",) else (0, "", "")

    monkeypatch.setattr(lapbackup, "restic", restic)
    monkeypatch.setattr(lapbackup, "prepare", lambda: None)
    monkeypatch.setattr(lapbackup, "op_lock", _NoLock)
    answer, code = lapbackup.cmd_check(None)
    assert answer["ok"] and code == 0
    assert sorted(calls) == ["check", "check", "unlock", "vault check"], calls

    monkeypatch.setenv("BACKUP_REPOSITORY", "sftp:backup@backup:/restic")
    monkeypatch.setattr(lapbackup, "restic", lambda *a, quiet_errors=False, vault=False, lock=True:
                        (0, "", "") if vault else (1, "", "Fatal: wrong password or no key found"))
    with pytest.raises(lapbackup.Fail, match="wrong repository password"):
        lapbackup.cmd_check(None)


def test_digest_of_latest_with_tags_takes_the_newest_snapshot_that_has_them(lapbackup, monkeypatch):
    snaps = [{"id": "1" * 64, "time": "2026-12-07T10:00:00Z", "tags": ["env=test", "commit=aaa"], "paths": ["/srv/data"]},
             {"id": "2" * 64, "time": "2026-12-07T11:00:00Z", "tags": ["env=test", "commit=bbb"], "paths": ["/srv/data"]},
             {"id": "3" * 64, "time": "2026-12-07T12:00:00Z", "tags": ["env=test", "commit=aaa"], "paths": ["/srv/data"]}]
    monkeypatch.setenv("BACKUP_ENV", "test")
    assert lapbackup.resolve("latest", snaps, tags=["commit=aaa"])["id"] == "3" * 64
    assert lapbackup.resolve("latest", snaps, tags=["commit=bbb"])["id"] == "2" * 64
    with pytest.raises(lapbackup.Fail, match="no snapshots tagged commit=ccc"):
        lapbackup.resolve("latest", snaps, tags=["commit=ccc"])


@pytest.mark.parametrize("dump_by_tags_works, verbs", [
    (True, ["dump"]),                                   # one restic call
    (False, ["dump", "snapshots", "snapshots", "dump"]),  # none tagged so in the inbox: both repositories listed
])
def test_digest_of_the_latest_tagged_snapshot_asks_restic_once(lapbackup, monkeypatch, dump_by_tags_works, verbs):
    """Each restic call first derives the repository's key (about half a second of CPU): the suite's
    snapshot check (latest with tags) lets restic pick the snapshot and read the file in one call,
    and lists both repositories only when that finds nothing."""
    import hashlib
    import io
    import types

    calls = []
    inbox = [{"id": "a" * 64, "time": "2026-12-07T10:00:00Z", "tags": ["env=test", "commit=abc"], "paths": ["/srv/data"]}]

    class Proc:
        def __init__(self, cmd, **kwargs):
            args = [v for v in cmd[cmd.index("-o") + 2:] if v != "--no-lock"]
            calls.append(args)
            by_tags = args[0] == "dump" and "--tag" in args
            ok = dump_by_tags_works or not by_tags
            vault = kwargs["env"]["RESTIC_REPOSITORY"].endswith("/vault")
            out = {"snapshots": "[]" if vault else json.dumps(inbox), "dump": "stored config\n"}.get(args[0], "") if ok else ""
            self.stdout, self.stderr, self.returncode = io.StringIO(out), io.StringIO("" if ok else "no matching snapshot"), 0 if ok else 1

        def wait(self, timeout=None):
            return self.returncode

    monkeypatch.setenv("BACKUP_REPOSITORY", "sftp:backup@backup:/restic")
    monkeypatch.setenv("BACKUP_ENV", "test")
    monkeypatch.setattr(lapbackup.subprocess, "Popen", Proc)
    monkeypatch.setattr(lapbackup, "prepare", lambda: None)
    monkeypatch.setattr(lapbackup, "ssh_command", lambda: "ssh")
    digest = lapbackup.cmd_digest(types.SimpleNamespace(id="latest", path="environment/registry/config.yml",
                                                        tag=["env=test", "commit=abc"]))
    assert digest["sha256"] == hashlib.sha256(b"stored config\n").hexdigest()
    assert sorted(c[0] for c in calls) == sorted(verbs), calls
    first = calls[0]
    assert first[:5] == ["dump", "--path", "/srv/data", "--tag", "commit=abc,env=test"] and first[5] == "latest"
