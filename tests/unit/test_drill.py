"""Restore drills on the backup node (nodes/image/lapvault drill).

A stand-in restic holds one snapshot's manifest (what ``restic ls --json`` prints) and
restores it into the scratch folder, so the drill's decisions are tested without restic:
which subset of packs it reads, that a damaged pack is named, that a restore missing or
changing files fails with their names, that the scratch folder never outlives a drill, and
what the record says. The service probes run for real on small trees: git fsck on real
repositories, sqlite's integrity check on real databases, a registry's layout on disk."""
import datetime
import json
import os
import shutil
import sqlite3
import subprocess
import threading
import time

import pytest

from tests.unit.test_vault import load

PACK = "1a2b3c4d" + "5" * 56           # a pack file of the vault (data/1a/<id>)
OTHER_PACK = "9f" + "0" * 62


@pytest.fixture
def lv(tmp_path, monkeypatch):
    lv = load("nodes/image/lapvault", "lapvault_drill")
    data = tmp_path / "data"
    vault = data / "vault"
    (vault / "data" / "1a").mkdir(parents=True)
    (vault / "data" / "9f").mkdir(parents=True)
    (vault / "config").write_text("vault")
    (vault / "data" / "1a" / PACK).write_bytes(b"pack")
    (vault / "data" / "9f" / OTHER_PACK).write_bytes(b"pack")
    state = data / "lapinfra" / "vault"
    monkeypatch.setattr(lv, "VAULT", str(vault))
    monkeypatch.setattr(lv, "INBOX", str(data / "restic"))
    monkeypatch.setattr(lv, "STATE", str(state))
    monkeypatch.setattr(lv, "STATUS", str(state / "status.json"))
    monkeypatch.setattr(lv, "LOCK", str(state / "lock"))
    monkeypatch.setattr(lv, "DRILL_RESULT", str(state / "drill.json"))
    monkeypatch.setattr(lv, "DRILL_STATE", str(state / "drill-state.json"))
    monkeypatch.setattr(lv, "SCRATCH", str(data / "lapinfra" / "drill-restore"))
    monkeypatch.setattr(lv, "log", lambda message: None)
    (data / "lapinfra").mkdir(parents=True, exist_ok=True)
    return lv


# A small /srv/data: a git server's repository, Trac's database, a registry, a loose file.
FILES = {
    "git/git/repositories/hello.git/HEAD": b"ref: refs/heads/master\n",
    "git/git/repositories/hello.git/config": b"[core]\n\tbare = true\n",
    "trac/env/db/trac.db": None,                    # a real SQLite database (made per test)
    "maven/releases/org/x/1.0/x-1.0.jar": b"jar" * 100,
    "environment/registry/config.yml": b"version: 0.1\n",
}
DIRS = ["git/git/repositories/hello.git/objects", "git/git/repositories/hello.git/refs"]


def make_sqlite(path, rows=50):
    path.parent.mkdir(parents=True, exist_ok=True)
    db = sqlite3.connect(path)
    db.execute("CREATE TABLE ticket (id INTEGER PRIMARY KEY, summary TEXT)")
    db.executemany("INSERT INTO ticket (summary) VALUES (?)", [("x" * 200,)] * rows)
    db.commit()
    db.close()


