"""The environment's lock: staleness as a table, the lock file's shell commands run
against a local file, taking, waiting, re-entering, heartbeats and breaking it."""
import json
import subprocess
import time
from types import SimpleNamespace

import pytest

from lapinfra import lock
from lapinfra.errors import LapinfraError
from lapinfra.report import Recorder

ME = lock.Identity("machine-a", "boot-1", 100, "alice@ci", "ci")


def holder(machine="machine-a", boot="boot-1", pid=200, host="ci"):
    return {"machine_id": machine, "boot_id": boot, "pid": pid, "host": host, "by": f"bob@{host}", "since": "t"}


def alive_pids(*pids):
    return lambda pid: pid in pids


@pytest.mark.parametrize("who, age, alive, stale", [
    (holder(), 5, alive_pids(200), ""),                                          # ours, alive, fresh
    (holder(), 5, alive_pids(), "its process 200 on ci is gone"),               # ours, dead
    (holder(boot="boot-0"), 5, alive_pids(200), "ci was rebooted since it took the lock"),
    (holder(machine="machine-b"), 5, alive_pids(), ""),                          # same host name, other runner
    (holder(machine="machine-b", boot="boot-9"), 5, alive_pids(), ""),           # other machine's boot id means nothing
    (holder(machine="machine-b"), 61, alive_pids(), "no heartbeat for 61s"),     # whoever holds it
    (holder(), 61, alive_pids(200), "no heartbeat for 61s"),
    ({"by": "old@ci", "host": "ci", "pid": 200, "since": "t"}, 5, alive_pids(), ""),   # no machine id: heartbeat only
])
def test_a_lock_is_stale_only_when_its_holder_is_provably_gone(who, age, alive, stale):
    assert lock.stale_reason(who, ME, age, alive) == stale


def test_without_a_machine_id_of_our_own_no_holder_counts_as_ours():
    me = lock.Identity("", "", 100)
    assert lock.stale_reason(holder(machine="", boot=""), me, 5, alive_pids()) == ""


class LocalShell:
    """A stand-in SSH connection that runs each command in a local shell."""

    def __init__(self):
        self.commands = []

    def run(self, command, hide=True, warn=True, timeout=None):
        from invoke.exceptions import CommandTimedOut
        from invoke.runners import Result

        self.commands.append(command)
        try:
            r = subprocess.run(["bash", "-c", command], capture_output=True, text=True, timeout=timeout)
        except subprocess.TimeoutExpired:     # as Fabric's run(timeout=) does: closes the channel, raises
            raise CommandTimedOut(Result(command=command, exited=-1), timeout=timeout) from None
        return SimpleNamespace(failed=r.returncode != 0, stdout=r.stdout, stderr=r.stderr, exited=r.returncode)


@pytest.fixture
def store(tmp_path):
    return lock.RemoteLockFile(LocalShell(), str(tmp_path / "var" / "lib" / "lapinfra" / "deploy.lock"))


def test_the_lock_file_is_created_once_read_back_and_removed_only_by_its_owner(store):
    mine, theirs = json.dumps({"who": "me", "x": "it's \"quoted\""}), json.dumps({"who": "them"})
    assert store.read() is None
    assert store.create(mine)
    assert not store.create(theirs)
    content, age = store.read()
    assert content == mine and 0 <= age <= 2
    assert not store.touch_if(theirs) and store.touch_if(mine)
    assert not store.remove_if(theirs) and store.read() is not None
    assert store.remove_if(mine) and store.read() is None


class Clock:
    def __init__(self):
        self.now, self.slept = 0.0, []

    def __call__(self):
        return self.now

    def sleep(self, seconds):
        self.slept.append(seconds)
        self.now += seconds


def env_lock(store, purpose="deploy", wait=0, me=ME, clock=None, reporter=None):
    clock = clock or Clock()
    return lock.EnvLock(store, "staging", reporter or Recorder(), purpose, wait, me=me, clock=clock,
                        sleep=clock.sleep, heartbeat=3600)


BOB = {"purpose": "deploy", "by": "bob@ws", "host": "ws", "pid": 4242, "machine_id": "machine-b", "boot_id": "b",
       "since": "2026-12-04T01:00:00+0000", "command": "invoke deploy --env=staging"}


@pytest.fixture(autouse=True)
def no_lock_held():
    lock._HELD.clear()
    yield
    lock._HELD.clear()


