"""A deploy's phases on the master node, and what each applies (lapinfra/deploy.py walks them).

A deploy is one list of phases (deploy_phases): upload the rendered config and
secrets, seed the images the master keeps itself, start the registry, push the
images it lacks as ``infra/<commit>/<name>`` through an SSH tunnel, the git push, write the
release record, then start: the workers' swarm, the registry, the master's pulls from it,
every other container, the health checks of those that changed, the applications and the
nodes' names (startup_phases, which lapinfra/startstop.py's start walks too).
Containers whose spec (image id, config, secrets, ports, mounts) is unchanged keep
running. Each phase decides on the node's facts (lapinfra/decisions.py, pure: plan
decides them all on facts read at once) and has the one executor apply its actions
(lapinfra/executor.py, which records them).

The seed phase is also the first installation on its own (``seed``): the base,
registry and backup images carried from the workstation (``docker save | docker
load``), each only when the node's copy differs; `invoke node.seed` and dr.recover
take it too.
"""
from __future__ import annotations

import contextlib
import hashlib
import shlex
import time
from dataclasses import dataclass, field

from . import apps, ddns, decisions, facts, gitpush, records, services as svc, swarm
from .actions import ChangeContainer, WriteRelease
from .decisions import container_action, present_images, push_decisions  # noqa: F401  (plan and tests name them here)
from .errors import LapinfraError
from .executor import Executor
from .images import built_image
from .nodes import backup_known_hosts, write_backup_known_hosts
from .records import Release
# the session and the registry client, where they were before lapinfra/session.py and lapinfra/registry.py
from .registry import MANIFEST_V2, copy_in_registry, push, push_image, registry_has, wait_registry  # noqa: F401
from .session import ASIDE, COMMAND_SECONDS, MasterSession, named_networks, write_file  # noqa: F401


# ---- what starting a container takes ----------------------------------------------------

def _require_seeded(s: MasterSession, ref: str) -> None:
    """An image the node keeps itself must be there: the engine would otherwise try
    to pull it from Docker Hub, which a node that never reached a registry cannot."""
    import docker.errors

    try:
        s.docker.images.get(ref)
    except docker.errors.ImageNotFound:
        raise LapinfraError(f"{ref} is not on {s.env.master.name}: `invoke node.seed --env={s.env.name}` carries it "
                            "there from this machine (docker save | docker load)") from None


def ensure_infra_network(client) -> None:
    """The node's network on which infrastructure containers reach each other by name."""
    import docker.types

    for net in named_networks(client, svc.NETWORK):
        subnets = [c.get("Subnet") for c in (net.attrs.get("IPAM", {}).get("Config") or [])]
        if str(svc.NETWORK_SUBNET) in subnets:
            return
        net.reload()
        if net.containers:
            raise LapinfraError(f"network {svc.NETWORK} on the node has subnets {subnets}, not {svc.NETWORK_SUBNET}: `invoke stop` first")
        net.remove()
    ipam = docker.types.IPAMConfig(pool_configs=[docker.types.IPAMPool(subnet=str(svc.NETWORK_SUBNET))])
    client.networks.create(svc.NETWORK, driver="bridge", ipam=ipam, labels={"lapinfra": "infra"})


def release_refs(target: "Target") -> dict[str, str]:
    """The registry reference of each image of the target's release the node pulls (not the ones it keeps itself)."""
    return {service.image: f"{target.registry_host}/{target.record.images[service.image].repository}:latest"
            for service in svc.services(target.project.env) if not service.local_image}