class FakeRestic:
    """One snapshot in the vault; ls prints its manifest, restore writes it out (or breaks)."""

    def __init__(self, lv, tmp_path):
        self.lv = lv
        self.calls = []
        self.source = tmp_path / "source"          # the snapshot's /srv/data
        for rel, content in FILES.items():
            f = self.source / rel
            f.parent.mkdir(parents=True, exist_ok=True)
            if content is None:
                make_sqlite(f)
            else:
                f.write_bytes(content)
        for rel in DIRS:
            (self.source / rel).mkdir(parents=True, exist_ok=True)
        self.snapshots = [{"id": "c3" * 32, "original": "a1" * 32, "time": "2026-12-04T11:00:00.5+00:00",
                           "paths": ["/srv/data"]},
                          {"id": "d4" * 32, "original": "b2" * 32, "time": "2026-12-04T12:00:00.5+00:00",
                           "paths": ["/srv/data"]}]
        self.check_result = (0, "no errors were found\n", "")
        self.after_restore = None                  # a function of the restored root: break it

    def ls(self):
        lines = [json.dumps({"struct_type": "snapshot", "id": self.snapshots[-1]["id"], "paths": ["/srv/data"]}),
                 json.dumps({"name": "srv", "type": "dir", "path": "/srv", "struct_type": "node"}),
                 json.dumps({"name": "data", "type": "dir", "path": "/srv/data", "struct_type": "node"})]
        for path in sorted(self.source.rglob("*")):
            rel = path.relative_to(self.source)
            kind = "dir" if path.is_dir() else "file"
            node = {"name": path.name, "type": kind, "path": f"/srv/data/{rel}", "struct_type": "node"}
            if kind == "file":
                node["size"] = path.stat().st_size
            lines.append(json.dumps(node))
        return "\n".join(lines) + "\n"

    def __call__(self, repo, *args):
        self.calls.append((repo, args))
        assert repo == self.lv.VAULT, "a drill reads the vault only"
        if args[0] == "snapshots":
            return 0, json.dumps(self.snapshots), ""
        if args[0] == "check":
            return self.check_result
        if args[0] == "ls":
            return 0, self.ls(), ""
        if args[0] == "restore":
            target = args[args.index("--target") + 1]
            assert os.path.isdir(target) and not os.listdir(target), "restores into an empty scratch folder"
            shutil.copytree(self.source, os.path.join(target, "srv", "data"))
            if self.after_restore:
                return self.after_restore(os.path.join(target, "srv", "data"))
            return 0, "", ""
        return 0, "", ""

    def flags(self, command):
        return [args for _, args in self.calls if args[0] == command]


def git_ok(cmd):
    return 0, "", ""


def drill(lv, restic, run=git_ok, **kw):
    return lv.drill(restic=restic, run=run, fix=lambda: None, **kw)


# ---- the drill ------------------------------------------------------------------------------

def test_a_drill_of_a_sound_vault_passes_and_records_what_it_checked(lv, tmp_path):
    restic = FakeRestic(lv, tmp_path)
    doc = drill(lv, restic)
    assert doc["ok"] is True and doc["failures"] == []
    # the latest snapshot, by the id the master shows for it (its inbox original)
    assert doc["snapshot"] == "b2b2b2b2" and doc["vault_snapshot"] == "d4d4d4d4"
    assert restic.flags("restore") == [("restore", "d4" * 32, "--target", lv.SCRATCH, "--verify")]
    checked = "\n".join(doc["checked"])
    assert "restic check --read-data-subset=1/7 of the vault: no errors" in checked
    for folder in ("git", "trac", "maven", "environment"):
        assert f"restored {folder}: " in checked
    assert "restored maven: 1 files, 0.0 MB" in checked
    assert "git fsck --no-dangling of 1 repositories: ok" in checked
    assert "sqlite database trac/env/db/trac.db: opens, integrity_check ok" in checked
    assert isinstance(doc["seconds"], float) and datetime.datetime.fromisoformat(doc["at"])
    assert not os.path.exists(lv.SCRATCH), "the restored copy is removed after the drill"


def test_the_drill_reads_a_different_seventh_of_the_packs_each_time_and_every_one_in_seven(lv, tmp_path):
    restic = FakeRestic(lv, tmp_path)
    for _ in range(8):
        drill(lv, restic)
    assert [a[1] for a in restic.flags("check")] == [f"--read-data-subset={k}/7" for k in (1, 2, 3, 4, 5, 6, 7, 1)]
    # restic reads pack P in subset K/N when P's first byte % N == K-1: the seven subsets
    # together are every possible pack
    assert {b % 7 + 1 for b in range(256)} == set(range(1, 8))


def test_a_subset_with_a_damaged_pack_is_read_again_until_it_passes(lv, tmp_path):
    restic = FakeRestic(lv, tmp_path)
    drill(lv, restic)                                   # 1/7
    restic.check_result = (1, "", f"Pack ID does not match, want {PACK[:8]}, got 0bad0bad\nFatal: repository contains errors\n")
    assert drill(lv, restic)["ok"] is False             # 2/7 fails
    assert drill(lv, restic)["ok"] is False             # 2/7 again
    restic.check_result = (0, "no errors were found\n", "")
    drill(lv, restic)                                   # 2/7 passes
    drill(lv, restic)                                   # 3/7
    assert [a[1][-3:] for a in restic.flags("check")] == ["1/7", "2/7", "2/7", "2/7", "3/7"]


