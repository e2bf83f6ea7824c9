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

`ensure` is desired state, as facts, decisions and actions: ``read`` the swarm state of the
master and of each worker (``facts.SwarmFacts``), ``decide`` on them the actions that make it
what nodes/<env>.yml says (pure: a master that is no manager, a drained master, a worker in no
swarm or in another one, e.g. after a master was rebuilt by dr.recover, a worker lacking the
registry's CA; a swarm that is right takes none), and ``apply`` them (here, not in
lapinfra/executor.py: they reach each worker's engine). node.up, start, deploy (its phase
``swarm``, which plan shows), app.deploy and dr.recover all take this path.
"""
from __future__ import annotations

import contextlib
import hashlib
from concurrent.futures import ThreadPoolExecutor
from typing import Iterator

from .actions import ActivateNode, CreateAppsNetwork, InitSwarm, JoinSwarm, LeaveSwarm, RemoveSwarmNode, TrustRegistry
from .errors import LapinfraError, NodeError
from .facts import SwarmFacts, SwarmMember, SwarmNode
from .nodes import DOCKER_API_PORT, Nodes
from .secrets import Secret
from .services import APPS_NETWORK
from .session import named_networks
from .tunnel import Tunnel

SWARM_PORT = 2377
ADDRESS_POOL = "172.29.0.0/16"
SUBNET_SIZE = 24
CA_DIR = "/etc/docker/certs.d"
IN_A_SWARM = ("active", "pending", "error")     # an engine in these states leaves before it joins or initialises


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
        found = read(project, manager)
        applied, failed = apply(project, manager, found, decide(env, found, registry_ca(project)))
        return outcome(env, found, applied, failed)


# ---- facts ----------------------------------------------------------------------------

def registry_host(env) -> str:
    """The registry as the workers' engines pull from it: docker.<domain>:<port>."""
    return f"docker.{env.domain}:{env.registry.port}"


def registry_ca(project) -> bytes:
    return project.secrets.path("ca.crt").read_bytes()


def master_state(swarm: dict) -> str:
    """SwarmNode.state of the master's engine, from its info's "Swarm"."""
    if swarm.get("LocalNodeState") == "active" and swarm.get("ControlAvailable"):
        return "manager"
    return "other" if swarm.get("LocalNodeState") in IN_A_SWARM else "none"


def worker_state(swarm: dict, members: set[str]) -> str:
    """SwarmNode.state of a worker's engine, from its info's "Swarm" and the ids of the master's swarm's nodes."""
    if swarm.get("LocalNodeState") == "active" and swarm.get("NodeID") in members:
        return "worker"
    return "other" if swarm.get("LocalNodeState") in IN_A_SWARM else "none"


def read(project, manager) -> SwarmFacts:
    """The swarm's facts: the master's engine (``manager``), the manager's entries, the applications'
    network, and each worker's engine (through a tunnel of its own; nothing is changed)."""
    env = project.env
    swarm = manager.info().get("Swarm") or {}
    state, members, active = master_state(swarm), (), True
    if state == "manager":
        members = tuple(SwarmMember(n.id, n.attrs["Description"]["Hostname"], n.attrs["Status"]["State"])
                        for n in manager.nodes.list())
        active = manager.nodes.get(swarm["NodeID"]).attrs["Spec"].get("Availability") == "active"
    ids = {member.id for member in members}
    with ThreadPoolExecutor(max_workers=max(1, len(env.workers))) as pool:   # each worker through its own tunnel
        workers = tuple(pool.map(lambda worker: _read_worker(project, worker, ids), env.workers))
    return SwarmFacts(SwarmNode(env.master.name, state, active), workers, members,
                      bool(named_networks(manager, APPS_NETWORK)))


def _read_worker(project, worker, members: set[str]) -> SwarmNode:
    nodes = Nodes(project)
    try:
        address = nodes.address(worker)
        if address is None or (project.env.provider == "docker" and nodes.state(worker) != "running"):
            return SwarmNode(worker.name, "not running")
        ca = _trusted_ca(project, worker)
        with engine(project, worker) as client:
            state = worker_state(_settled(client), members)
    except Exception as exc:  # noqa: BLE001 - one worker never stops the others or the infrastructure
        return SwarmNode(worker.name, "unreachable", error=str(exc))
    return SwarmNode(worker.name, state, address=address, ca=ca)


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


def _ca_path(project) -> str:
    return f"{CA_DIR}/{registry_host(project.env)}/ca.crt"


def _trusted_ca(project, worker) -> str | None:
    """sha256 of the registry CA the worker's engine trusts (None: none)."""
    with Nodes(project).connect(worker) as conn:
        found = conn.run(f"sha256sum {_ca_path(project)}", hide=True, warn=True)
    return found.stdout.split()[0] if found.ok and found.stdout.strip() else None


# ---- decisions (pure) -------------------------------------------------------------------

def decide(env, found: SwarmFacts, ca: bytes) -> list:
    """The actions that make the swarm what ``env`` says, on its facts ``found`` (``ca``: the
    environment's CA, which each worker's engine must trust for the registry): the master manages
    a swarm (leaving another one first) and is active in it, the applications' network exists (a
    new swarm has none), each running worker trusts the CA and is a worker of that swarm (leaving
    another one first; every worker joins a new swarm), and the entries of hosts that joined again
    are forgotten once down. A worker that does not run or does not answer takes none."""
    manager = f"{env.master.ip}:{SWARM_PORT}"
    new = found.master.state != "manager"
    actions: list = []
    if found.master.state == "other":
        actions.append(LeaveSwarm(env.master.name))
    if new:
        actions.append(InitSwarm(env.master.name, manager))
    elif not found.master.active:
        actions.append(ActivateNode(env.master.name))
    if new or not found.apps_network:
        actions.append(CreateAppsNetwork(APPS_NETWORK))
    joining = set()
    for worker in [w for w in found.workers if w.state not in ("not running", "unreachable")]:
        if worker.ca != hashlib.sha256(ca).hexdigest():
            actions.append(TrustRegistry(worker.name, registry_host(env), ca))
        if worker.state == "worker" and not new:
            continue
        if worker.state in ("worker", "other"):
            actions.append(LeaveSwarm(worker.name))
        actions.append(JoinSwarm(worker.name, worker.address, manager))
        joining.add(worker.name)
    if not new:    # a new swarm has no old entries
        there = {member.hostname for member in found.members if member.state == "ready"} | joining
        actions += [RemoveSwarmNode(member.id, member.hostname) for member in found.members
                    if member.state == "down" and member.hostname in there]
    return actions