def refuse_unreleased(client, release: Release, refs: dict[str, str]) -> None:
    """What runs is what was released: each ``refs`` (image name -> the registry reference the
    master's engine pulled) must be the image id the release record names; otherwise nothing
    of it may start (whoever can push to the registry could have replaced the tag)."""
    import docker.errors

    refused = []
    for name, ref in sorted(refs.items()):
        wanted = release.images[name].id
        try:
            got = client.images.get(ref).id
        except docker.errors.ImageNotFound:
            got = "none"
        if got != wanted:
            refused.append(f"{ref} is image {got}, release {release.release} recorded {wanted}")
    if refused:
        raise LapinfraError("refused to start images the release did not record: " + "; ".join(refused)
                            + ". The node's registry holds another image under the release's name (pushed over it "
                            "since the deploy?); nothing was started from it: see docs/security.md, \"What runs is "
                            "what was released\"")


def reconcile(client, kwargs: dict, reporter, executor: Executor | None = None) -> str:
    """Create, start, keep or recreate one container (decisions.container_change on its facts, applied
    by ``executor`` when given, which records it); return which was done: created, recreated, started, kept."""
    name = kwargs["name"]
    state = facts.read_containers(client, [name]).get(name)
    change = decisions.container_change(state, kwargs)
    if change is None:
        reporter.info(f"{name}: unchanged, kept running" + (" (paused by a snapshot)" if state.status == "paused" else ""))
        return "kept"
    (executor or Executor(reporter, client=client)).apply([change])
    return change.done


# ---- what a deploy carries to the node ------------------------------------------------

def config_files(project) -> dict[str, bytes]:
    rendered = project.build_dir / "rendered"
    return {str(p.relative_to(rendered)): p.read_bytes() for p in sorted(rendered.rglob("*")) if p.is_file()}


def config_hashes(project, files: dict[str, bytes], pending: dict[str, bytes] | None = None) -> dict[str, str]:
    """Each service's config hash: its rendered files and its secrets (``pending``: secret name ->
    the content it will have once the deploy writes it, for a plan that writes nothing)."""
    pending = pending or {}
    out = {}
    for service in svc.services(project.env):
        h = hashlib.sha256()
        for rel, data in sorted(files.items()):
            if rel.startswith(service.image + "/"):
                h.update(rel.encode() + b"\0" + data)
        for name in sorted(service.secrets.values()):
            h.update(pending[name] if name in pending else project.secrets.path(name).read_bytes())
        out[service.name] = h.hexdigest()[:16]
    return out


def built_images(project) -> dict:
    """The workstation's built image of every service, by image name."""
    return {service.image: built_image(project.docker, f"infra/{service.image}") for service in svc.services(project.env)}


def pending_secrets(project, git_host_key: str | None = None) -> dict[str, bytes]:
    """The secrets a deploy writes on the workstation itself, as it will write them: the backup
    node's pinned host key (backup_known_hosts) and the git server's (git_known_hosts, from
    ``git_host_key`` read on the master when given and valid, else as it is). Nothing is written."""
    known = project.secrets.path(GIT_KNOWN_HOSTS)
    pinned = git_known_hosts_line(git_host_key or "")
    return {"backup_known_hosts": backup_known_hosts(project).encode(),
            GIT_KNOWN_HOSTS: pinned.encode() if pinned else (known.read_bytes() if known.exists() else b"")}


def release_record(project, release: str, images: dict, files: dict[str, bytes],
                   pending: dict[str, bytes] | None = None) -> Release:
    """The record of ``release`` (writes nothing: the secrets the deploy writes first are hashed
    as they will be, pending_secrets)."""
    pending = pending_secrets(project) if pending is None else pending
    return records.new_release(release, {n: img.id for n, img in images.items()}, config_hashes(project, files, pending))


# ---- readiness: a started container serves ----------------------------------------------

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


# ---- the phases of a deploy: each reads its facts, decides, has the executor apply --------------

@dataclass
class Target:
    """What the node is to hold, on which each phase decides: the release record (what runs: each
    image by id, each service's config hash) and, for a deploy, what the workstation carries there."""
    project: object
    record: Release | None = None
    registry_host: str = ""
    images: dict = field(default_factory=dict)        # image name -> the workstation's image, for the registry
    files: dict[str, bytes] | None = None              # the rendered config (None: not uploaded)
    seeds: dict = field(default_factory=dict)          # tag -> the workstation's image the master keeps itself
    pending: dict[str, bytes] | None = None            # plan: the secrets as the deploy will write them
    force: bool = False                                # a deploy with --force: its git push may drop the target's commits


