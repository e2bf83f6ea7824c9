"""swarm.ensure as desired state: its decisions on facts (a table, with no-op rows), and
read, decide and apply against stand-in engines."""
import contextlib
import hashlib
from dataclasses import replace
from types import SimpleNamespace

import pytest

from lapinfra import swarm
from lapinfra.actions import (ActivateNode, CreateAppsNetwork, InitSwarm, JoinSwarm, LeaveSwarm, RemoveSwarmNode,
                              TrustRegistry)
from lapinfra.facts import SwarmFacts, SwarmMember, SwarmNode
from lapinfra.nodes import Nodes

TOKEN = "SWMTKN-1-secret-worker-token"


def sha256(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


class Engine:
    """A stand-in Docker engine: its swarm state and the calls made to it."""

    def __init__(self, name, manager=None, state="inactive", node_id=None, control=False):
        self.name, self.manager, self.calls = name, manager, []
        self.state = {"LocalNodeState": state, "NodeID": node_id or "", "ControlAvailable": control}
        self.members = {}          # manager only: node id -> attrs
        self.network_names = set()
        self.swarm = SimpleNamespace(init=self._init, leave=self._leave, join=self._join, reload=lambda: None,
                                     attrs={"JoinTokens": {"Worker": TOKEN}})
        self.nodes = SimpleNamespace(list=self._list, get=lambda i: self._list_by_id()[i])
        # the engine's name filter matches parts of names, as Docker's does
        self.networks = SimpleNamespace(list=lambda names: [SimpleNamespace(name=n) for n in sorted(self.network_names)
                                                            if any(want in n for want in names)],
                                        create=lambda name, **kw: (self.calls.append(("network", name, kw["driver"])),
                                                                   self.network_names.add(name)))

    def info(self):
        return {"Swarm": dict(self.state)}

    def _init(self, **kw):
        self.calls.append(("init", kw["advertise_addr"], tuple(kw["default_addr_pool"])))
        self.state = {"LocalNodeState": "active", "NodeID": "m1", "ControlAvailable": True}
        self.add_member("m1", self.name, "manager")

    def _leave(self, force):
        self.calls.append(("leave",))
        self.state = {"LocalNodeState": "inactive", "NodeID": "", "ControlAvailable": False}

    def _join(self, **kw):
        self.calls.append(("join", tuple(kw["remote_addrs"]), kw["join_token"], kw["advertise_addr"]))
        self.state = {"LocalNodeState": "active", "NodeID": f"id-{self.name}", "ControlAvailable": False}
        self.manager.add_member(f"id-{self.name}", self.name, "worker")

    def add_member(self, node_id, host, role, state="ready"):
        self.members[node_id] = {"Description": {"Hostname": host}, "Status": {"State": state},
                                 "Spec": {"Role": role, "Availability": "active"}}

    def _list_by_id(self):
        engine = self

        class Member:
            def __init__(self, i):
                self.id, self.attrs = i, engine.members[i]

            def remove(self, force):
                engine.calls.append(("remove", self.id))
                del engine.members[self.id]

            def update(self, spec):
                engine.calls.append(("update", self.id, spec["Availability"]))
                engine.members[self.id]["Spec"] = spec

        return {i: Member(i) for i in self.members}

    def _list(self):
        return list(self._list_by_id().values())


@pytest.fixture
def engines(project, monkeypatch):
    manager = Engine("master")
    found = {"master": manager, "worker1": Engine("worker1", manager), "worker2": Engine("worker2", manager)}
    running = {"master", "worker1", "worker2"}
    addresses = {"worker1": "172.28.10.129"}
    trusted, cas = [], {}          # the workers the CA was written to; worker -> the CA its engine trusts

    @contextlib.contextmanager
    def engine(p, node):
        yield found[node.name]

    @contextlib.contextmanager
    def connect(self, node):
        def run(command, **kw):
            held = cas.get(node.name)
            if command.startswith("sha256sum "):
                return SimpleNamespace(ok=held is not None, stdout=f"{sha256(held)}  ca.crt\n" if held else "")
            return SimpleNamespace(ok=True, stdout="")
        sftp = SimpleNamespace(putfo=lambda f, path: (trusted.append(node.name), cas.update({node.name: f.read()})))
        yield SimpleNamespace(run=run, sftp=lambda: sftp)

    monkeypatch.setattr(swarm, "engine", engine)
    monkeypatch.setattr(Nodes, "connect", connect)
    monkeypatch.setattr(Nodes, "address", lambda self, node: str(node.ip) if node.ip else addresses.get(node.name))
    monkeypatch.setattr(Nodes, "state", lambda self, node: "running" if node.name in running else "exited")
    return SimpleNamespace(by_name=found, running=running, trusted=trusted, cas=cas)


def test_a_fresh_master_initialises_and_every_worker_joins(project, engines):
    done = swarm.ensure(project)
    assert done == {"master": "initialised", "worker1": "joined now", "worker2": "joined now"}
    assert engines.by_name["master"].calls[:2] == [("init", "172.28.10.10", ("172.29.0.0/16",)),
                                                   ("network", "lapinfra_apps", "overlay")]
    assert engines.by_name["worker1"].calls == [("join", ("172.28.10.10:2377",), TOKEN, "172.28.10.129")]
    assert engines.by_name["worker2"].calls == [("join", ("172.28.10.10:2377",), TOKEN, "172.28.10.31")]
    assert engines.trusted == ["worker1", "worker2"]        # the registry's CA, before pulling
    assert TOKEN not in "\n".join(project.reporter.lines)   # the join token is never reported


def test_a_swarm_that_is_right_changes_nothing(project, engines):
    swarm.ensure(project)
    for engine in engines.by_name.values():
        engine.calls.clear()
    engines.trusted.clear()
    assert swarm.ensure(project) == {"master": "manager", "worker1": "joined", "worker2": "joined"}
    assert [e.calls for e in engines.by_name.values()] == [[], [], []] and engines.trusted == []


def test_workers_of_another_swarm_leave_it_and_join_the_new_master(project, engines):
    """A master rebuilt by dr.recover: a new swarm; the workers still belong to the old one."""
    swarm.ensure(project)
    old = engines.by_name["master"]
    fresh = Engine("master")
    engines.by_name["master"] = fresh
    for engine in engines.by_name.values():
        engine.calls.clear()
        engine.manager = fresh
    done = swarm.ensure(project)
    assert done["master"] == "initialised" and done["worker1"] == "joined now"
    assert engines.by_name["worker1"].calls[0] == ("leave",)
    assert engines.by_name["worker1"].calls[1][0] == "join"
    assert old is not fresh and set(fresh.members) == {"m1", "id-worker1", "id-worker2"}


def test_a_worker_that_does_not_run_is_a_warning_not_an_error(project, engines):
    engines.running.discard("worker2")
    done = swarm.ensure(project)
    assert done["worker2"] == "not running" and done["worker1"] == "joined now"
    assert any(line.startswith("! swarm: worker worker2 does not run") for line in project.reporter.lines)


def test_a_drained_master_is_made_active_again(project, engines):
    swarm.ensure(project)
    engines.by_name["master"].members["m1"]["Spec"]["Availability"] = "drain"
    swarm.ensure(project)
    assert ("update", "m1", "active") in engines.by_name["master"].calls


def test_the_entry_of_a_replaced_worker_is_removed_once_down(project, engines):
    swarm.ensure(project)
    manager = engines.by_name["master"]
    manager.add_member("old-worker1", "worker1", "worker", state="down")
    swarm.ensure(project)
    assert ("remove", "old-worker1") in manager.calls and "id-worker1" in manager.members


def test_an_environment_without_workers_has_no_swarm(tree):
    from lapinfra.project import Project

    assert swarm.ensure(Project("staging", root=tree)) == {}


# ---- the decisions: facts in, actions out ----------------------------------------------------

CA = b"the environment's CA\n"
MASTER = SwarmNode("master", "manager")
W1 = SwarmNode("worker1", "worker", address="172.28.10.129", ca=sha256(CA))
W2 = SwarmNode("worker2", "worker", address="172.28.10.31", ca=sha256(CA))
READY = (SwarmMember("m1", "master", "ready"), SwarmMember("id-w1", "worker1", "ready"), SwarmMember("id-w2", "worker2", "ready"))
RIGHT = SwarmFacts(MASTER, (W1, W2), READY, apps_network=True)
MANAGER = "172.28.10.10:2377"
REGISTRY = "docker.internal:5000"


def worker(base, **changes):
    return replace(base, **changes)


DECISIONS = [
    pytest.param(RIGHT, [], id="a swarm that is right: no action"),
    pytest.param(replace(RIGHT, workers=(worker(W1, state="not running", address="", ca=None), W2)), [],
                 id="a worker that does not run: no action"),
    pytest.param(replace(RIGHT, workers=(W1, worker(W2, state="unreachable", error="no route"))), [],
                 id="a worker that does not answer: no action"),
    pytest.param(replace(RIGHT, members=(*READY, SwarmMember("old", "backup", "down"))), [],
                 id="a down entry of no host that is in the swarm: kept"),
    pytest.param(SwarmFacts(SwarmNode("master", "none"), (worker(W1, state="none", ca=None), worker(W2, state="none", ca=None))),
                 [InitSwarm("master", MANAGER), CreateAppsNetwork("lapinfra_apps"),
                  TrustRegistry("worker1", REGISTRY), JoinSwarm("worker1", "172.28.10.129", MANAGER),
                  TrustRegistry("worker2", REGISTRY), JoinSwarm("worker2", "172.28.10.31", MANAGER)],
                 id="first time: the master initialises, the workers trust the CA and join"),
    pytest.param(replace(RIGHT, master=SwarmNode("master", "other"), members=(), apps_network=True),
                 [LeaveSwarm("master"), InitSwarm("master", MANAGER), CreateAppsNetwork("lapinfra_apps"),
                  LeaveSwarm("worker1"), JoinSwarm("worker1", "172.28.10.129", MANAGER),
                  LeaveSwarm("worker2"), JoinSwarm("worker2", "172.28.10.31", MANAGER)],
                 id="a master in a swarm it does not manage: a new swarm, which every worker joins"),
    pytest.param(replace(RIGHT, master=SwarmNode("master", "manager", active=False)), [ActivateNode("master")],
                 id="a drained master is made active"),
    pytest.param(replace(RIGHT, apps_network=False), [CreateAppsNetwork("lapinfra_apps")], id="the apps network is missing"),
    pytest.param(replace(RIGHT, workers=(worker(W1, state="other"), W2)),
                 [LeaveSwarm("worker1"), JoinSwarm("worker1", "172.28.10.129", MANAGER)],
                 id="a worker in another swarm leaves it and joins"),
    pytest.param(replace(RIGHT, workers=(W1, worker(W2, ca="another"))), [TrustRegistry("worker2", REGISTRY)],
                 id="a worker that trusts another CA (a rotated one)"),
    pytest.param(replace(RIGHT, members=(*READY, SwarmMember("old-w1", "worker1", "down"))),
                 [RemoveSwarmNode("old-w1", "worker1")], id="the down entry of a worker that joined again is removed"),
    pytest.param(replace(RIGHT, workers=(worker(W1, state="none"), W2), members=(READY[0], READY[2], SwarmMember("id-w1", "worker1", "down"))),
                 [JoinSwarm("worker1", "172.28.10.129", MANAGER), RemoveSwarmNode("id-w1", "worker1")],
                 id="a rebuilt worker joins, and its old entry is removed"),
]


@pytest.mark.parametrize("found, actions", DECISIONS)
def test_decide(project, found, actions):
    assert swarm.decide(project.env, found, CA) == actions


def test_a_worker_that_fails_to_join_keeps_its_old_entry_and_the_others_go_on(project, engines):
    swarm.ensure(project)
    manager = engines.by_name["master"]
    manager.add_member("old-worker1", "worker1", "worker", state="down")
    engines.by_name["worker1"].state = {"LocalNodeState": "inactive", "NodeID": "", "ControlAvailable": False}
    engines.by_name["worker1"].swarm.join = lambda **kw: (_ for _ in ()).throw(RuntimeError(f"refused {kw['join_token']}"))
    found = swarm.read(project, manager)
    applied, failed = swarm.apply(project, manager, found, swarm.decide(project.env, found, swarm.registry_ca(project)))
    assert applied == [] and failed == {"worker1": "failed: swarm: worker1 could not join master: refused ***"}
    assert "old-worker1" in manager.members
