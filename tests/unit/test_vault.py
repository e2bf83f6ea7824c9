"""The backup node's vault (nodes/image/lapvault) and what a master's key can reach there.

lapvault runs against a stand-in restic that keeps repositories in memory (snapshots
only: copy, forget by policy or by id), so the decisions are tested without restic:
what is copied, what retention removes from the vault and the inbox, and that nothing
done to the inbox removes a snapshot from the vault."""
import datetime
import importlib.machinery
import importlib.util
import json

import pytest

from lapinfra import render
from lapinfra.project import Project
from lapinfra.report import Recorder
from tests.conftest import ROOT
from tests.unit.test_lapbackup import load_lapbackup

NOW = datetime.datetime(2026, 12, 4, 12, 0, tzinfo=datetime.timezone.utc).timestamp()


def load(path, name):
    loader = importlib.machinery.SourceFileLoader(name, str(ROOT / path))
    spec = importlib.util.spec_from_loader(name, loader)
    module = importlib.util.module_from_spec(spec)
    loader.exec_module(module)
    return module


@pytest.fixture
def vault(tmp_path, monkeypatch):
    lv = load("nodes/image/lapvault", "lapvault")
    inbox, vault = tmp_path / "restic", tmp_path / "vault"
    for repo in (inbox, vault):
        repo.mkdir()
    (inbox / "config").write_text("repository")     # the master's first snapshot made it
    monkeypatch.setattr(lv, "INBOX", str(inbox))
    monkeypatch.setattr(lv, "VAULT", str(vault))
    monkeypatch.setattr(lv, "log", lambda message: None)
    return lv


