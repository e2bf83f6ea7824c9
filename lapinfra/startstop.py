"""The infrastructure's own commands on the master: start, stop, and seed it.

- stop:   remove every ``infra_*`` container (selected through the Docker API).
- start:  start without stopping: the swarm, the registry, then pull the release's
          images from it and start the other containers, wait for the ones that
          changed, bring the apps back and register the nodes' names where missing
          or wrong (phases.startup_phases). Reads the release record on the node, so
          it works from the node's state alone (and the images the node keeps itself,
          see seed). A deploy walks the same phases after writing its release record.
- seed:   `invoke node.seed`: the first installation, the base, registry and
          backup images carried from the workstation (phases.seed).

The phases these walk, and what each applies, are lapinfra/phases.py's.
"""
from __future__ import annotations

from . import records, services as svc
from .backuptool import recover_interrupted
from .phases import Container, Target, apply_phases, ensure_infra_network, seed, seed_tags, started, startup_phases
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
    """Start ``release``'s containers, wait until the ones that changed serve, bring the applications
    back and register the nodes' names (phases.startup_phases); what was done to each service's
    container (``executor``: the command's, which records each action)."""
    ensure_infra_network(s.docker)
    phases = startup_phases(s.env)
    done = apply_phases(s, Target(s.p, release, s.registry_host), phases, executor or Executor(reporter, s))
    changed = started(done)
    return {p.service.name: changed.get(p.service.container, "kept") for p in phases if isinstance(p, Container)}


# ---- seed -----------------------------------------------------------------------------

def seed_node(project) -> list[str]:
    """`invoke node.seed`: seed the master, so that it needs no registry to start."""
    with MasterSession(project) as s:
        loaded = seed(s, project)
    project.reporter.info(f"{project.env.master.name} holds {', '.join(seed_tags(project.env))}"
                          f" ({len(loaded)} loaded, {len(seed_tags(project.env)) - len(loaded)} already there)")
    return loaded