@pytest.mark.parametrize("output", [
    f"Pack ID does not match, want {PACK[:8]}, got 5ee5ee5e",                      # restic 0.14
    f"pack {PACK[:8]}: not referenced in any index",
    f"Error: pack {PACK} contains 1 errors: [blob 77aa88bb: decrypting blob failed]",   # later versions
])
def test_a_damaged_pack_fails_the_drill_and_is_named_with_its_file(lv, tmp_path, output):
    restic = FakeRestic(lv, tmp_path)
    restic.check_result = (1, "read all data\n", output + "\nFatal: repository contains errors\n")
    doc = drill(lv, restic, full=True)
    assert doc["ok"] is False and doc["subset"] == "all"
    assert restic.flags("check")[0][1] == "--read-data"
    [failure] = doc["failures"]
    assert f"pack {PACK} is damaged ({lv.VAULT}/data/1a/{PACK})" in failure
    assert PACK[:8] in failure.split("): ", 1)[1], "restic's own words about the pack follow"
    assert OTHER_PACK not in failure


def test_a_check_that_names_no_pack_still_fails_with_restics_words(lv, tmp_path):
    restic = FakeRestic(lv, tmp_path)
    restic.check_result = (1, "", "load indexes\nerror: load <index/0123>: invalid data returned\nFatal: repository contains errors\n")
    [failure] = drill(lv, restic)["failures"]
    assert "restic check --read-data-subset=1/7 of the vault failed (exit 1)" in failure and "invalid data returned" in failure


def test_a_restore_that_lacks_or_changes_files_fails_naming_them(lv, tmp_path):
    restic = FakeRestic(lv, tmp_path)

    def damage(root):
        os.remove(os.path.join(root, "maven/releases/org/x/1.0/x-1.0.jar"))
        with open(os.path.join(root, "environment/registry/config.yml"), "ab") as f:
            f.write(b"more")
        with open(os.path.join(root, "git/stray"), "w") as f:
            f.write("not in the snapshot")
        return 0, "", ""

    restic.after_restore = damage
    doc = drill(lv, restic)
    failures = "\n".join(doc["failures"])
    assert doc["ok"] is False
    assert "restored maven: 1 of " in failures and "maven/releases/org/x/1.0/x-1.0.jar" in failures
    assert "restored environment: 1 entries differ" in failures and "file of 17 B, manifest: file of 13 B" in failures
    assert "restored git: 1 entries not in the snapshot's manifest: git/stray" in failures
    assert "restored trac: " in "\n".join(doc["checked"]), "the folders that match are still reported"


def test_a_failed_verify_fails_the_drill_and_the_scratch_folder_is_removed(lv, tmp_path):
    restic = FakeRestic(lv, tmp_path)
    restic.after_restore = lambda root: (1, "", "verifying files in /data/lapinfra/drill-restore\n"
                                                "Unexpected content in srv/data/trac/env/db/trac.db\nFatal: There were 1 errors\n")
    doc = drill(lv, restic)
    assert doc["ok"] is False
    assert "restic restore --verify of snapshot b2b2b2b2 failed (exit 1)" in doc["failures"][0]
    assert "Unexpected content" in doc["failures"][0]
    assert not os.path.exists(lv.SCRATCH)


def test_a_drill_that_breaks_is_a_failed_drill_and_leaves_no_restored_copy(lv, tmp_path):
    restic = FakeRestic(lv, tmp_path)

    def explode(root):
        raise OSError(28, "No space left on device")

    restic.after_restore = explode
    os.makedirs(os.path.join(lv.SCRATCH, "leftover"))      # a killed drill's folder is cleared first
    doc = drill(lv, restic)
    assert doc["ok"] is False and "the drill stopped: [Errno 28] No space left on device" in doc["failures"]
    assert not os.path.exists(lv.SCRATCH)


def test_no_restore_is_started_without_room_for_it(lv, tmp_path, monkeypatch):
    restic = FakeRestic(lv, tmp_path)
    monkeypatch.setattr(lv.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9 - 1000, 1000))
    doc = drill(lv, restic)
    assert not restic.flags("restore")
    assert "not enough space on the backup node's /data to restore the snapshot" in doc["failures"][0]
    assert lv.space_problem(100, 111) is None and lv.space_problem(100, 109)


