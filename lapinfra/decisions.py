"""A deploy's decisions: the node's facts and the desired state in, the actions out.

Pure functions, no Docker and no SSH (tests/unit/test_decisions.py: a table per decision,
no-op rows expecting no action). Each phase of a deploy (lapinfra/phases.py) applies what
they return through lapinfra/executor.py, and `invoke plan` (lapinfra/promote.py) prints the
very same list, deciding each phase on the facts as the earlier ones leave them (`after`).
"""
from __future__ import annotations

from typing import Mapping

from .actions import (ChangeContainer, InitSwarm, JoinNetwork, LoadImage, PullImage, PushGit, PushImage, RegisterName,
                      RemoveFile, RestoreApp, TagImage, WriteFile, WriteRelease)
from .facts import ContainerState, GitFacts, NodeFacts
from .records import Release
from .services import NETWORK, SPEC_LABEL


# ---- files (config, each service's secrets, the registry CA) ---------------------------

def sha256(data: bytes) -> str:
    import hashlib

    return hashlib.sha256(data).hexdigest()


def file_actions(folder: str, files: Mapping[str, bytes], remote: Mapping[str, str], mode: int = 0o644) -> list:
    """Make ``folder`` hold exactly ``files`` (relative path -> content), given ``remote``
    (relative path -> sha256 of what is there): write each file that differs, remove each extra one."""
    writes = [WriteFile(folder, rel, mode, data) for rel, data in sorted(files.items()) if remote.get(rel) != sha256(data)]
    removes = [RemoveFile(folder, rel) for rel in sorted(set(remote) - set(files))]
    return writes + removes


def folders_actions(desired: Mapping[str, tuple[Mapping[str, bytes], int]], remote: Mapping[str, Mapping[str, str]]) -> list:
    """file_actions of each folder of ``desired`` (folder -> (files, mode)), in its order."""
    return [a for folder, (files, mode) in desired.items() for a in file_actions(folder, files, remote.get(folder, {}), mode)]


# ---- seeding: the images the master keeps itself -----------------------------------------

def seed_actions(images: Mapping[str, object], seeded: Mapping[str, str]) -> list[LoadImage]:
    """``images`` (tag -> the workstation's image) the node's engine lacks or holds as another id."""
    return [LoadImage(tag, image.id, image) for tag, image in sorted(images.items()) if seeded.get(tag) != image.id]


# ---- images into the node's registry -------------------------------------------------------

def present_images(record: Release | None) -> dict[str, str]:
    """Image id -> its repository in the node's registry, of the release record ``record`` (None: none)."""
    return {image.id: image.repository for image in (record.images.values() if record else ())}


def push_decisions(images: dict, release: str, present: dict[str, str], in_registry) -> dict[str, tuple]:
    """What getting each image of ``release`` into the node's registry takes: ("have",), ("tag", source)
    (the same image id is there under another release's name), or ("push",). ``present``: image id ->
    repository of the node's current release; ``in_registry(repository)`` asks the registry."""
    out = {}
    for name, image in images.items():
        repository = f"infra/{release}/{name}"
        source = present.get(image.id)
        if in_registry(repository):
            out[name] = ("have",)
        elif source and source != repository and in_registry(source):
            out[name] = ("tag", source)
        else:
            out[name] = ("push",)
    return out


def image_actions(images: dict, release: str, current: Release | None, manifests) -> list:
    """The tags in the registry first (quick, no upload), then the pushes, each in ``images``' order.
    A push mounts the layers of the running release's image of the same name when the registry has it."""
    tags, pushes = [], []
    for name, decision in push_decisions(images, release, present_images(current), manifests.__contains__).items():
        repository, image = f"infra/{release}/{name}", images[name]
        if decision[0] == "tag":
            tags.append(TagImage(name, decision[1], repository, image.id, image))
        elif decision[0] == "push":
            running = current.images.get(name) if current else None
            layers_from = running.repository if running and running.repository in manifests else ""
            pushes.append(PushImage(name, repository, image.id, image, layers_from))
    return tags + pushes


# ---- the release record, and the master's engine pulling the release's images ---------------

def release_actions(current: Release | None, record: Release) -> list[WriteRelease]:
    """Write ``record`` unless the node holds this very record (``current``; a deploy's record
    names who deployed it and when, so each deploy writes its own)."""
    return [] if current == record else [WriteRelease(record.release, record)]


def pull_actions(refs: Mapping[str, str], record: Release, held: Mapping[str, str]) -> list[PullImage]:
    """The images of ``record`` (``refs``: image name -> its reference in the node's registry) that
    the master's engine does not hold as the id the record names (``held``: reference -> id)."""
    return [PullImage(name, ref, record.images[name].id) for name, ref in refs.items()
            if held.get(ref) != record.images[name].id]