# ---- applying them ------------------------------------------------------------------------

def apply(project, manager, found: SwarmFacts, actions) -> tuple[list, dict[str, str]]:
    """Apply ``actions`` in order, through ``manager`` (the master's engine) and each worker's engine;
    (the ones applied, worker name -> why it failed). A failure on the master is an error; a worker's
    is a warning, and the rest of that worker's actions are left out (its old entry is kept)."""
    reporter, master = project.reporter, project.env.master.name
    for worker in found.workers:
        if worker.state == "not running":
            reporter.warn(f"swarm: worker {worker.name} does not run; `invoke node.up --env={project.name} --node {worker.name}`")
        elif worker.state == "unreachable":
            reporter.warn(f"swarm: worker {worker.name}: {worker.error}")
    applied, failed = [], {}
    with contextlib.ExitStack() as stack:
        engines = {master: manager}

        def client(node: str):
            if node not in engines:
                engines[node] = stack.enter_context(engine(project, _node(project.env, node)))
            return engines[node]

        for action in actions:
            node = getattr(action, "node", master)      # the network and the entries are the manager's
            if node in failed or getattr(action, "hostname", None) in failed:   # a host that did not join again
                continue
            try:
                APPLY[type(action)](project, client, action)
            except Exception as exc:  # noqa: BLE001 - one worker never stops the others or the infrastructure
                if node == master:
                    raise
                reporter.warn(f"swarm: worker {node}: {exc}")
                failed[node] = f"failed: {exc}"
                continue
            applied.append(action)
    return applied, failed


def _leave(project, client, action: LeaveSwarm) -> None:
    client(action.node).swarm.leave(force=True)


def _init(project, client, action: InitSwarm) -> None:
    ip = action.address.rsplit(":", 1)[0]
    with project.reporter.step(f"swarm: initialise on {action.node} ({action.address})"):
        client(action.node).swarm.init(advertise_addr=ip, listen_addr=action.address,
                                       default_addr_pool=[ADDRESS_POOL], subnet_size=SUBNET_SIZE)


def _activate(project, client, action: ActivateNode) -> None:
    manager = client(action.node)
    me = manager.nodes.get(manager.info()["Swarm"]["NodeID"])
    me.update({**me.attrs["Spec"], "Availability": "active"})


def _create_apps_network(project, client, action: CreateAppsNetwork) -> None:
    client(project.env.master.name).networks.create(action.network, driver="overlay", attachable=True, scope="swarm",
                                                    labels={"lapinfra": "apps"})


def _trust_registry(project, client, action: TrustRegistry) -> None:
    """The environment's CA, so that the worker's engine pulls from docker.<domain> over TLS."""
    import io

    with Nodes(project).connect(_node(project.env, action.node)) as conn:
        conn.run(f"mkdir -p {CA_DIR}/{action.host}", hide=True)
        conn.sftp().putfo(io.BytesIO(action.data), f"{CA_DIR}/{action.host}/ca.crt")


def _join(project, client, action: JoinSwarm) -> None:
    token = _worker_token(client(project.env.master.name))
    master = project.env.master.name
    with project.reporter.step(f"swarm: {action.node} ({action.address}) joins"):
        try:
            client(action.node).swarm.join(remote_addrs=[action.manager], join_token=token.reveal(),
                                           advertise_addr=action.address, listen_addr=f"0.0.0.0:{SWARM_PORT}")
        except Exception as exc:  # noqa: BLE001 - the engine's message, without the token
            raise NodeError(f"swarm: {action.node} could not join {master}: "
                            f"{str(exc).replace(token.reveal(), '***')}") from None


def _forget(project, client, action: RemoveSwarmNode) -> None:
    client(project.env.master.name).nodes.get(action.id).remove(force=True)


def _node(env, name: str):
    return next(node for node in env.nodes if node.name == name)


APPLY = {LeaveSwarm: _leave, InitSwarm: _init, ActivateNode: _activate, CreateAppsNetwork: _create_apps_network,
         TrustRegistry: _trust_registry, JoinSwarm: _join, RemoveSwarmNode: _forget}


def _worker_token(manager):
    manager.swarm.reload()
    return Secret(manager.swarm.attrs["JoinTokens"]["Worker"])


def outcome(env, found: SwarmFacts, applied: list, failed: dict[str, str]) -> dict[str, str]:
    """What was done per node, as node.up reports it: the master "initialised" or "manager", each
    worker "joined now", "joined", "not running" or "failed: ..."."""
    done = {env.master.name: "initialised" if any(isinstance(a, InitSwarm) for a in applied) else "manager"}
    joined = {a.node for a in applied if isinstance(a, JoinSwarm)}
    for worker in found.workers:
        done[worker.name] = ("not running" if worker.state == "not running"
                             else f"failed: {worker.error}" if worker.state == "unreachable"
                             else failed.get(worker.name) or ("joined now" if worker.name in joined else "joined"))
    return done


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