def test_an_empty_vault_is_not_drilled(lv, tmp_path):
    restic = FakeRestic(lv, tmp_path)
    restic.snapshots = []
    assert drill(lv, restic) is None
    os.remove(os.path.join(lv.VAULT, "config"))
    assert drill(lv, restic) is None


# ---- service probes on real data --------------------------------------------------------------

def git(*args, cwd=None):
    subprocess.run(["git", *args], cwd=cwd, check=True, capture_output=True,
                   env=dict(os.environ, GIT_AUTHOR_NAME="a", GIT_AUTHOR_EMAIL="a@x", GIT_COMMITTER_NAME="a",
                            GIT_COMMITTER_EMAIL="a@x", GIT_CONFIG_NOSYSTEM="1", HOME=str(cwd or ".")))


@pytest.mark.skipif(not shutil.which("git"), reason="git is not installed")
def test_git_fsck_passes_a_sound_repository_and_names_a_broken_one(lv, tmp_path):
    base = tmp_path / "restored"
    work = tmp_path / "work"
    work.mkdir()
    git("init", "-q", cwd=work)
    (work / "README").write_text("hello\n")
    git("add", "README", cwd=work)
    git("commit", "-q", "-m", "one", cwd=work)
    for name in ("good", "bad"):
        git("clone", "-q", "--bare", "--no-local", str(work), str(base / "git/git/repositories" / f"{name}.git"), cwd=tmp_path)
    [pack] = (base / "git/git/repositories/bad.git/objects/pack").glob("*.pack")
    pack.chmod(0o644)
    with open(pack, "r+b") as f:                                  # the pack's objects damaged
        f.seek(20)
        f.write(b"\0" * 40)
    d = lv.Drill(restic=None, run=lv.run_command, full=False)
    d.probe(str(base), lv.tree_on_disk(str(base)))
    [failure] = d.failures
    assert failure.startswith("git fsck of git/git/repositories/bad.git failed (exit ")
    shutil.rmtree(base / "git/git/repositories/bad.git")
    d = lv.Drill(restic=None, run=lv.run_command, full=False)
    d.probe(str(base), lv.tree_on_disk(str(base)))
    assert d.failures == [] and d.checked[0].startswith("git fsck --no-dangling of 1 repositories: ok")


def test_git_missing_on_the_node_is_one_failure_that_says_so(lv, tmp_path):
    (tmp_path / "r/a.git/objects").mkdir(parents=True)
    (tmp_path / "r/a.git/HEAD").write_text("ref: refs/heads/master\n")
    (tmp_path / "r/b.git/objects").mkdir(parents=True)
    (tmp_path / "r/b.git/HEAD").write_text("ref: refs/heads/master\n")
    d = lv.Drill(restic=None, run=lambda cmd: lv.run_command(["no-such-git-here"] + cmd[1:]), full=False)
    d.probe(str(tmp_path), lv.tree_on_disk(str(tmp_path)))
    assert len(d.failures) == 1 and "is not installed on the backup node (nodes/image/Dockerfile" in d.failures[0]


def test_only_bare_repositories_are_fscked_once_each(lv):
    tree = {"git": ("dir", 0), "git/a.git": ("dir", 0), "git/a.git/HEAD": ("file", 5), "git/a.git/objects": ("dir", 0),
            "git/a.git/modules/b.git": ("dir", 0), "git/a.git/modules/b.git/HEAD": ("file", 5),
            "git/a.git/modules/b.git/objects": ("dir", 0),
            "cd/work/.git": ("dir", 0), "cd/work/.git/HEAD": ("file", 5), "cd/work/.git/objects": ("dir", 0),
            "cd/notes.git": ("file", 3), "cd/empty.git": ("dir", 0)}
    assert lv.git_repositories(tree) == ["git/a.git"]


def test_a_damaged_sqlite_database_fails_and_a_sound_one_passes(lv, tmp_path):
    good, bad = tmp_path / "trac/env/db/trac.db", tmp_path / "cd/state.sqlite"
    make_sqlite(good)
    make_sqlite(bad, rows=400)
    with open(bad, "r+b") as f:                 # garbage over the table's pages, header intact
        f.seek(4096 * 2)
        f.write(os.urandom(4096 * 2))
    (tmp_path / "maven/not-a-db.db").parent.mkdir(parents=True)
    (tmp_path / "maven/not-a-db.db").write_text("a file of that name, not a database")
    d = lv.Drill(restic=None, run=git_ok, full=False)
    d.probe(str(tmp_path), lv.tree_on_disk(str(tmp_path)))
    assert d.checked == ["sqlite database trac/env/db/trac.db: opens, integrity_check ok"]
    [failure] = d.failures
    assert failure.startswith("sqlite database cd/state.sqlite ")