def at(minutes):
    """restic's time format, ``minutes`` before NOW (nanoseconds, an offset)."""
    t = datetime.datetime.fromtimestamp(NOW - minutes * 60, datetime.timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%S.123456789+00:00")


class FakeRestic:
    """Two repositories' snapshot lists; understands what lapvault asks of restic."""

    def __init__(self, lv):
        self.lv = lv
        self.repos = {lv.INBOX: [], lv.VAULT: []}
        self.calls = []
        self.serial = 0

    def add(self, minutes_ago, **extra):
        self.serial += 1
        snap = {"id": f"{self.serial:08x}" + "a" * 56, "time": at(minutes_ago), **extra}
        self.repos[self.lv.INBOX].append(snap)
        return snap["id"]

    def __call__(self, repo, *args):
        self.calls.append((repo, args))
        snaps = self.repos[repo]
        if args[0] == "init":
            with open(f"{repo}/config", "w") as f:
                f.write("vault")
        elif args[0] == "snapshots":
            return 0, json.dumps(snaps), ""
        elif args[0] == "copy":
            for sid in [a for a in args[1:] if not a.startswith("--") and a != self.lv.INBOX
                        and a != self.lv.password_file()]:
                src = next(s for s in self.repos[self.lv.INBOX] if s["id"] == sid)
                self.serial += 1
                snaps.append(dict(src, id=f"{self.serial:08x}" + "b" * 56, original=src["id"]))
        elif args[0] == "forget":
            flags = list(args[1:])
            if "--keep-last" in flags:     # the short policy of these tests
                n = int(flags[flags.index("--keep-last") + 1])
                snaps[:] = sorted(snaps, key=lambda s: s["time"])[-n:]
            else:
                ids = {a for a in flags if not a.startswith("--")}
                snaps[:] = [s for s in snaps if s["id"] not in ids]
        return 0, "", ""

    def ids(self, repo, shown=False):
        return sorted((s.get("original") or s["id"]) if shown else s["id"] for s in self.repos[repo])


def run(lv, restic):
    return lv.run_once(restic=restic, fix=lambda: None, inbox_keep=2, now=NOW)


def test_every_new_snapshot_goes_into_the_vault_with_the_environments_retention(vault, monkeypatch):
    monkeypatch.setenv("LAPVAULT_KEEP", "--keep-last 3")
    restic = FakeRestic(vault)
    taken = []
    for k in range(6):
        taken.append(restic.add(minutes_ago=60 - 10 * k))
        result = run(vault, restic)
        assert result["copied"] == 1
    # the vault keeps what the policy keeps: the newest three, by the master's ids
    assert restic.ids(vault.VAULT, shown=True) == sorted(taken[-3:])
    # the inbox keeps the newest two (the master's next backup finds its parent there)
    assert restic.ids(vault.INBOX) == sorted(taken[-2:])
    assert (vault.VAULT, ("forget", "--keep-last", "3", "--prune")) in restic.calls


def test_the_default_retention_is_the_original_one_and_the_env_var_replaces_it(vault, monkeypatch):
    monkeypatch.delenv("LAPVAULT_KEEP", raising=False)
    assert vault.keep_flags()[:2] == ["--keep-within", "1d"] and "--keep-yearly" in vault.keep_flags()
    monkeypatch.setenv("LAPVAULT_KEEP", "--keep-within 2h --keep-daily 3")
    assert vault.keep_flags() == ["--keep-within", "2h", "--keep-daily", "3"]


def test_what_the_master_does_to_the_inbox_removes_nothing_from_the_vault(vault, monkeypatch):
    monkeypatch.setenv("LAPVAULT_KEEP", "--keep-last 10")
    restic = FakeRestic(vault)
    for k in range(4):
        restic.add(minutes_ago=40 - 10 * k)
        run(vault, restic)
    before = restic.ids(vault.VAULT, shown=True)
    restic.repos[vault.INBOX].clear()          # a compromised master: forget --prune everything
    result = run(vault, restic)
    assert result["copied"] == 0 and restic.ids(vault.VAULT, shown=True) == before
    assert not [c for c in restic.calls[-2:] if c[1][0] == "forget"]


def test_forged_dates_and_fetched_copies_stay_out_of_the_vault(vault, monkeypatch):
    monkeypatch.setenv("LAPVAULT_KEEP", "--keep-last 10")
    restic = FakeRestic(vault)
    real = restic.add(minutes_ago=10)
    run(vault, restic)
    future = restic.add(minutes_ago=-60 * 24 * 365)     # a year ahead: would push the real ones out
    backdated = restic.add(minutes_ago=60 * 24 * 3)     # would replace a past day's kept snapshot
    fetched = restic.add(minutes_ago=5, original="f" * 64)   # snapshot.fetch's copy from prod
    result = run(vault, restic)
    assert result["copied"] == 0 and sorted(result["refused"]) == sorted([future[:8], backdated[:8]])
    assert restic.ids(vault.VAULT, shown=True) == [real]
    # the inbox never loses what the vault does not hold
    assert {future, backdated, fetched} <= set(restic.ids(vault.INBOX))


def test_inbox_retention_never_removes_a_snapshot_the_vault_lacks(vault):
    inbox = [{"id": i, "time": at(m)} for i, m in (("a", 50), ("b", 40), ("c", 30), ("d", 20))]
    vault_snaps = [{"id": "x", "original": "a"}, {"id": "y", "original": "c"}]
    assert vault.inbox_to_forget(inbox, vault_snaps, keep_newest=1) == ["a", "c"]
    assert vault.inbox_to_forget(inbox, vault_snaps, keep_newest=2) == ["a"]


def test_restic_times_with_nanoseconds_and_offsets_parse(vault):
    assert vault.parse_time("2026-12-04T12:00:00.5Z") == NOW + 0.5
    assert vault.parse_time("2026-12-04T13:00:00.123456789+01:00") == pytest.approx(NOW + 0.123456789)


# ---- what the master's key is allowed on the backup node ---------------------------------

def sshd_match_block(text, user):
    lines = text.splitlines()
    start = lines.index(f"Match User {user}")
    return {l.split()[0]: " ".join(l.split()[1:]) for l in lines[start + 1:] if l.strip() and not l.startswith("#")}


@pytest.mark.parametrize("config", ["nodes/image/sshd_config"])
def test_the_sftp_user_gets_chrooted_sftp_and_nothing_else(config):
    block = sshd_match_block((ROOT / config).read_text(), "backup")
    assert block["ForceCommand"] == "internal-sftp" and block["ChrootDirectory"] == "/data"
    for option in ("AllowTcpForwarding", "AllowStreamLocalForwarding", "AllowAgentForwarding",
                   "PermitTunnel", "PermitTTY", "X11Forwarding"):
        assert block[option] == "no", option
    assert block["AuthorizedKeysFile"] == "/etc/lapinfra/sftp_authorized_keys"


def test_root_accepts_only_the_admin_key_and_the_backup_key_is_the_sftp_users(project):
    admin = project.secrets.path("admin_ed25519.pub").read_text().strip()
    backup_key = project.secrets.path("backup_ed25519.pub").read_text().strip()
    for role in ("master", "backup", "worker"):
        assert project.secrets.authorized_keys(role).read_text() == admin + "\n"
    sftp = project.secrets.path("sftp_authorized_keys.backup").read_text()
    assert sftp == "restrict " + backup_key + "\n"


def test_only_the_backup_node_gets_the_sftp_keys_the_password_and_the_retention(tree):
    p = Project("test", root=tree, reporter=Recorder())
    p.secrets.ensure()
    text = render.render_all(p).files[p.build_dir / "Vagrantfile"]
    blocks = {n.name: text.split(f"# ---- node {n.name} ")[1].split("# ---- node ")[0] for n in p.env.nodes}
    secrets = str(p.secrets.path("restic.password").resolve().parent)
    backup = blocks["backup"]
    assert json.dumps(f"{secrets}/sftp_authorized_keys.backup:/etc/lapinfra/sftp_authorized_keys.in:ro") in backup
    assert json.dumps(f"{secrets}/restic.password:/etc/lapinfra/restic.password:ro") in backup
    assert json.dumps(f"LAPVAULT_KEEP={p.env.backup.forget_flags()}") in backup
    assert '"LAPINFRA_ROLE=backup"' in backup
    for name, block in blocks.items():
        if name != "backup":
            assert "restic.password" not in block and "sftp_authorized_keys" not in block


# ---- the master's side: reading the vault ------------------------------------------------

@pytest.fixture
def lapbackup(tmp_path, monkeypatch):
    lb = load_lapbackup(tmp_path, monkeypatch)
    return lb


def test_the_vault_is_read_without_locks_beside_the_inbox(lapbackup, monkeypatch, tmp_path):
    import subprocess

    monkeypatch.setenv("BACKUP_REPOSITORY", "sftp://backup@192.0.2.1:2222//restic")
    monkeypatch.setattr(lapbackup, "CACHE", str(tmp_path / "cache"))
    seen = []
    real = subprocess.Popen

    def popen(cmd, env=None, **kw):
        seen.append((cmd, env["RESTIC_REPOSITORY"]))
        return real(["true"], env=env, **kw)

    monkeypatch.setattr(lapbackup.subprocess, "Popen", popen)
    lapbackup.restic("snapshots", "--json", vault=True)
    lapbackup.restic("backup", "/srv/data")
    (vault_cmd, vault_repo), (inbox_cmd, inbox_repo) = seen
    assert vault_repo == "sftp://backup@192.0.2.1:2222//vault" and "--no-lock" in vault_cmd
    assert inbox_repo == "sftp://backup@192.0.2.1:2222//restic" and "--no-lock" not in inbox_cmd
    monkeypatch.setenv("BACKUP_VAULT", "sftp:backup@192.0.2.9:/elsewhere")
    assert lapbackup.vault_repository() == "sftp:backup@192.0.2.9:/elsewhere"


def test_a_vault_copy_is_listed_once_by_the_id_the_master_gave_it(lapbackup):
    inbox = [{"id": "a1" * 32, "time": at(20)}, {"id": "b2" * 32, "time": at(10)}]
    vault = [{"id": "c3" * 32, "time": at(20), "original": "a1" * 32}]
    merged = lapbackup.merge_snapshots(inbox, vault)
    assert [(s["id"][:2], s["repo"], s["repo_id"][:2]) for s in merged] == [("a1", "vault", "c3"), ("b2", "inbox", "b2")]


def test_with_the_inbox_deleted_every_snapshot_the_vault_holds_is_still_listed_and_restorable(lapbackup, monkeypatch):
    held = [{"id": "c3" * 32, "time": at(20), "original": "a1" * 32, "paths": ["/srv/data"]},
            {"id": "d4" * 32, "time": at(10), "original": "b2" * 32, "paths": ["/srv/data"]}]

    def snapshots_raw(vault=False):
        if vault:
            return held
        raise lapbackup.Fail("no repository at sftp:backup@192.0.2.1:/restic (no snapshot taken yet?)")

    monkeypatch.setattr(lapbackup, "snapshots_raw", snapshots_raw)
    merged = lapbackup.all_snapshots()
    assert [s["id"][:2] for s in merged] == ["a1", "b2"]
    latest = lapbackup.resolve("latest", merged)
    assert latest["id"][:2] == "b2" and latest["repo"] == "vault" and latest["repo_id"][:2] == "d4"
    assert lapbackup.resolve("a1a1a1a1", merged)["repo_id"][:2] == "c3"


def test_no_repository_readable_is_the_inboxs_error(lapbackup, monkeypatch):
    def snapshots_raw(**kw):
        raise lapbackup.Fail("the backup node refused the ssh key" if not kw.get("vault") else "vault: refused")

    monkeypatch.setattr(lapbackup, "snapshots_raw", snapshots_raw)
    with pytest.raises(lapbackup.Fail, match="refused the ssh key"):
        lapbackup.all_snapshots()


def test_the_scheduler_forgets_nothing_on_the_master(lapbackup, monkeypatch, tmp_path):
    """Retention is the backup node's: the master's runs only snapshot."""
    monkeypatch.setenv("BACKUP_INTERVAL", "1")
    monkeypatch.setattr(lapbackup, "STATUS", str(tmp_path / "status.json"))
    monkeypatch.setattr(lapbackup, "STATE", str(tmp_path))
    monkeypatch.setattr(lapbackup, "LOCK_FILE", str(tmp_path / "lock"))
    monkeypatch.setattr(lapbackup, "prepare", lambda: None)
    monkeypatch.setattr(lapbackup, "recover_all", lambda: {})
    monkeypatch.setattr(lapbackup, "ensure_repo", lambda create=True: None)
    calls = []
    monkeypatch.setattr(lapbackup, "restic", lambda *a, **kw: (calls.append(a), (0, "", ""))[1])
    monkeypatch.setenv("BACKUP_REPOSITORY", "sftp:backup@192.0.2.1:/restic")

    def snapshot(*a, progress=None, **kw):
        progress["snapshot"] = "5afe0001"
        return {}

    monkeypatch.setattr(lapbackup, "do_snapshot", snapshot)

    class Stop(BaseException):
        pass

    sleeps = []

    def sleep(s):
        sleeps.append(s)
        if len(sleeps) > 1:
            raise Stop

    monkeypatch.setattr(lapbackup.time, "sleep", sleep)
    with pytest.raises(Stop):
        lapbackup.cmd_scheduler(None)
    status = json.loads((tmp_path / "status.json").read_text())
    assert status["outcome"] == "ok" and status["snapshot"] == "5afe0001"
    assert not [c for c in calls if c[0] == "forget"]


def test_a_vm_backup_node_is_provisioned_with_the_same_sftp_user_and_vault_loop(tree):
    p = Project("prod", root=tree, reporter=Recorder())
    p.secrets.ensure()
    text = render.render_all(p).files[p.build_dir / "Vagrantfile"]
    blocks = {n.name: text.split(f"# ---- node {n.name} ")[1].split("# ---- node ")[0] for n in p.env.nodes}
    backup = blocks["backup"]
    vm_block = sshd_match_block(backup.split("<<'EOF_SFTP'\n")[1].split("EOF_SFTP")[0], "backup")
    assert vm_block == sshd_match_block((ROOT / "nodes/image/sshd_config").read_text(), "backup")
    assert json.dumps(f"LAPVAULT_KEEP={p.env.backup.forget_flags()}") in backup
    assert "systemctl enable lapvault" in backup
    # root's key file on every VM is the admin key alone
    assert json.dumps(str(p.secrets.authorized_keys("backup").resolve())) in backup
    for name, block in blocks.items():
        if name != "backup":
            assert "restic.password" not in block and "lapvault" not in block


def test_the_vaults_own_copies_of_lapinfras_names_are_equal_to_them(vault):
    """lapvault is self-contained on the backup node: its retention when none is handed
    (lapinfra always hands LAPVAULT_KEEP) and its drill record's path are lapinfra's."""
    from lapinfra import config, records

    assert vault.DEFAULT_KEEP == config.Backup().forget_flags()
    assert vault.DRILL_RESULT == records.DRILL_ON_BACKUP_NODE
