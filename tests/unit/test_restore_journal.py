"""The backup tool's restore swap, killed after every one of its steps: after `lapbackup
recover`, /data is exactly as it was before the restore or exactly the snapshot, never
anything in between (the old swap lost 8 of 10 services' data when interrupted)."""
import hashlib
import os
import types
from pathlib import Path

import pytest

from tests.unit.test_lapbackup import load_lapbackup

SID = "abcdef1234567890"
SERVICES = [f"svc{i}" for i in range(10)]
AUDIT = "lapinfra/releases.jsonl"


class Killed(BaseException):
    """The tool's process dying at that instant: no except, no finally of the tool runs."""


def write(path, text, mode=0o644):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)


def live_tree(data):
    for name in SERVICES:
        write(data / name / "data.db", f"live {name}\n")
        write(data / name / "sub" / "deep.txt", f"deep live {name}\n")
    write(data / "onlylive" / "x", "created after the snapshot\n")
    write(data / "lapinfra" / "release.json", '{"release": "live"}\n')
    write(data / AUDIT, "deploy 1\ndeploy 2 (after the snapshot)\n")
    write(data / "lapinfra" / "ssh" / "host_key", "the node's own host key\n", 0o600)
    write(data / "secrets" / "git" / "admin.pub", "this environment's key\n", 0o600)
    write(data / "backup" / "status.json", "{}\n")
    os.symlink("svc0/data.db", data / "link")


def snapshot_tree(src, with_secrets=False):
    """What restic restored into TMP: services changed, one gone, one new."""
    for name in SERVICES[:-1]:
        write(src / name / "data.db", f"snapshot {name}\n")
    write(src / "svc0" / "sub" / "old.txt", "deleted after the snapshot\n")
    write(src / "onlysnap" / "y", "deleted after the snapshot\n", 0o600)
    (src / "onlysnap").chmod(0o750)
    write(src / "lapinfra" / "release.json", '{"release": "snap"}\n')
    write(src / AUDIT, "deploy 1\n")
    if with_secrets:   # a snapshot taken before /data/secrets was excluded
        write(src / "secrets" / "git" / "admin.pub", "another environment's key\n", 0o600)


def checksum(data):
    """Every entry below /data but the restore's own folder and the tool's state (its lock):
    path, type, mode, content."""
    h = hashlib.sha256()
    for root, dirs, files in os.walk(data):
        dirs[:] = sorted(d for d in dirs if d != ".restore-tmp" and not (root == str(data) and d == "backup"))
        for name in sorted(dirs + files):
            path = os.path.join(root, name)
            st = os.lstat(path)
            h.update(f"{os.path.relpath(path, data)} {st.st_mode:o}\n".encode())
            if os.path.islink(path):
                h.update(os.readlink(path).encode())
            elif os.path.isfile(path):
                h.update(open(path, "rb").read())
    return h.hexdigest()


@pytest.fixture
def tool(tmp_path, monkeypatch):
    data = tmp_path / "data"
    data.mkdir()
    lb = load_lapbackup(tmp_path, monkeypatch, data)
    return types.SimpleNamespace(lb=lb, data=data, tmp=data / ".restore-tmp")


def prepared(tool, with_secrets=False):
    """Live /data and the snapshot in TMP, as cmd_restore has them when the swap begins; its plan."""
    lb = tool.lb
    if tool.data.exists():
        import shutil

        shutil.rmtree(tool.data)
    tool.data.mkdir()
    live_tree(tool.data)
    src = tool.tmp / "srv" / "data"
    snapshot_tree(src, with_secrets)
    (tool.tmp / "replaced").mkdir()
    keep, ancestors = lb._kept_paths((AUDIT, *lb.ALWAYS_KEEP))
    return lb.plan_swap(lb.DATA, str(src), keep, ancestors, str(tool.tmp / "replaced"))


def kill_at(k):
    calls = []

    def hook(point):
        calls.append(point)
        if len(calls) == k:
            raise Killed(point)
    return hook, calls