# ---- the registry's manifests resolve to their blobs ------------------------------------------

def put_blob(v2, content: bytes) -> str:
    import hashlib

    digest = hashlib.sha256(content).hexdigest()
    path = v2 / "blobs/sha256" / digest[:2] / digest / "data"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(content)
    return "sha256:" + digest


def registry(tmp_path, repo="infra/0123456789ab/dns"):
    """distribution's filesystem layout: a config, a layer, a manifest naming both, a tag."""
    v2 = tmp_path / "registry/docker/registry/v2"
    config, layer = put_blob(v2, b'{"architecture": "amd64"}'), put_blob(v2, b"layer tar")
    manifest = json.dumps({"schemaVersion": 2, "mediaType": "application/vnd.docker.distribution.manifest.v2+json",
                           "config": {"digest": config}, "layers": [{"digest": layer}]}).encode()
    digest = put_blob(v2, manifest)
    revision = v2 / "repositories" / repo / "_manifests/revisions/sha256" / digest[7:] / "link"
    revision.parent.mkdir(parents=True)
    revision.write_text(digest)
    tag = v2 / "repositories" / repo / "_manifests/tags/latest/current/link"
    tag.parent.mkdir(parents=True)
    tag.write_text(digest)
    (v2 / "repositories" / repo / "_layers/sha256" / layer[7:]).mkdir(parents=True)
    return v2, {"config": config, "layer": layer, "manifest": digest}


def test_every_registry_manifest_resolves_to_its_blobs(lv, tmp_path):
    v2, _ = registry(tmp_path)
    assert lv.registry_problems(str(v2)) == (1, 1, [])
    d = lv.Drill(restic=None, run=git_ok, full=False)
    d.probe(str(tmp_path), lv.tree_on_disk(str(tmp_path)))
    assert d.checked == ["registry registry/docker/registry/v2: 1 manifests and 1 tags resolve to their blobs"]


def test_a_missing_layer_or_an_altered_manifest_is_named_by_repository_and_digest(lv, tmp_path):
    v2, digests = registry(tmp_path)
    layer = digests["layer"][7:]
    shutil.rmtree(v2 / "blobs/sha256" / layer[:2] / layer)
    _, _, problems = lv.registry_problems(str(v2))
    assert problems == [f"infra/0123456789ab/dns@sha256:{digests['manifest'][7:19]}: blobs missing: {digests['layer']}"]
    manifest = digests["manifest"][7:]
    (v2 / "blobs/sha256" / manifest[:2] / manifest / "data").write_bytes(b"{}")
    _, _, problems = lv.registry_problems(str(v2))
    assert "does not hash to its digest" in problems[0]
    shutil.rmtree(v2 / "blobs/sha256" / manifest[:2] / manifest)
    _, _, problems = lv.registry_problems(str(v2))
    assert any("the manifest's blob blobs/sha256/" in p and "is missing" in p for p in problems)
    assert any(p.startswith("infra/0123456789ab/dns:latest: the tag names ") for p in problems)


def test_manifest_lists_and_oci_indexes_reference_their_manifests_not_foreign_layers(lv):
    index = {"manifests": [{"digest": "sha256:" + "a" * 64}, {"digest": "sha256:" + "b" * 64}]}
    assert lv.manifest_references(index) == ["sha256:" + "a" * 64, "sha256:" + "b" * 64]
    image = {"config": {"digest": "sha256:" + "c" * 64},
             "layers": [{"digest": "sha256:" + "d" * 64}, {"digest": "sha256:" + "e" * 64, "urls": ["https://x"]}]}
    assert lv.manifest_references(image) == ["sha256:" + "c" * 64, "sha256:" + "d" * 64]
    assert lv.blob_path("/v2", "sha256:" + "ab" * 32) == "/v2/blobs/sha256/ab/" + "ab" * 32 + "/data"
    assert lv.blob_path("/v2", "md5:abc") is None


# ---- schedule, lock, record ---------------------------------------------------------------