class Phase:
    """One phase of a deploy. ``decide`` turns the node's facts and the target into the phase's actions
    (pure: plan calls it on facts read at once); ``apply`` reads the facts the phase needs right before
    deciding, because it needs the earlier phases applied, and has the executor apply (and record)
    them, with what the phase does besides that is no change of the node's state (a wait, a check)."""
    name = ""

    def decide(self, target: Target, node: facts.NodeFacts) -> list:
        raise NotImplementedError

    def read(self, s: MasterSession, target: Target) -> facts.NodeFacts:
        raise NotImplementedError

    def apply(self, s: MasterSession, target: Target, executor: Executor) -> None:
        executor.apply(self.decide(target, self.read(s, target)))


class Upload(Phase):
    """The rendered config (when the target carries it), the secrets of each of ``services``
    (default: all), the registry's CA for the master's engine."""
    name = "upload"

    def __init__(self, services=None):
        self.services = services

    def desired(self, target: Target) -> dict:
        services = svc.services(target.project.env) if self.services is None else self.services
        return uploaded_folders(target.project, target.files, services, target.registry_host, target.pending)

    def decide(self, target, node):
        return decisions.folders_actions(self.desired(target), node.files)

    def read(self, s, target):
        return facts.NodeFacts(files=facts.read_files(s, self.desired(target)))

    def apply(self, s, target, executor):
        project = target.project
        with (executor.reporter.step("upload config, secrets and the registry CA") if target.files is not None
              else contextlib.nullcontext()):
            pin_local_secrets(s, project, svc.services(project.env) if self.services is None else self.services)
            super().apply(s, target, executor)
            if target.files is not None:     # the git host key it pinned counts for infra_cd
                target.record = target.record.with_config(config_hashes(project, target.files))


class Seed(Phase):
    """The images the master keeps itself, carried from the workstation (``docker save | docker load``)."""
    name = "seed"

    def decide(self, target, node):
        return decisions.seed_actions(target.seeds, node.seeded)

    def read(self, s, target):
        return facts.NodeFacts(seeded=facts.read_images(s.docker, target.seeds))


class Images(Phase):
    """The release's images into the node's registry: tagged there when it holds the same image
    under another release's name, pushed otherwise."""
    name = "images"

    def decide(self, target, node):
        return decisions.image_actions(target.images, target.record.release, node.release, node.manifests)

    def read(self, s, target):
        current = records.read_release(s)
        repositories = facts.candidates(target.images, target.record.release, current)
        return facts.NodeFacts(release=current, manifests=facts.read_manifests(s, repositories))

    def apply(self, s, target, executor):
        actions = self.decide(target, self.read(s, target))
        for name in [n for n in target.images if n not in {a.name for a in actions}]:
            executor.reporter.info(f"infra/{target.record.release}/{name}: already in the node's registry")
        executor.apply(actions)


class RecordRelease(Phase):
    """The target's release record becomes the node's: what `start` starts from then on."""
    name = "release record"

    def decide(self, target, node):
        return decisions.release_actions(node.release, target.record)

    def read(self, s, target):
        return facts.NodeFacts(release=records.read_release(s))


class Pulls(Phase):
    """The master's engine pulls the release's images it lacks from the node's registry (several at
    once), each checked to be the image the release names (refuse_unreleased)."""
    name = "pulls"

    def decide(self, target, node):
        return decisions.pull_actions(release_refs(target), target.record, node.pulled)

    def read(self, s, target):
        return facts.NodeFacts(pulled=facts.read_images(s.docker, release_refs(target).values()))

    def apply(self, s, target, executor):
        done = executor.apply(self.decide(target, self.read(s, target)))
        refuse_unreleased(s.docker, target.record, {action.name: action.reference for action in done})


