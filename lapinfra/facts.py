"""The node's state as a deploy needs it (pyinfra's "facts"), read through a MasterSession.

Each reader asks once and changes nothing (no folder is made, nothing is written); the
decisions (lapinfra/decisions.py) take a `NodeFacts` and the desired state and return the
actions. A deploy reads the facts of each phase right before deciding it, since a later
phase needs the earlier one applied (the registry must run before its manifests can be
asked); `invoke plan` reads them all at once (a registry that does not answer yet holds
nothing, as on a first deploy).
"""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from typing import Mapping

from . import records, services as svc
from .records import Release
from .registry import registry_has
from .session import ASIDE


@dataclass(frozen=True)
class ContainerState:
    """One container on the master: its status, the spec label lapinfra gave it (None: none), the
    networks it is on."""
    status: str
    spec: str | None = None
    networks: frozenset[str] = frozenset()


@dataclass(frozen=True)
class SwarmMember:
    """One entry of the manager's list of swarm nodes."""
    id: str
    hostname: str
    state: str                # ready, down, ...


@dataclass(frozen=True)
class SwarmNode:
    """One node's engine as the swarm sees it. ``state``: "manager" (manages a swarm: the master's
    wanted state), "worker" (a worker of the master's swarm), "none" (in no swarm), "other" (in
    another swarm, or pending, or in error), "not running", "unreachable" (``error`` says why)."""
    name: str
    state: str
    active: bool = True       # the master: its availability is active (not drained)
    address: str = ""         # a worker: the address it advertises
    ca: str | None = None     # a worker: sha256 of the registry CA its engine trusts (None: none)
    error: str = ""


@dataclass(frozen=True)
class GitFacts:
    """The target's infrastructure repository on its git server (lapinfra/gitpush.py), beside the
    commit a deploy pushes there."""
    head: str                     # the commit deployed: this checkout's HEAD
    up: bool = False              # its git server runs (not yet on a first deploy)
    branch: str | None = None     # the commit its branch is at (None: no such branch yet)
    tagged: bool = False          # its tag deployed-<head> is there
    drops: bool = False           # moving the branch to head would drop commits (not a fast-forward)
    url: str = ""                 # the repository the facts were read from (for messages)


@dataclass(frozen=True)
class SwarmFacts:
    """The master's swarm and each worker's engine (lapinfra/swarm.py reads them: it reaches the workers)."""
    master: SwarmNode
    workers: tuple[SwarmNode, ...] = ()
    members: tuple[SwarmMember, ...] = ()     # the manager's entries (none when the master manages no swarm)
    apps_network: bool = False                # the applications' overlay network is there


@dataclass(frozen=True)
class NodeFacts:
    release: Release | None = None                              # records.RELEASE (None: nothing deployed)
    containers: Mapping[str, ContainerState] = field(default_factory=dict)   # name -> state; absent: none
    files: Mapping[str, Mapping[str, str]] = field(default_factory=dict)     # folder -> relative path -> sha256
    manifests: frozenset[str] = frozenset()                     # repositories the registry holds (of those asked)
    seeded: Mapping[str, str] = field(default_factory=dict)     # tag -> image id in the master's engine
    pulled: Mapping[str, str] = field(default_factory=dict)     # the release's registry reference -> id there too
    swarm: SwarmFacts | None = None                             # None: no workers, no swarm
    apps: Mapping[str, str] = field(default_factory=dict)       # records.APPS: app name -> its recorded image
    services: frozenset[str] = frozenset()                      # the recorded apps whose swarm service is there
    names: Mapping[str, list[str]] = field(default_factory=dict)   # node.<domain>: name -> its addresses there
    git: GitFacts | None = None                                 # None: not asked (only a deploy pushes)

    def with_(self, **changes) -> "NodeFacts":
        return replace(self, **changes)


def read_containers(client, names) -> dict[str, ContainerState]:
    """The state of each container of ``names`` that exists."""
    import docker.errors

    out = {}
    for name in names:
        try:
            container = client.containers.get(name)
        except docker.errors.NotFound:
            continue
        networks = (container.attrs.get("NetworkSettings") or {}).get("Networks") or {}
        out[name] = ContainerState(container.status, container.labels.get(svc.SPEC_LABEL), frozenset(networks))
    return out