def test_the_schedule_asks_for_a_drill_once_an_interval(lv):
    now = time.time()
    day = 86400

    def at(seconds_ago):
        return {"at": lv.now_iso(now - seconds_ago)}

    assert lv.drill_due(None, now, day) and lv.drill_due({}, now, day)
    assert not lv.drill_due(at(day - 60), now, day)
    assert lv.drill_due(at(day), now, day)
    assert lv.drill_due(at(-3600), now, day), "a drill dated in the future (the clock went back) is redone"


def test_the_subset_restarts_when_their_number_changes(lv):
    assert lv.next_subset(None, 7) == 1
    assert lv.next_subset({"next": 5, "of": 7}, 7) == 5
    assert lv.next_subset({"next": 5, "of": 7}, 4) == 1
    assert lv.after_subset(7, 7) == {"next": 1, "of": 7}


@pytest.mark.parametrize("value, message", [("abc", "whole number"), ("10", "between 60 and")])
def test_a_wrong_drill_interval_is_named(lv, monkeypatch, value, message):
    monkeypatch.setenv("LAPVAULT_DRILL_INTERVAL_S", value)
    with pytest.raises(SystemExit, match=f"LAPVAULT_DRILL_INTERVAL_S must be .*{message}"):
        lv.drill_interval_s()
    monkeypatch.delenv("LAPVAULT_DRILL_INTERVAL_S")
    assert lv.drill_interval_s() == 86400


def test_a_copy_waits_for_a_running_drill(lv, monkeypatch):
    events = []
    holding = threading.Event()
    release = threading.Event()

    def drill_holder():
        with lv.vault_lock("drill"):
            events.append("drill starts")
            holding.set()
            release.wait(5)
            events.append("drill ends")

    monkeypatch.setattr(lv, "run_once", lambda: events.append("copy") or {})
    t = threading.Thread(target=drill_holder)
    t.start()
    holding.wait(5)
    copier = threading.Thread(target=lv.one_run)
    copier.start()
    time.sleep(0.3)
    assert events == ["drill starts"], "the copy did not wait"
    release.set()
    t.join(5)
    copier.join(5)
    assert events == ["drill starts", "drill ends", "copy"]


def test_the_loop_drills_when_due_and_again_next_minute_when_there_was_nothing_to_drill(lv, monkeypatch):
    monkeypatch.setenv("LAPVAULT_DRILL_INTERVAL_S", "3600")
    monkeypatch.setattr(lv, "password_file", lambda: __file__)
    monkeypatch.setattr(lv, "fix_owners", lambda: None)
    monkeypatch.setattr(lv, "one_run", lambda: {})
    shared = []
    monkeypatch.setattr(lv, "share_state", lambda: shared.append(True))
    lv.write_drill_result({"at": "2020-01-01T00:00:00+00:00", "ok": True})   # a node that drilled long ago
    answers = iter([False, True, True])            # nothing in the vault yet, then a drill
    drills = []

    def scheduled():
        drills.append(time.time())
        ok = next(answers)
        if ok:
            lv.write_drill_result({"at": lv.now_iso(), "ok": True})
        return ok

    monkeypatch.setattr(lv, "scheduled_drill", scheduled)

    class Stop(BaseException):
        pass

    sleeps = []

    def sleep(s):
        sleeps.append(s)
        if len(sleeps) == 4:
            raise Stop

    monkeypatch.setattr(lv.time, "sleep", sleep)
    with pytest.raises(Stop):
        lv.loop()
    assert len(drills) == 2, "one try with nothing to drill, one drill, then none while the last is fresh"
    assert shared, "the loop opens the way to drill.json for the master at its start (node-init closes it)"


def test_the_record_is_written_whole_and_readable_by_the_sftp_users_group_only(lv, tmp_path, monkeypatch):
    monkeypatch.setattr(lv, "sftp_group", lambda: os.getgid())
    doc = lv.drill_doc(time.time() - 3, 3.04, "b2b2b2b2", "3/7", ["a"], ["pack x is damaged"])
    assert doc["ok"] is False and doc["seconds"] == 3.0 and doc["failures"] == ["pack x is damaged"]
    lv.write_drill_result(doc)
    assert json.loads(open(lv.DRILL_RESULT).read()) == doc
    assert not os.path.exists(lv.DRILL_RESULT + ".tmp")
    if os.geteuid() == 0:
        assert oct(os.stat(lv.DRILL_RESULT).st_mode & 0o777) == "0o640"
        assert oct(os.stat(lv.STATE).st_mode & 0o777) == "0o750"
        assert oct(os.stat(os.path.dirname(lv.STATE)).st_mode & 0o777) == "0o711"


