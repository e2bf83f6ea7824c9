"""Worker nodes: a Docker Swarm whose manager is the master and whose workers run applications.

Worker nodes join a cluster whose manager is the master. The nodes' Docker engine
already has a distributed scheduler, so the cluster is Docker Swarm:

- the master initialises the swarm (advertising its fixed address); the infrastructure
  containers stay standalone containers on it, as before, and applications are
  constrained to workers (node.role==worker). The master is not drained: a drained
  node cannot attach a container to an overlay network, and infra_proxy must;
- each worker joins with the worker join token, read from the manager when needed
  and never written anywhere (a `Secret`, which prints as ***);
- overlay networks take their subnets from ADDRESS_POOL, never Docker's default
  10.0.0.0/8 (the network rule: only networks the project creates);
- applications (lapinfra/apps.py) are swarm services on the overlay APPS_NETWORK,
  which infra_proxy on the master is attached to: nginx reaches each replica by its
  own address (tasks.<app>), which is what sticky sessions need.

`ensure` is desired state: it changes only what differs (a master that is no manager,
a worker in no swarm or in another one, e.g. after a master was rebuilt by dr.recover),
so node.up, start, deploy and dr.recover all call it.
"""
from __future__ import annotations

import contextlib
from typing import Iterator

from .errors import LapinfraError, NodeError
from .nodes import DOCKER_API_PORT, Nodes
from .secrets import Secret
from .services import APPS_NETWORK
from .session import named_networks
from .tunnel import Tunnel

SWARM_PORT = 2377
ADDRESS_POOL = "172.29.0.0/16"
SUBNET_SIZE = 24
CA_DIR = "/etc/docker/certs.d"


@contextlib.contextmanager
def engine(project, node) -> Iterator:
    """The Docker API of a node, through an SSH tunnel to its loopback (a unix socket here)."""
    import docker

    nodes = Nodes(project)
    nodes.write_ssh_config()
    with Tunnel(nodes.ssh_config, node.name, DOCKER_API_PORT, unix=True) as tunnel:
        client = docker.DockerClient(base_url=tunnel.url, timeout=120)
        try:
            yield client
        finally:
            client.close()


def ensure(project, manager=None) -> dict[str, str]:
    """Make the swarm what nodes/<env>.yml says; return what was done per node.
    A worker that does not run is reported, not an error: the infrastructure does not
    depend on workers."""
    env = project.env
    if not env.workers:
        return {}
    with contextlib.ExitStack() as stack:
        if manager is None:
            manager = stack.enter_context(engine(project, env.master))
        done = {env.master.name: _ensure_manager(project, manager)}
        ensure_apps_network(manager)
        token = _worker_token(manager)
        for worker in env.workers:
            try:
                done[worker.name] = _ensure_worker(project, manager, worker, token)
            except Exception as exc:  # noqa: BLE001 - one worker never stops the others or the infrastructure
                project.reporter.warn(f"swarm: worker {worker.name}: {exc}")
                done[worker.name] = f"failed: {exc}"
        _forget_replaced(manager, project)
        return done


def _ensure_manager(project, manager) -> str:
    master = project.env.master
    swarm = manager.info().get("Swarm") or {}
    if swarm.get("LocalNodeState") == "active" and swarm.get("ControlAvailable"):
        action = "manager"
    else:
        if swarm.get("LocalNodeState") in ("active", "pending", "error"):
            manager.swarm.leave(force=True)
        with project.reporter.step(f"swarm: initialise on {master.name} ({master.ip}:{SWARM_PORT})"):
            manager.swarm.init(advertise_addr=str(master.ip), listen_addr=f"{master.ip}:{SWARM_PORT}",
                               default_addr_pool=[ADDRESS_POOL], subnet_size=SUBNET_SIZE)
        action = "initialised"
    me = manager.nodes.get(manager.info()["Swarm"]["NodeID"])
    if me.attrs["Spec"].get("Availability") != "active":   # a drained master could not attach infra_proxy
        me.update({**me.attrs["Spec"], "Availability": "active"})
    return action


def _worker_token(manager):
    manager.swarm.reload()
    return Secret(manager.swarm.attrs["JoinTokens"]["Worker"])