class Swarm(Phase):
    """The workers' swarm (lapinfra/swarm.py): the master manages it, each running worker joins it.
    Applied by swarm.apply, which reaches each worker's engine, and recorded by the executor."""
    name = "swarm"

    def decide(self, target, node):
        return swarm.decide(target.project.env, node.swarm, swarm.registry_ca(target.project))

    def read(self, s, target):
        return facts.NodeFacts(swarm=swarm.read(target.project, s.docker))

    def apply(self, s, target, executor):
        node = self.read(s, target)
        applied, _ = swarm.apply(target.project, s.docker, node.swarm, self.decide(target, node))
        executor.record(applied)


class Container(Phase):
    """One infrastructure container, reconciled by its spec hash: created, recreated, started or kept.
    Its image must be the release's (the node's own copy for the registry and the backup tool); the
    proxy joins the applications' network; once the registry answers, the phases after it use it."""

    def __init__(self, service: svc.Service):
        self.service = service
        self.name = service.container

    def run_kwargs(self, target: Target) -> dict:
        service, record = self.service, target.record
        image = record.images[service.image]
        ref = f"infra/{service.image}" if service.local_image else f"{target.registry_host}/{image.repository}:latest"
        return svc.run_kwargs(service, ref, target.project.env, record.config.get(service.name, ""), image.id)

    def decide(self, target, node):
        changes = decisions.container_actions([self.run_kwargs(target)], node.containers)
        state = decisions.after(node, changes).containers.get(self.service.container)
        return changes + decisions.network_actions(self.service.container, state, self.service.networks)

    def read(self, s, target):
        return facts.NodeFacts(containers=facts.read_containers(s.docker, [self.service.container]))

    def apply(self, s, target, executor):
        service, kwargs = self.service, self.run_kwargs(target)
        if service.local_image:
            _require_seeded(s, kwargs["image"])
        else:
            refuse_unreleased(s.docker, target.record, {service.image: kwargs["image"]})
        reconcile(s.docker, kwargs, executor.reporter, executor)     # its facts, read right before
        state = self.read(s, target).containers.get(service.container)
        executor.apply(decisions.network_actions(service.container, state, service.networks))
        if service.name == "registry":
            wait_registry(s)


class Apps(Phase):
    """The applications whose swarm service is gone (a master rebuilt by dr.recover) created again from
    what records.APPS records, once the infrastructure serves. Their failure is a warning: the
    infrastructure runs, and the applications wait (`invoke app.status`)."""
    name = "apps"

    def decide(self, target, node):
        return decisions.restore_actions(target.project.env.apps, node.apps, node.services)

    def read(self, s, target):
        recorded = facts.read_apps(s)
        return facts.NodeFacts(apps=recorded, services=facts.read_services(s.docker, recorded))

    def apply(self, s, target, executor):
        import docker.errors

        try:
            for action in self.decide(target, self.read(s, target)):
                apps.restore(s, action, executor.reporter)
                executor.record([action])
        except (LapinfraError, docker.errors.DockerException) as exc:
            executor.reporter.warn(f"applications not brought back ({exc}); `invoke app.status --env={s.env.name}`")


class Names(Phase):
    """<node>.node.<domain> registered where the DNS server lacks a node's name or holds another
    address (ddns.register_nodes, which reads, decides and applies; its failure is a warning)."""
    name = "names"

    def decide(self, target, node):
        return ddns.name_actions(ddns.node_names(target.project), node.names)

    def read(self, s, target):
        return facts.NodeFacts(names=ddns.transfer(target.project, ddns.node_zone(target.project.env), ddns.NAMES_SECONDS))

    def apply(self, s, target, executor):
        executor.record(ddns.register_nodes(target.project) or [])