def test_the_drill_command_prints_the_result_and_exits_1_when_it_failed(lv, monkeypatch, capsys):
    results = iter([{"at": "2026-12-04T12:00:00+00:00", "ok": False, "snapshot": "b2b2b2b2", "seconds": 1.0,
                     "checked": [], "failures": ["pack 1a2b is damaged"]}, None])
    monkeypatch.setattr(lv, "drill", lambda full=False: next(results))
    assert lv.main(["drill"]) == 1
    assert json.loads(capsys.readouterr().out)["failures"] == ["pack 1a2b is damaged"]
    assert json.loads(open(lv.DRILL_RESULT).read())["ok"] is False
    assert lv.main(["drill"]) == 1
    assert "no snapshot yet" in json.loads(capsys.readouterr().out)["error"]
    assert lv.main(["drill", "--everything"]) == 2


# ---- the interval travels from the environment to the backup node -------------------------------

def backup_block(tree, env):
    from lapinfra import render
    from lapinfra.project import Project
    from lapinfra.report import Recorder

    p = Project(env, root=tree, reporter=Recorder())
    p.secrets.ensure()
    text = render.render_all(p).files[p.build_dir / "Vagrantfile"]
    return text.split("# ---- node backup ")[1].split("# ---- node ")[0], text


@pytest.mark.parametrize("env", ["test", "prod"])       # a container node, a VM
def test_backup_drill_hours_reach_the_backup_node_as_its_drill_interval(tree, env):
    from tests.unit.test_config_check import _append

    _append(tree, f"environments/{env}/env.yml", "backup:\n  drill_hours: 6\n")
    block, whole = backup_block(tree, env)
    assert json.dumps("LAPVAULT_DRILL_INTERVAL_S=21600") in block
    assert whole.count("LAPVAULT_DRILL_INTERVAL_S") == 1, "only the backup node drills"
    if env == "prod":
        assert "apt-get install -y --no-install-recommends restic git" in block


def test_the_default_is_a_daily_drill_and_the_node_image_has_git(tree):
    from tests.conftest import ROOT

    block, _ = backup_block(tree, "test")
    assert json.dumps("LAPVAULT_DRILL_INTERVAL_S=86400") in block
    install = (ROOT / "nodes/image/Dockerfile").read_text().split("apt-get install")[1].split("&&")[0]
    assert " git " in install.replace("\\", " ")


@pytest.mark.parametrize("value", ["0", "745", "'24'", "1.5"])
def test_drill_hours_outside_1_to_744_are_refused_with_file_and_key(tree, value):
    from lapinfra import config
    from lapinfra.errors import ConfigError
    from tests.unit.test_config_check import _append

    _append(tree, "environments/test/env.yml", f"backup:\n  drill_hours: {value}\n")
    with pytest.raises(ConfigError) as err:
        config.load(tree, "test")
    assert (err.value.file, err.value.key) == ("environments/test/env.yml", "backup.drill_hours")


def test_a_fresh_backup_node_waits_one_interval_before_its_first_scheduled_drill(lv, monkeypatch):
    """Not beside the environment's first snapshot and suite: `invoke backup.drill` runs one at once."""
    monkeypatch.setenv("LAPVAULT_DRILL_INTERVAL_S", "3600")
    monkeypatch.setattr(lv, "password_file", lambda: __file__)
    monkeypatch.setattr(lv, "fix_owners", lambda: None)
    monkeypatch.setattr(lv, "one_run", lambda: {})
    monkeypatch.setattr(lv, "share_state", lambda: None)
    monkeypatch.setattr(lv, "is_repository", lambda path: True)
    drills = []
    monkeypatch.setattr(lv, "scheduled_drill", lambda: drills.append(1) or True)

    class Stop(BaseException):
        pass

    sleeps = []

    def sleep(s):
        sleeps.append(s)
        if len(sleeps) == 3:
            raise Stop
    monkeypatch.setattr(lv.time, "sleep", sleep)
    with pytest.raises(Stop):
        lv.loop()
    assert drills == []
