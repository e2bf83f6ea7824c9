"""The infrastructure's own commands on the master: start, stop, and seed it.

- stop:   remove every ``infra_*`` container (selected through the Docker API).
- start:  start without stopping: the swarm, the registry, then pull the release's
          images from it and start the other containers (deploy.start_phases).
          Reads the release record on the node, so it works from the node's state
          alone (and the images the node keeps itself, see seed). Then the apps are
          brought back and the nodes' names registered where missing or wrong
          (deploy.served_phases). A deploy ends with the same start of its release
          (activate).
- seed:   `invoke node.seed`: the first installation, the base, registry and
          backup images carried from the workstation (deploy.seed).

The phases these walk, and what each applies, are lapinfra/deploy.py's.
"""
from __future__ import annotations

import shlex
import time

from . import records, services as svc
from .actions import ChangeContainer
from .backuptool import recover_interrupted
from .deploy import (Container, RecordRelease, Target, apply_phases, ensure_infra_network, seed, seed_tags,
                     served_phases, start_phases)
from .errors import LapinfraError
from .executor import Executor
from .records import Release
from .session import MasterSession


# ---- stop ---------------------------------------------------------------------------

def infra_containers(client) -> list:
    return [c for c in client.containers.list(all=True) if c.name.startswith(svc.PREFIX)]


def stop(project) -> list[str]:
    with MasterSession(project) as s:
        return stop_all(s, project.reporter)


def stop_all(s: MasterSession, reporter) -> list[str]:
    removed = []
    for container in infra_containers(s.docker):
        with reporter.step(f"remove {container.name}"):
            container.remove(force=True)
        removed.append(container.name)
    if not removed:
        reporter.info("no infra_* containers on the node")
    return removed


# ---- start --------------------------------------------------------------------------

def start(project) -> dict[str, str]:
    with MasterSession(project) as s:
        recover_interrupted(s, project)   # a restore that was interrupted: finished or undone first
        release = records.read_release(s)
        if release is None:
            raise LapinfraError(f"nothing deployed on {project.env.master.name} yet: run `invoke deploy --env={project.name}` first")
        return start_services(s, release, project.reporter)


def start_services(s: MasterSession, release: Release, reporter, executor: Executor | None = None) -> dict[str, str]:
    """Start ``release``'s containers (start_phases: the swarm, the registry, the pulls from it, the
    others in start order), wait until the ones that changed serve, bring the applications back and
    register the nodes' names (served_phases); what was done to each service's container (``executor``: the deploy's, which
    records each action)."""
    ensure_infra_network(s.docker)
    phases, target = start_phases(s.env), Target(s.p, release, s.registry_host)
    executor = executor or Executor(reporter, s)
    done = apply_phases(s, target, phases, executor)
    changed = {action.container: action.done for action in done if isinstance(action, ChangeContainer)}
    outcome = {p.service.name: changed.get(p.service.container, "kept") for p in phases if isinstance(p, Container)}
    if changed:
        with reporter.step(f"health checks of {len(changed)} started containers"):
            ports = {service.container: service_port(service) for service in svc.services(s.env)}
            wait_healthy(s.docker, list(changed), accepting=port_prober(s, ports))
    apply_phases(s, target, served_phases(s.env), executor)
    return outcome


def activate(s: MasterSession, record: Release, reporter, executor: Executor | None = None) -> dict[str, str]:
    """Make ``record`` the node's release (RecordRelease) and start its containers (start_services)."""
    executor = executor or Executor(reporter, s)
    apply_phases(s, Target(s.p, record, s.registry_host), [RecordRelease()], executor)
    return start_services(s, record, reporter, executor)


def wait_healthy(client, names: list[str], timeout: float = 180, poll: float = 0.5, accepting=None) -> None:
    """Wait until each container serves: Docker calls it healthy, or it runs and has no health check,
    or (``accepting``: names -> the subset whose service port takes a TCP connection now) its port
    answers while Docker's own first check is still an interval away. Nothing is run inside the
    containers: an exec that meets a snapshot's pause can leave the container frozen for good."""
    deadline = time.monotonic() + timeout
    pending = list(names)
    while pending:
        states = {name: readiness(client.api.inspect_container(name)) for name in pending}
        probe = [n for n, st in states.items() if st == "probe"]
        if probe and accepting is not None:
            states.update({n: "ready" for n in accepting(probe)})
        pending = [n for n, st in states.items() if st != "ready"]
        if not pending:
            return
        if time.monotonic() > deadline:
            raise LapinfraError("not healthy after {:.0f}s: {}".format(
                timeout, ", ".join(f"{n} ({'starting' if states[n] == 'probe' else states[n]})" for n in pending))
                + "; see `invoke node.ssh -- docker logs NAME`")
        time.sleep(poll)


def readiness(attrs: dict) -> str:
    """What a container's inspect data says of its readiness: "ready" (healthy, or running without a
    health check), "probe" (running, its first health check not passed yet: its port may answer
    already), or the state to wait on (e.g. "restarting", "paused", "unhealthy")."""
    state = attrs["State"]
    health = (state.get("Health") or {}).get("Status")
    if state.get("Status") != "running":
        return state.get("Status") or "unknown"
    if health in (None, "healthy"):
        return "ready"
    return "probe" if health == "starting" else health


def service_port(service) -> int | None:
    """The TCP port a service's container serves on: behind the proxy, or its first published one."""
    if service.http:
        return service.http
    tcp = [int(spec.split("/")[0]) for spec in service.ports if spec.endswith("/tcp")]
    return tcp[0] if tcp else None


def probe_script(targets: dict[str, tuple[str, int]]) -> str:
    """A shell command for the master that prints the names whose ip:port accepts a TCP connection."""
    checks = [f"timeout 1 bash -c {shlex.quote(f'</dev/tcp/{ip}/{port}')} 2>/dev/null && echo {shlex.quote(name)}"
              for name, (ip, port) in sorted(targets.items())]
    return "; ".join(checks) + "; true"


def port_prober(s: "MasterSession", ports: dict[str, int]):
    """``accepting`` for wait_healthy: one SSH command per round asks every pending container's port."""
    def accepting(names: list[str]) -> set[str]:
        targets = {}
        for name in names:
            ip = ((s.docker.api.inspect_container(name)["NetworkSettings"]["Networks"].get(svc.NETWORK) or {})
                  .get("IPAddress"))
            if ip and ports.get(name):
                targets[name] = (ip, ports[name])
        if not targets:
            return set()
        out = s.conn.run(probe_script(targets), hide=True, warn=True).stdout
        return {line.strip() for line in out.splitlines()} & set(targets)
    return accepting


# ---- seed -----------------------------------------------------------------------------

def seed_node(project) -> list[str]:
    """`invoke node.seed`: seed the master, so that it needs no registry to start."""
    with MasterSession(project) as s:
        loaded = seed(s, project)
    project.reporter.info(f"{project.env.master.name} holds {', '.join(seed_tags(project.env))}"
                          f" ({len(loaded)} loaded, {len(seed_tags(project.env)) - len(loaded)} already there)")
    return loaded