def _ensure_worker(project, manager, worker, token) -> str:
    nodes = Nodes(project)
    address = nodes.address(worker)
    if address is None or (project.env.provider == "docker" and nodes.state(worker) != "running"):
        project.reporter.warn(f"swarm: worker {worker.name} does not run; `invoke node.up --env={project.name} --node {worker.name}`")
        return "not running"
    _trust_registry(project, worker)
    members = {n.id for n in manager.nodes.list()}
    with engine(project, worker) as client:
        swarm = _settled(client)
        if swarm.get("LocalNodeState") == "active" and swarm.get("NodeID") in members:
            return "joined"
        if swarm.get("LocalNodeState") in ("active", "pending", "error"):
            client.swarm.leave(force=True)   # a swarm that is not this master's (e.g. before dr.recover)
        with project.reporter.step(f"swarm: {worker.name} ({address}) joins"):
            try:
                client.swarm.join(remote_addrs=[f"{project.env.master.ip}:{SWARM_PORT}"], join_token=token.reveal(),
                                  advertise_addr=address, listen_addr=f"0.0.0.0:{SWARM_PORT}")
            except Exception as exc:  # noqa: BLE001 - the engine's message, without the token
                raise NodeError(f"swarm: {worker.name} could not join {project.env.master.name}: "
                                f"{str(exc).replace(token.reveal(), '***')}") from None
    return "joined now"


def _settled(client, timeout: float = 30) -> dict:
    """The engine's swarm state once it is not "pending" (a worker that just restarted
    reconnects to its manager by itself: give it the time before judging it)."""
    import time

    deadline = time.monotonic() + timeout
    while True:
        swarm = client.info().get("Swarm") or {}
        if swarm.get("LocalNodeState") != "pending" or time.monotonic() > deadline:
            return swarm
        time.sleep(1)


def _trust_registry(project, worker) -> None:
    """The environment's CA, so that the worker's engine pulls from docker.<domain> over TLS."""
    import io

    host = f"docker.{project.env.domain}:{project.env.registry.port}"
    with Nodes(project).connect(worker) as conn:
        conn.run(f"mkdir -p {CA_DIR}/{host}", hide=True)
        conn.sftp().putfo(io.BytesIO(project.secrets.path("ca.crt").read_bytes()), f"{CA_DIR}/{host}/ca.crt")


def _forget_replaced(manager, project) -> None:
    """Entries of nodes that left (a worker that joined again, a rebuilt worker) are
    removed once they are down and another entry of the same host is ready."""
    rows = manager.nodes.list()
    ready = {n.attrs["Description"]["Hostname"] for n in rows if n.attrs["Status"]["State"] == "ready"}
    for n in rows:
        if n.attrs["Status"]["State"] == "down" and n.attrs["Description"]["Hostname"] in ready:
            n.remove(force=True)


def ensure_apps_network(manager) -> None:
    """The attachable overlay network of the applications (and of infra_proxy)."""
    if not named_networks(manager, APPS_NETWORK):
        manager.networks.create(APPS_NETWORK, driver="overlay", attachable=True, scope="swarm",
                                labels={"lapinfra": "apps"})


def connect_to_apps(manager, container_name: str) -> bool:
    """Attach a standalone container of the master to the applications' network; True if it was not."""
    network = manager.networks.get(APPS_NETWORK)
    container = manager.containers.get(container_name)
    if APPS_NETWORK in (container.attrs["NetworkSettings"].get("Networks") or {}):
        return False
    network.connect(container)
    return True


def status(project) -> list[dict]:
    """The swarm's view of its nodes, from the manager: host name, role, state, availability, address."""
    env = project.env
    try:
        with engine(project, env.master) as manager:
            swarm = manager.info().get("Swarm") or {}
            if not swarm.get("ControlAvailable"):
                return []
            rows = []
            for n in manager.nodes.list():
                a = n.attrs
                rows.append({
                    "hostname": a["Description"]["Hostname"], "role": a["Spec"]["Role"],
                    "state": a["Status"]["State"], "availability": a["Spec"]["Availability"],
                    "address": a["Status"].get("Addr", ""),
                    "leader": bool((a.get("ManagerStatus") or {}).get("Leader")),
                })
            return sorted(rows, key=lambda r: (r["role"] != "manager", r["hostname"]))
    except LapinfraError:
        return []