class GitPush(Phase):
    """The deployed commit into the target's infrastructure repository (lapinfra/gitpush.py): before
    the containers change, where the git server runs; else, ``late``, once the containers started (a
    first deploy starts the git server). The facts it decided on are the executor's (``found``)."""
    name = "git push"

    def __init__(self, late: bool = False):
        self.late = late

    def decide(self, target, node):
        return [] if node.git is None else decisions.git_actions(node.git, gitpush.BRANCH, target.force, self.late)

    def read(self, s, target):
        return facts.NodeFacts(git=gitpush.read(s, target.project))

    def apply(self, s, target, executor):
        earlier = executor.found.get(self.name)     # the deploy's check, or the early push's facts
        if self.late and earlier is not None and earlier.up:
            return          # the early push found the git server running and pushed: nothing is left to push
        node = facts.NodeFacts(git=earlier) if earlier is not None and not self.late else self.read(s, target)
        executor.found[self.name] = node.git
        if self.late and not node.git.up:
            executor.reporter.warn(f"git push: the git server on {s.env.master.name} does not run: "
                                   f"the deployed commit is not in its repository")
            return
        executor.apply(self.decide(target, node))


class HealthChecks(Phase):
    """Wait until each container the start created, recreated or started serves (wait_healthy): no
    action of its own, nothing to plan. Its containers are the executor's record of the start
    (``started``)."""
    name = "health checks"

    def decide(self, target, node):
        return []

    def apply(self, s, target, executor):
        changed = started(executor.applied)
        if changed:
            with executor.reporter.step(f"health checks of {len(changed)} started containers"):
                ports = {service.container: service_port(service) for service in svc.services(s.env)}
                wait_healthy(s.docker, list(changed), accepting=port_prober(s, ports))


def started(applied: list) -> dict[str, str]:
    """Container -> what a start did to it (created, recreated, started), from the actions ``applied``
    after the last release record written (a deploy's start, activate's) or all of them (a start
    from the node's own record)."""
    last = max((i for i, action in enumerate(applied) if isinstance(action, WriteRelease)), default=-1)
    return {action.container: action.done for action in applied[last + 1:] if isinstance(action, ChangeContainer)}


def release_phases(env) -> list[Phase]:
    """What a release needs on the node before its containers change: config and secrets, the
    master's own images, the registry running, the release's images in it."""
    return [Upload(), Seed(), Container(svc.by_name(env, "registry")), Images()]


def start_phases(env) -> list[Phase]:
    """Starting a release's containers, from its record alone: the swarm, where there are workers
    (before the proxy, which joins the applications' network), the registry, the pulls from it,
    then every other container in start order (services.services)."""
    registry, *others = [Container(service) for service in svc.services(env)]
    return [*([Swarm()] if env.workers else []), registry, Pulls(), *others]


def served_phases(env) -> list[Phase]:
    """What a start does once its containers serve: the applications brought back, where there
    are workers, and the nodes' names registered (the DNS server serves now)."""
    return [*([Apps()] if env.workers else []), Names()]


def startup_phases(env) -> list[Phase]:
    """Starting a release (startstop.start_services, a deploy's start): start_phases, the health
    checks of the containers they changed, served_phases."""
    return [*start_phases(env), HealthChecks(), *served_phases(env)]


def deploy_steps(env) -> list[tuple[str, list[Phase]]]:
    """A deploy's phases in its order, by the step a failure names: the release onto the node
    ("push images"), the git push, the release record and its start ("start containers"), the git
    push of a first deploy, once its git server runs (lapinfra/deploy.py walks them)."""
    return [("push images", release_phases(env)), ("git push", [GitPush()]),
            ("start containers", [RecordRelease(), *startup_phases(env)]), ("git push", [GitPush(late=True)])]


def deploy_phases(env) -> list[Phase]:
    """Every phase of a deploy in its order (deploy_steps). Plan decides them all on facts read at
    once; a deploy applies them one after the other, so plan and deploy walk this one list."""
    return [phase for _, phases in deploy_steps(env) for phase in phases]