def test_a_second_writer_is_refused_at_once_naming_the_holder(store):
    assert store.create(json.dumps(BOB))          # another process, on another machine
    with pytest.raises(LapinfraError) as refused:
        with env_lock(store, "restore"):
            pass
    text = str(refused.value)
    assert "staging is being changed by another deploy by bob@ws (pid 4242 on machine machine-b)" in text
    assert "is locked by" in text and "--lock-wait" in text and "`invoke deploy --env=staging`" in text
    assert json.loads(store.read()[0]) == BOB, "the refused command left the holder's lock alone"


def test_lock_wait_polls_until_the_holder_is_done(store):
    other = json.dumps(BOB)
    store.create(other)
    clock = Clock()
    released_after = 3

    def sleep(seconds):
        clock.sleep(seconds)
        if len(clock.slept) == released_after:
            store.remove_if(other)

    reporter = Recorder()
    waiting = lock.EnvLock(store, "staging", reporter, "restore", wait=30, me=ME, clock=clock, sleep=sleep, heartbeat=3600)
    with waiting:
        assert json.loads(store.read()[0])["purpose"] == "restore"
    assert len(clock.slept) == released_after
    assert any("waiting up to 30s" in line for line in reporter.lines)
    assert store.read() is None


def test_lock_wait_gives_up_when_the_time_is_up(store):
    store.create(json.dumps(BOB))
    clock = Clock()
    with pytest.raises(LapinfraError, match=r"is locked by it \(waited 5s\)"):
        with env_lock(store, wait=5, clock=clock):
            pass
    assert sum(clock.slept) == pytest.approx(5)


def test_a_stale_lock_is_not_taken_over_but_named_with_the_way_out(store):
    dead = holder(pid=999999)
    store.create(json.dumps({**dead, "purpose": "deploy"}))
    with pytest.raises(LapinfraError) as refused:
        with env_lock(store, me=lock.Identity("machine-a", "boot-1", 100), wait=60):
            pass
    assert "stale" in str(refused.value) and "invoke unlock --env=staging" in str(refused.value)


def test_the_lock_is_reentrant_within_one_process(store):
    outer = env_lock(store, "build start")
    with outer:
        first = store.read()[0]
        with env_lock(store, "deploy"):          # deploy.deploy inside the task: no second file, no refusal
            assert store.read()[0] == first
        assert store.read()[0] == first, "the inner exit keeps the outer's lock"
    assert store.read() is None


def test_env_lock_inside_a_held_lock_opens_no_connection(store):
    project = SimpleNamespace(name="staging", reporter=Recorder())
    with env_lock(store):
        with lock.env_lock(project, "start"):     # would need the master's SSH otherwise
            pass
        assert store.read() is not None


class FlakyStore:
    def __init__(self, outcomes):
        self.outcomes = list(outcomes)

    def touch_if(self, content):
        outcome = self.outcomes.pop(0)
        if isinstance(outcome, Exception):
            raise outcome
        return outcome


def test_heartbeat_failures_are_reported_once_and_their_end_too():
    reporter = Recorder()
    held = env_lock(FlakyStore([True, OSError("connection reset"), OSError("again"), False, True]), reporter=reporter)
    results = [held.beat_once() for _ in range(5)]
    assert results == [True, False, False, False, True]
    warnings = [line for line in reporter.lines if line.startswith("!")]
    assert len(warnings) == 1 and "connection reset" in warnings[0]
    assert reporter.lines[-1] == "the heartbeat of staging's lock works again"


def test_unlock_of_an_unlocked_environment_says_so(store):
    reporter = Recorder()
    assert lock.break_lock(store, "staging", reporter, me=ME) is None
    assert reporter.lines == ["staging is not locked"]


def test_unlock_breaks_a_dead_processs_lock_and_says_whose(store):
    dead = json.dumps({**holder(pid=999999), "purpose": "deploy"})
    store.create(dead)
    reporter = Recorder()
    broken = lock.break_lock(store, "staging", reporter, me=ME)
    assert broken["pid"] == 999999 and "is gone" in broken["stale"]
    assert store.read() is None
    assert "deploy by bob@ci (pid 999999" in reporter.lines[0] and "stale" in reporter.lines[0]


def test_unlock_refuses_when_the_lock_changed_hands_while_checked():
    class Changing:
        def __init__(self):
            self.reads = [(json.dumps(holder(pid=999999)), 300), (json.dumps(holder(pid=31337)), 0)]
            self.removed = False

        def read(self):
            return self.reads.pop(0)

        def remove_if(self, content):
            self.removed = True
            return True

    store = Changing()
    with pytest.raises(LapinfraError, match="changed hands"):
        lock.break_lock(store, "staging", Recorder(), me=ME)
    assert not store.removed