# ---- containers -------------------------------------------------------------------------

def container_action(status: str | None, spec: str | None, wanted: str) -> str:
    """What one container needs (facts in, action out; reconcile does it, plan shows it):
    "create" (``status`` None: there is none), "keep" (its spec label ``spec`` is ``wanted``
    and it runs, or a snapshot holds it paused for a moment and unpauses it itself: starting
    it would be refused), "start" (the same spec, stopped) or "recreate" (another spec)."""
    if status is None:
        return "create"
    if spec != wanted:
        return "recreate"
    return "keep" if status in ("running", "paused") else "start"


def container_change(state: ContainerState | None, kwargs: dict) -> ChangeContainer | None:
    """The action for one container of run arguments ``kwargs`` (docker run's, with the spec label); None: keep it."""
    wanted = kwargs["labels"][SPEC_LABEL]
    verb = container_action(state.status if state else None, state.spec if state else None, wanted)
    return None if verb == "keep" else ChangeContainer(kwargs["name"], verb, wanted, kwargs)


def container_actions(wanted: list[dict], containers: Mapping[str, ContainerState]) -> list[ChangeContainer]:
    """container_change of each of ``wanted`` (run arguments, in start order) whose container needs one."""
    changes = [container_change(containers.get(kwargs["name"]), kwargs) for kwargs in wanted]
    return [c for c in changes if c is not None]


def network_actions(container: str, state: ContainerState | None, networks) -> list[JoinNetwork]:
    """The further ``networks`` the container (its ``state`` once its own action is applied) is not on."""
    held = state.networks if state else frozenset()
    return [JoinNetwork(container, network) for network in networks if network not in held]


# ---- the applications brought back ------------------------------------------------------------

def restore_actions(configured, recorded: Mapping[str, str], services) -> list[RestoreApp]:
    """The applications of apps/ (``configured``) that records.APPS records (``recorded``: name ->
    image) and the swarm lacks (``services``: the names it has), created again from their recorded image."""
    return [RestoreApp(name, image) for name, image in sorted(recorded.items())
            if name in configured and name not in services]


# ---- the facts once actions are applied --------------------------------------------------------

def git_actions(git: GitFacts, branch: str, force: bool = False, late: bool = False) -> list[PushGit]:
    """The deployed commit into the target's repository, unless its branch and tag hold it already.
    Before the containers change, only where the git server runs; ``late`` (once they started: a
    first deploy's git server runs then) in any case. The branch is pushed over (``over``) only
    with ``force``; without it a branch that would lose commits refused the deploy before any change."""
    if git.branch == git.head and git.tagged:
        return []
    if not git.up and not late:
        return []
    return [PushGit(git.head, branch, git.branch if git.drops and force else None)]


def after(node: NodeFacts, actions) -> NodeFacts:
    """The facts as applying ``actions`` leaves them: plan decides each phase of a deploy on the
    facts the earlier phases leave (it reads them all before any phase is applied)."""
    files = {folder: dict(held) for folder, held in node.files.items()}
    containers, seeded, pulled = dict(node.containers), dict(node.seeded), dict(node.pulled)
    manifests, release, services, names = set(node.manifests), node.release, set(node.services), dict(node.names)
    for action in actions:
        if isinstance(action, WriteFile):
            files.setdefault(action.folder, {})[action.path] = sha256(action.data)
        elif isinstance(action, RemoveFile):
            files.get(action.folder, {}).pop(action.path, None)
        elif isinstance(action, LoadImage):
            seeded[action.tag] = action.id
        elif isinstance(action, (PushImage, TagImage)):
            manifests.add(action.repository)
        elif isinstance(action, WriteRelease):
            release = action.record
        elif isinstance(action, PullImage):
            pulled[action.reference] = action.id
        elif isinstance(action, ChangeContainer):
            # started: on the networks it was on; created anew: on the node's infra network only
            prior = containers.get(action.container)
            kept = prior.networks if action.verb == "start" and prior else frozenset({NETWORK})
            containers[action.container] = ContainerState("running", action.spec, kept)
        elif isinstance(action, JoinNetwork):
            prior = containers[action.container]
            containers[action.container] = ContainerState(prior.status, prior.spec, prior.networks | {action.network})
        elif isinstance(action, InitSwarm):      # a new swarm has no services
            services.clear()
        elif isinstance(action, RestoreApp):
            services.add(action.name)
        elif isinstance(action, RegisterName):
            names[action.name] = [action.address]
        elif isinstance(action, PushGit) and node.git is not None:
            node = node.with_(git=GitFacts(action.commit, up=True, branch=action.commit, tagged=True))
    return node.with_(files=files, containers=containers, seeded=seeded, pulled=pulled, manifests=frozenset(manifests),
                      release=release, services=frozenset(services), names=names)