def apply_phases(s: MasterSession, target: Target, phases: list[Phase], executor: Executor) -> list:
    """Apply each phase in order, each on the facts it reads once the earlier ones are applied; the actions applied."""
    first = len(executor.applied)
    for phase in phases:
        phase.apply(s, target, executor)
    return executor.applied[first:]


def read_facts(s: MasterSession, target: Target) -> facts.NodeFacts:
    """Every fact the phases of a deploy decide on, read at once (`invoke plan`; a registry that does
    not answer holds nothing, as on a first deploy; so does a DNS server): the master's (facts.read),
    the nodes' names in the DNS, the swarm's and the applications'."""
    env = target.project.env
    node = facts.read(s, containers=[service.container for service in svc.services(env)],
                      folders=Upload().desired(target), images=target.images, release=target.record.release,
                      seed_tags=target.seeds, pulls=release_refs(target).values())
    node = node.with_(git=GitPush().read(s, target).git)
    try:
        node = node.with_(names=Names().read(s, target).names)
    except ddns.Unreachable:           # no DNS server yet (a first deploy): it holds no name
        pass
    except LapinfraError as exc:       # the deploy would only warn too
        target.project.reporter.warn(f"the DNS server's node names not read ({exc}): each is planned as missing")
    if not env.workers:
        return node
    found, recorded = swarm.read(target.project, s.docker), facts.read_apps(s)
    # a master that manages no swarm has no services (and its engine answers no question about them)
    services = facts.read_services(s.docker, recorded) if found.master.state == "manager" else frozenset()
    return node.with_(swarm=found, apps=recorded, services=services)


def planned_actions(target: Target, node: facts.NodeFacts, phases: list[Phase]) -> list:
    """Each phase's actions in order (`invoke plan`), decided on the facts read at once as the earlier
    phases' actions leave them (decisions.after)."""
    planned = []
    for phase in phases:
        actions = phase.decide(target, node)
        node = decisions.after(node, actions)
        planned += actions
    return planned


def uploaded_folders(project, files: dict[str, bytes] | None, services, registry_host: str | None,
                     pending: dict[str, bytes] | None = None) -> dict[str, tuple[dict[str, bytes], int]]:
    """What the node's folders must hold, folder -> (relative path -> content, mode), in upload order:
    the rendered config (``files``; None: left out), each service's secrets (0600), the registry's
    CA for the master's engine (``registry_host``; None: left out)."""
    pending = pending or {}

    def secret(name: str) -> bytes | None:
        if name in pending:
            data = pending[name]
        elif name in OPTIONAL_SECRETS and not project.secrets.path(name).exists():
            data = b""
        else:
            data = project.secrets.path(name).read_bytes()
        return None if name in OPTIONAL_SECRETS and not data else data   # handed over only when known

    out = {} if files is None else {svc.ENV_DIR: (dict(files), 0o644)}
    for service in services:
        if service.secrets:
            held = {dest: secret(src) for dest, src in service.secrets.items()}
            out[f"{svc.SECRETS_DIR}/{service.name}"] = ({d: v for d, v in held.items() if v is not None}, 0o600)
    if registry_host is not None:
        out[f"/etc/docker/certs.d/{registry_host}"] = ({"ca.crt": project.secrets.path("ca.crt").read_bytes()}, 0o644)
    return out


def seed_images(project, tags: list[str] | None = None) -> dict:
    """tag -> the workstation's image of each image the master keeps itself (seed_tags)."""
    return {tag: built_image(project.docker, tag) for tag in (tags or seed_tags(project.env))}


# The git server's host key as the CD server's known_hosts (images/cd/entrypoint.sh pins
# /run/secrets/git.known_hosts when it is there). Every deploy reads the key on the master;
# on a master without one (a first deploy) it writes the git server's ed25519 key first.
GIT_HOST_KEY = facts.GIT_HOST_KEY
GIT_KNOWN_HOSTS = "git_known_hosts"
GIT_HOST = "infra_git"          # the CD server's repository URL: ssh://git@infra_git:22/<repository>
OPTIONAL_SECRETS = (GIT_KNOWN_HOSTS,)   # handed over only when known (not empty)


