"""Worker nodes and applications: the swarm as nodes/<env>.yml declares it, and each
deployed application answering through the load balancer from replicas on the workers.

Collected only for an environment with worker nodes (conftest.py). The swarm is read
from its manager's API (the master's engine, through an SSH tunnel); names are asked
of the environment's bind9; applications are probed the way users reach them, through
port 80 of the master with <app>.<domain> as the Host header.
"""
import json

import dns.message
import dns.query
import dns.rdatatype
import pytest
import requests

from lapinfra import apps, swarm
from lapinfra.nodes import Nodes

CLIENTS = 30


@pytest.fixture(scope="module")
def manager(project):
    with swarm.engine(project, project.env.master) as client:
        yield client


@pytest.fixture(scope="module")
def members(manager):
    return {n.attrs["Description"]["Hostname"]: n.attrs for n in manager.nodes.list()}


@pytest.fixture(scope="module")
def deployed_apps(node):
    """What `invoke app.deploy` recorded on the master: app -> image."""
    out = node.run(f"cat {apps.RECORD}")
    return json.loads(out.stdout) if out.rc == 0 and out.stdout.strip() else {}


def test_master_is_the_leader(env, members):
    master = members.get(env.master.name)
    assert master, f"{env.master.name} is not in the swarm: {sorted(members)}"
    assert master["Spec"]["Role"] == "manager" and master["ManagerStatus"]["Leader"]
    assert master["Status"]["State"] == "ready"


def test_every_worker_is_a_ready_member(env, members):
    states = {w.name: (members.get(w.name) or {}) for w in env.workers}
    assert {n: (m.get("Spec", {}).get("Role"), m.get("Status", {}).get("State"), m.get("Spec", {}).get("Availability"))
            for n, m in states.items()} == {w.name: ("worker", "ready", "active") for w in env.workers}


def test_worker_names_resolve_to_their_addresses(project, env, master_ip):
    nodes = Nodes(project)
    for worker in env.workers:
        name = f"{worker.name}.node.{env.domain}"
        answer = dns.query.udp(dns.message.make_query(name, "A"), master_ip, timeout=3)
        found = [r.address for rrset in answer.answer for r in rrset if rrset.rdtype == dns.rdatatype.A]
        assert found == [nodes.address(worker)], name


def _deployed(deployed_apps, app):
    if app not in deployed_apps:
        pytest.skip(f"{app} is not deployed here (`invoke app.deploy {app}`)")
    return deployed_apps[app]


def _replicas(manager, members, app) -> set[str]:
    """Host names of the app's running replicas (<node>-<slot>)."""
    by_id = {m["ID"]: name for name, m in members.items()}
    tasks = manager.services.get(app).tasks(filters={"desired-state": "running"})
    return {f"{by_id[t['NodeID']]}-{t['Slot']}" for t in tasks if t["Status"]["State"] == "running"}


def test_app_runs_its_replicas_on_workers(env, manager, members, deployed_apps, app):
    entry = _deployed(deployed_apps, app)
    running = _replicas(manager, members, app)
    assert len(running) == env.apps[app].replicas, running
    assert {name.rsplit("-", 1)[0] for name in running} <= {w.name for w in env.workers}
    image = manager.services.get(app).attrs["Spec"]["TaskTemplate"]["ContainerSpec"]["Image"].split("@")[0]
    assert image == entry["image"]


def test_app_answers_through_the_load_balancer_sticky_and_spread(env, manager, members, deployed_apps, master_ip, app):
    _deployed(deployed_apps, app)
    running = _replicas(manager, members, app)
    host = f"{app}.{env.domain}"
    seen = []
    for _ in range(CLIENTS):
        with requests.Session() as client:
            first = client.get(f"http://{master_ip}/", headers={"Host": host}, timeout=5)
            assert first.status_code == 200, first.text[:200]
            backend = first.headers["X-Backend"]
            assert first.cookies, "no sticky cookie"
            again = [client.get(f"http://{master_ip}/", headers={"Host": host}, timeout=5).headers["X-Backend"] for _ in range(3)]
            assert again == [backend] * 3, f"a client moved between replicas: {backend} then {again}"
            seen.append(backend)
    assert set(seen) == running, f"replicas seen by {CLIENTS} new clients: {sorted(set(seen))}, running: {sorted(running)}"
