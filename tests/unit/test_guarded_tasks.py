"""The tasks that change an environment: they ask first on a protected one, take its
lock around the change, and node.down keeps the backups unless asked (stand-in project,
lock and library: no node)."""
import contextlib
import importlib
import sys
from types import SimpleNamespace

import pytest
from invoke import Exit

from lapinfra.report import Recorder
from tests.conftest import ROOT


def load_tasks(name):
    sys.path.insert(0, str(ROOT))
    try:
        importlib.import_module("tasks")
        return importlib.import_module(f"tasks.{name}")
    finally:
        sys.path.remove(str(ROOT))


class Stage:
    """What the tasks did, in order: locks taken and library calls."""

    def __init__(self, monkeypatch, protected):
        self.events = []
        self.projects = {}
        common = load_tasks("_common")
        self.protected = protected

        def project(c, env):
            name = env or "test"
            return self.projects.setdefault(name, SimpleNamespace(
                name=name, env=SimpleNamespace(protected=name in protected, promoted_from=None), reporter=Recorder()))

        @contextlib.contextmanager
        def locked(p, purpose, lock_wait=0):
            self.events.append(("lock", p.name, purpose, lock_wait))
            yield
            self.events.append(("unlock", p.name))

        for module in ("deploy", "snapshot", "node", "_common"):
            m = load_tasks(module)
            if hasattr(m, "project"):
                monkeypatch.setattr(m, "project", project)
            if hasattr(m, "locked"):
                monkeypatch.setattr(m, "locked", locked)
        monkeypatch.setattr(common, "project", project)
        monkeypatch.setattr(sys.stdin, "isatty", lambda: False, raising=False)


@pytest.fixture
def stage(monkeypatch):
    return lambda *protected: Stage(monkeypatch, set(protected))


@pytest.fixture
def library(monkeypatch, stage):
    from lapinfra import backup, startstop

    s = stage("prod")
    monkeypatch.setattr(startstop, "stop", lambda p: s.events.append(("stop", p.name)))
    monkeypatch.setattr(backup, "restore", lambda p, snap, start=True: s.events.append(("restore", p.name, snap)))
    monkeypatch.setattr(backup, "fetch", lambda src, dst, snap, restore_after=True: s.events.append(
        ("fetch", src.name, dst.name)) or {"source_snapshot": "a", "snapshot": "b", "restored": restore_after})
    return s


def test_stop_on_a_protected_environment_without_a_terminal_refuses_before_anything(library):
    stop = load_tasks("deploy").stop
    with pytest.raises(Exit) as refused:
        stop.body(None, env="prod")
    assert "prod is protected" in str(refused.value) and "--yes" in str(refused.value)
    assert library.events == []


def test_stop_with_yes_takes_the_lock_around_the_change(library):
    load_tasks("deploy").stop.body(None, env="prod", yes=True, lock_wait=30)
    assert library.events == [("lock", "prod", "stop", 30), ("stop", "prod"), ("unlock", "prod")]


def test_an_unprotected_environment_never_asks_even_without_a_terminal(library):
    load_tasks("snapshot").restore.body(None, env="test", snapshot="latest")
    assert library.events == [("lock", "test", "restore", 0), ("restore", "test", "latest"), ("unlock", "test")]


def test_fetch_never_writes_into_a_protected_default_target(library, monkeypatch):
    snapshot = load_tasks("snapshot")
    monkeypatch.setattr(snapshot, "FETCH_DEFAULT_TARGET", "prod")
    with pytest.raises(Exit, match=r"--to=prod"):
        snapshot.fetch.body(None, from_="staging", yes=True)
    assert library.events == []
    snapshot.fetch.body(None, from_="staging", to="prod", yes=True)
    assert ("fetch", "staging", "prod") in library.events
    assert library.events[0] == ("lock", "prod", "snapshot.fetch", 0), "the target's lock, not the source's"


def test_fetch_into_test_by_default_needs_no_confirmation(library):
    load_tasks("snapshot").fetch.body(None, from_="prod")
    assert ("fetch", "prod", "test") in library.events


class NodesStub:
    calls = []

    def __init__(self, p):
        pass

    def down(self, *args, **kwargs):
        NodesStub.calls.append((args, kwargs))


def test_node_down_keeps_the_backups_unless_asked(stage, monkeypatch):
    stage("prod")
    node = load_tasks("node")
    monkeypatch.setattr(node, "Nodes", NodesStub)
    NodesStub.calls.clear()
    node.down.body(None, env="test")
    node.down.body(None, env="test", node="backup", destroy_backups=True)
    assert NodesStub.calls == [((None,), {"keep_data": False}),
                               (("backup",), {"keep_data": False, "destroy_backups": True})]
    with pytest.raises(Exit, match="prod is protected"):
        node.down.body(None, env="prod")
    assert len(NodesStub.calls) == 2


def test_rollback_data_without_a_terminal_refuses_before_the_lock(library, monkeypatch):
    from lapinfra import promote

    monkeypatch.setattr(promote, "rollback", lambda *a, **kw: library.events.append(("rollback",)) or {"release": "r2", "snapshot": "s3"})
    deploy = load_tasks("deploy")
    with pytest.raises(Exit, match="--yes"):
        deploy.rollback.body(None, env="prod", data=True)
    assert library.events == []
    deploy.rollback.body(None, env="prod")      # images and config only: nothing to confirm
    assert library.events == [("lock", "prod", "rollback", 0), ("rollback",), ("unlock", "prod")]


def test_restart_stops_and_starts_inside_one_lock(library, monkeypatch):
    from invoke import Context

    from lapinfra import startstop

    monkeypatch.setattr(startstop, "start", lambda p: library.events.append(("start", p.name)))
    load_tasks("deploy").restart.body(Context(), env="test")
    assert library.events[0] == ("lock", "test", "restart", 0) and library.events[-1] == ("unlock", "test")
    assert [e for e in library.events if e[0] in ("stop", "start")] == [("stop", "test"), ("start", "test")]
    with pytest.raises(Exit, match="prod is protected"):
        load_tasks("deploy").restart.body(Context(), env="prod")