def git_known_hosts_line(public_key: str, host: str = GIT_HOST, port: int = 22) -> str:
    """One known_hosts line for an OpenSSH public key file's content ("" for anything else)."""
    parts = public_key.split()
    if len(parts) < 2 or not (parts[0].startswith("ssh-") or parts[0].startswith("ecdsa-")):
        return ""
    import base64
    import binascii

    try:
        base64.b64decode(parts[1], validate=True)
    except binascii.Error:
        return ""
    return f"{host if port == 22 else f'[{host}]:{port}'} {parts[0]} {parts[1]}\n"


def write_git_known_hosts(project, public_key: str | None) -> bool:
    """secrets/<env>/git_known_hosts from the git server's public key (None: not made yet, an
    empty file); True when its content changed."""
    content = git_known_hosts_line(public_key or "")
    path = project.secrets.path(GIT_KNOWN_HOSTS)
    if path.exists() and path.read_text() == content:
        return False
    project.secrets._write(GIT_KNOWN_HOSTS, content)
    return True


def new_git_host_key() -> tuple[bytes, bytes]:
    """(private, public) OpenSSH ed25519 host key for a git server that has none yet."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = ed25519.Ed25519PrivateKey.generate()
    private = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption())
    public = key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return private, public + b" infra_git\n"


def pin_git_host_key(s: MasterSession, project) -> bool:
    """The git container's host key on the master into git_known_hosts; True when it changed.
    A master whose git server has not started yet (a first deploy) gets its ed25519 host key
    now, made here and written only there (the entrypoint keeps a key it finds), so the CD
    server checks the key strictly from the first deploy on, never trusting a first sight."""
    public = facts.read_git_host_key(s)
    private = GIT_HOST_KEY.removesuffix(".pub")
    # a private key without its .pub (the git server remakes the .pub at its next start) is
    # kept, never replaced under a running sshd: pinned at the deploy after that start
    if not git_known_hosts_line(public) and not s.run(f"cat {private} > /dev/null", warn=True).ok:
        key, made = new_git_host_key()
        s.put(private, key, mode=0o600)
        s.put(GIT_HOST_KEY, made, mode=0o644)
        public = made.decode()
    return write_git_known_hosts(project, public)


def pin_local_secrets(s: MasterSession, project, services) -> None:
    """The secrets the workstation writes before an upload: the backup node's pinned host key,
    and (when a service takes it) the git server's, read on the master (pin_git_host_key)."""
    write_backup_known_hosts(project)
    if any(GIT_KNOWN_HOSTS in service.secrets.values() for service in services):
        pin_git_host_key(s, project)


def upload_secrets(s: MasterSession, project, services, executor: Executor | None = None) -> list:
    """Each service's secrets into /data/secrets/<name> (0600), and the registry CA for the engine;
    the actions applied."""
    target = Target(project, registry_host=s.registry_host)
    return apply_phases(s, target, [Upload(services)], executor or Executor(project.reporter, s))


def seed_tags(env) -> list[str]:
    """What a master keeps in its own engine, carried from the workstation: the base
    image, and the images of the services that do not come from the registry (the
    registry itself; the backup tool, which a brand-new master restores with)."""
    return [env.base_image.tag, *sorted({f"infra/{service.image}" for service in svc.services(env) if service.local_image})]


def seed(s: MasterSession, project, tags: list[str] | None = None, executor: Executor | None = None) -> list[str]:
    """The first installation (``docker save | ssh node docker load``): the
    images of ``tags`` (default: seed_tags) from the workstation's engine onto the
    master's, each only when the node's copy differs. Returns the tags loaded.
    deploy, dr.recover and `invoke node.seed` all take this path."""
    target = Target(project, seeds=seed_images(project, tags))
    return [a.tag for a in apply_phases(s, target, [Seed()], executor or Executor(project.reporter, s))]