def test_a_live_lock_is_broken_only_with_force(store):
    me = lock.Identity("machine-a", "boot-1", 1)
    import os

    live = json.dumps(holder(pid=os.getpid()))
    store.create(live)
    with pytest.raises(LapinfraError, match="held by a live"):
        lock.break_lock(store, "staging", Recorder(), me=me)
    assert store.read() is not None
    assert lock.break_lock(store, "staging", Recorder(), force=True, me=me)["pid"] == os.getpid()
    assert store.read() is None


def test_a_lock_file_that_cannot_be_made_is_an_error_not_a_loop(tmp_path):
    blocked = tmp_path / "file-not-folder"
    blocked.write_text("")
    store = lock.RemoteLockFile(LocalShell(), str(blocked / "deploy.lock"))
    with pytest.raises(LapinfraError, match="cannot create the lock file .*deploy.lock on staging's master: mkdir: cannot create directory"):
        with env_lock(store):
            pass


# ---- bounds ---------------------------------------------------------------------

class SlowShell(LocalShell):
    """A master that takes ``delay`` seconds to answer each command."""

    def __init__(self, delay):
        super().__init__()
        self.delay = delay

    def run(self, command, hide=True, warn=True, timeout=None):
        return super().run(f"sleep {self.delay}; {command}", hide=hide, warn=warn, timeout=timeout)


def test_a_master_that_does_not_answer_is_an_error_after_the_command_bound(tmp_path, monkeypatch):
    monkeypatch.setattr(lock, "COMMAND_SECONDS", 0.3)
    store = lock.RemoteLockFile(SlowShell(5), str(tmp_path / "deploy.lock"))
    started = time.monotonic()
    with pytest.raises(LapinfraError, match=r"did not answer within 0.3s about its lock file .*deploy.lock"):
        with env_lock(store):
            pass
    assert time.monotonic() - started < 3


class Handover:
    """A lock held by BOB, handed on to ALICE after a while: the holder the store reads."""

    def __init__(self, clock, at):
        self.clock, self.at, self.path, self.error = clock, at, "/var/lib/lapinfra/deploy.lock", ""
        self.creates = 0

    def create(self, content):
        self.creates += 1
        return False

    def read(self):
        holder = BOB if self.clock.now < self.at else {**BOB, "by": "alice@ws2", "pid": 77, "command": "invoke restore"}
        return json.dumps(holder), 3


def given_up(store, wait: float, clock) -> str:
    """The message of a lock wait that gives up."""
    with pytest.raises(LapinfraError) as refused:
        with env_lock(store, wait=wait, clock=clock):
            pass
    return str(refused.value)


def test_lock_wait_gives_up_at_its_bound_saying_for_whom_it_waited():
    clock = Clock()
    store = Handover(clock, at=1e9)
    text = given_up(store, 7, clock)
    assert "is locked by it (waited 7s)" in text and "bob@ws" in text and "invoke deploy --env=staging" in text
    assert "--lock-wait SECONDS to wait longer" in text and "handed" not in text
    assert clock.now == 7 and store.creates == len(clock.slept) + 1 and max(clock.slept) <= lock.POLL_SECONDS


def test_lock_wait_names_both_holders_when_the_lock_changed_hands_meanwhile():
    clock = Clock()
    store = Handover(clock, at=4)
    text = given_up(store, 10, clock)
    assert "another deploy by alice@ws2 (pid 77" in text
    assert "It waited 10s, first for deploy by bob@ws (pid 4242" in text and "handed the lock on" in text


@pytest.mark.parametrize("wait", ["inf", "nan", -1, 10 ** 9, "soon"])
def test_lock_wait_takes_a_bounded_number_of_seconds_only(wait, store):
    with pytest.raises(LapinfraError, match=f"--lock-wait {wait}: give the seconds to wait for the lock, 0 to 86400"):
        env_lock(store, wait=float(wait) if wait in ("inf", "nan") else wait)


def test_lock_wait_of_the_longest_bound_is_taken(store):
    assert env_lock(store, wait=lock.MAX_WAIT_SECONDS).wait == lock.MAX_WAIT_SECONDS
    assert env_lock(store, wait="30").wait == 30 and env_lock(store, wait=None).wait == 0