@pytest.fixture
def states(tool):
    """The checksums of /data before the restore and after an uninterrupted one, and its kill points."""
    prepared(tool)
    before = checksum(tool.data)
    hook, points = kill_at(0)
    tool.lb.run_swap(prepared(tool), SID, hook)
    assert not tool.tmp.exists()
    return before, checksum(tool.data), list(points)


def test_an_uninterrupted_swap_gives_the_snapshot_and_keeps_the_nodes_own(tool, states):
    before, after, points = states
    data = tool.data
    assert before != after
    assert (data / "svc0" / "data.db").read_text() == "snapshot svc0\n"
    assert not (data / SERVICES[-1]).exists() and not (data / "onlylive").exists()
    assert (data / "onlysnap" / "y").read_text() == "deleted after the snapshot\n"
    assert oct((data / "onlysnap").stat().st_mode & 0o777) == oct(0o750)
    assert (data / "lapinfra" / "release.json").read_text() == '{"release": "snap"}\n'
    assert (data / AUDIT).read_text().count("deploy") == 2          # the audit log is not rewound
    assert (data / "lapinfra" / "ssh" / "host_key").exists() and (data / "backup" / "status.json").exists()
    assert (data / "secrets" / "git" / "admin.pub").read_text() == "this environment's key\n"
    assert len(points) > 25


def test_killed_after_any_step_recover_gives_before_or_the_snapshot(tool, states):
    before, after, points = states
    outcomes = {}
    for k in range(1, len(points) + 1):
        plan = prepared(tool)
        hook, _ = kill_at(k)
        with pytest.raises(Killed):
            tool.lb.run_swap(plan, SID, hook)
        result = tool.lb.recover_swap()
        got = checksum(tool.data)
        assert got in (before, after), f"killed after {points[k - 1]}: /data is neither state"
        assert not tool.tmp.exists(), f"killed after {points[k - 1]}: the restore's folder is left"
        assert tool.lb.recover_swap() is None                     # nothing left to do
        outcomes[points[k - 1]] = ("before" if got == before else "snapshot", result["action"])
    removed = points.index("journal removed")   # from there on only the emptied folder is left
    assert {outcomes[p] for p in points[:removed]} == {("before", "undone"), ("snapshot", "finished")}
    assert {outcomes[p] for p in points[removed:]} == {("snapshot", "removed leftover")}
    assert outcomes["journal"] == ("before", "undone")
    assert outcomes["committed"] == ("snapshot", "finished")


def test_killed_again_while_recovering_the_next_recovery_still_ends_in_one_state(tool, states):
    before, after, points = states
    for k in range(1, len(points) + 1, 3):
        hook, _ = kill_at(k)
        with pytest.raises(Killed):
            tool.lb.run_swap(prepared(tool), SID, hook)
        j = 1
        while True:
            again, _ = kill_at(j)
            try:
                tool.lb.recover_swap(again)
                break
            except Killed:
                j += 1
        assert tool.lb.recover_swap() is None
        assert checksum(tool.data) in (before, after)
        assert j > 1 or k == len(points)   # the recovery itself had steps to kill


def test_recover_reports_what_it_did_and_a_restore_journal_left_by_a_kill_is_repaired_first(tool, states, monkeypatch):
    before, _, points = states
    renames = sum(1 for p in points[1:12] if "meta" not in p)
    hook, _ = kill_at(12)
    with pytest.raises(Killed):
        tool.lb.run_swap(prepared(tool), SID, hook)
    monkeypatch.setattr(tool.lb, "docker", lambda *a: pytest.fail("nothing was paused: no engine call"))
    result = tool.lb.cmd_recover(None)
    assert result["swap"]["action"] == "undone" and result["swap"]["snapshot"] == SID[:8]
    assert result["swap"]["renames_undone"] == renames and result["unpaused"] == []
    assert checksum(tool.data) == before
    assert tool.lb.cmd_recover(None) == {"swap": None, "unpaused": []}