def hashes_command(folder: str) -> str:
    """sha256sum of every file below ``folder`` (nothing when there is no such folder), files being
    written aside (session.ASIDE) left out."""
    return (f"if [ -d {folder} ]; then cd {folder} && find . -name '{ASIDE}*' -prune -o -type f "
            f"-exec sha256sum {{}} +; fi")


# A line between two folders' listings in read_files' one command (no sha256sum line starts so).
FOLDER_MARK = "== lapinfra folder "


def read_files(s, folders) -> dict[str, dict[str, str]]:
    """folder -> relative path -> sha256 of each file below each folder of ``folders`` on the master,
    in one command (each folder's listing after a line FOLDER_MARK<folder>)."""
    folders = list(folders)
    if not folders:
        return {}
    listing = s.run("; ".join(f"echo '{FOLDER_MARK}{folder}'; {hashes_command(folder)}" for folder in folders)).stdout
    return split_listing(listing, folders)


def split_listing(listing: str, folders: list[str]) -> dict[str, dict[str, str]]:
    """read_files' output, folder by folder: relative path -> sha256."""
    out: dict[str, dict[str, str]] = {folder: {} for folder in folders}
    current = None
    for line in listing.splitlines():
        if line.startswith(FOLDER_MARK):
            current = out.setdefault(line[len(FOLDER_MARK):], {})
        elif line.strip() and current is not None:
            current[line.split(None, 1)[1].strip()[2:]] = line.split()[0]
    return out


MANIFEST_JOBS = 6    # the registry's answers asked at once (one by one, 12 took 0.56 s)


def read_manifests(s, repositories, missing_ok: bool = False) -> frozenset[str]:
    """The repositories of ``repositories`` the node's registry holds (tag latest). ``missing_ok``:
    a registry that does not answer (none running yet) holds nothing."""
    asked = list(dict.fromkeys(repositories))
    try:
        with ThreadPoolExecutor(max_workers=MANIFEST_JOBS) as pool:     # each a request through the tunnel
            return frozenset(r for r, held in zip(asked, pool.map(lambda r: registry_has(s, r), asked)) if held)
    except Exception:
        if missing_ok:
            return frozenset()
        raise


def read_images(client, tags) -> dict[str, str]:
    """tag -> image id of each of ``tags`` the master's engine holds."""
    import docker.errors

    out = {}
    for tag in tags:
        try:
            out[tag] = client.images.get(tag).id
        except docker.errors.ImageNotFound:
            pass
    return out


def read_apps(s) -> dict[str, str]:
    """The applications records.APPS records on the master: name -> the image their service runs."""
    return {name: entry["image"] for name, entry in sorted((s.read_json(records.APPS) or {}).items())}


def read_services(client, names) -> frozenset[str]:
    """The names of ``names`` that are a service of the swarm the master's engine manages."""
    import docker.errors

    found = set()
    for name in names:
        try:
            client.services.get(name)
        except docker.errors.NotFound:
            continue
        found.add(name)
    return frozenset(found)


GIT_HOST_KEY = f"{svc.DATA}/git/ssh/ssh_host_ed25519_key.pub"


def read_git_host_key(s) -> str:
    found = s.run(f"cat {GIT_HOST_KEY}", warn=True)
    return found.stdout if found.ok else ""


def candidates(images: Mapping, release: str, current: Release | None) -> list[str]:
    """The repositories whose manifests decide the images' pushes: each image's name in
    ``release``; for an image the current release holds by id, its name there; for one it holds
    another image of the same name, that one's (a push mounts its layers first)."""
    running = current.images if current else {}
    present = {image.id: image.repository for image in running.values()}
    out = [f"infra/{release}/{name}" for name in images]
    out += [present[image.id] for image in images.values() if image.id in present]
    out += [running[name].repository for name in images if name in running]
    return list(dict.fromkeys(out))


def read(s, *, containers=(), folders=(), images: Mapping | None = None, release: str = "", seed_tags=(),
         pulls=(), missing_ok: bool = True) -> NodeFacts:
    """Everything at once (plan): the release record, then each fact asked for."""
    current = records.read_release(s)
    return NodeFacts(
        release=current,
        containers=read_containers(s.docker, containers),
        files=read_files(s, folders),
        manifests=read_manifests(s, candidates(images or {}, release, current), missing_ok) if images else frozenset(),
        seeded=read_images(s.docker, seed_tags),
        pulled=read_images(s.docker, pulls))