def test_a_leftover_restore_folder_without_journal_is_removed_and_data_untouched(tool):
    prepared(tool)     # restic restore had run, the swap had not begun
    before = checksum(tool.data)
    assert tool.lb.recover_swap() == {"action": "removed leftover", "snapshot": None}
    assert not tool.tmp.exists() and checksum(tool.data) == before


def test_an_older_snapshots_secrets_never_replace_the_live_ones(tool):
    plan = prepared(tool, with_secrets=True)
    tool.lb.run_swap(plan, SID)
    assert (tool.data / "secrets" / "git" / "admin.pub").read_text() == "this environment's key\n"


# ---- cmd_restore: the swap behind restic, and a signal in the middle ------------------

@pytest.fixture
def restorable(tool, monkeypatch):
    lb = tool.lb
    prepared(tool)
    import shutil

    snapshot = tool.tmp.parent.parent / "snapshot"
    shutil.copytree(tool.tmp / "srv" / "data", snapshot, symlinks=True)
    shutil.rmtree(tool.tmp)

    def restic(*args, **kw):
        assert args[:2] == ("restore", SID)
        shutil.copytree(snapshot, args[3] + lb.DATA, symlinks=True)
        return 0, "", ""
    monkeypatch.setattr(lb, "restic", restic)
    monkeypatch.setattr(lb, "prepare", lambda: os.makedirs(lb.STATE, exist_ok=True))
    monkeypatch.setattr(lb, "ensure_repo", lambda create=True: None)
    monkeypatch.setattr(lb, "snapshots_raw", lambda vault=False: [] if vault else [{"id": SID, "time": "t", "paths": [lb.DATA]}])
    unpaused = []
    monkeypatch.setattr(lb, "pause_all", lambda: [{"id": "c1", "name": "infra_git"}])
    monkeypatch.setattr(lb, "unpause_all", lambda paused: unpaused.extend(paused))
    return types.SimpleNamespace(args=types.SimpleNamespace(id=SID, keep=[AUDIT]), unpaused=unpaused)


def test_restore_command_swaps_in_the_snapshot(tool, restorable):
    assert tool.lb.cmd_restore(restorable.args) == {"restored": SID[:8]}
    assert (tool.data / "svc0" / "data.db").read_text() == "snapshot svc0\n"
    assert not tool.tmp.exists() and restorable.unpaused


def test_a_signal_during_the_restore_undoes_the_swap_at_once_and_unpauses(tool, restorable):
    before = checksum(tool.data)

    def hook(point):
        if point == "step 9 (out)":
            raise tool.lb.Terminated(15)
    with pytest.raises(tool.lb.Terminated):
        tool.lb.cmd_restore(restorable.args, hook)
    assert checksum(tool.data) == before and not tool.tmp.exists()
    assert [p["name"] for p in restorable.unpaused] == ["infra_git"]


KILLER = """
import os, signal, sys
sys.path.insert(0, {root!r})
from tests.unit import test_restore_journal as t
from tests.unit.test_lapbackup import load_lapbackup
import pytest
mp = pytest.MonkeyPatch()
lb = load_lapbackup(t.Path({tmp!r}), mp, {data!r})
tool = t.types.SimpleNamespace(lb=lb, data=t.Path({data!r}), tmp=t.Path({data!r}) / ".restore-tmp")
plan = t.prepared(tool)
calls = []
def hook(point):
    calls.append(point)
    if len(calls) == {k}:
        os.kill(os.getpid(), signal.SIGKILL)
lb.run_swap(plan, t.SID, hook)
"""


def test_a_real_sigkill_mid_swap_is_repaired_the_same_way(tool, states, tmp_path):
    import subprocess
    import sys

    from tests.conftest import ROOT

    before, after, points = states
    for k in (2, len(points) // 2, points.index("committed") + 1):
        code = KILLER.format(root=str(ROOT), tmp=str(tmp_path), data=str(tool.data), k=k)
        proc = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
        assert proc.returncode == -9, proc.stderr
        assert tool.tmp.exists()                  # the kill left a half-done swap behind
        tool.lb.recover_swap()
        assert checksum(tool.data) in (before, after) and not tool.tmp.exists()
