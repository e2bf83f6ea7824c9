"""What a deploy does to a node, as data: one action per change (pyinfra's "commands").

lapinfra/decisions.py turns the node's facts (lapinfra/facts.py) and the desired state
into a list of these; lapinfra/executor.py applies a list and records each action it
applied; `invoke plan` prints the same list. An action whose state already holds is never
made: an unchanged deploy is one action, the release record naming who deployed it and when.

Each action has a stable ``describe()`` (one line, as plan prints it) and ``to_json()``
(what plan --json shows and releases.jsonl records; never a file's content nor its hash,
since some files are secrets). What the executor needs beyond that (the bytes to write, the
image to push, the container's run arguments) is carried along but not compared.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from .records import APPS, RELEASE


@dataclass(frozen=True)
class WriteFile:
    """Write one file of a folder the deploy keeps on the node (config, a service's secrets)."""
    folder: str
    path: str                 # relative to folder
    mode: int
    data: bytes = field(default=b"", repr=False, compare=False)
    kind = "write file"

    def describe(self) -> str:
        return f"write {self.folder}/{self.path} ({self.mode:04o})"

    def to_json(self) -> dict:
        return {"action": self.kind, "path": f"{self.folder}/{self.path}", "mode": f"{self.mode:04o}"}


@dataclass(frozen=True)
class RemoveFile:
    """Remove a file the desired folder no longer holds."""
    folder: str
    path: str
    kind = "remove file"

    def describe(self) -> str:
        return f"remove {self.folder}/{self.path}"

    def to_json(self) -> dict:
        return {"action": self.kind, "path": f"{self.folder}/{self.path}"}


@dataclass(frozen=True)
class LoadImage:
    """Seed the master: ``docker save | docker load`` of a workstation image it lacks (by id)."""
    tag: str
    id: str
    image: object = field(default=None, repr=False, compare=False)   # the workstation engine's image
    kind = "load image"

    def describe(self) -> str:
        return f"load {self.tag} onto the node (docker save | docker load)"

    def to_json(self) -> dict:
        return {"action": self.kind, "tag": self.tag, "id": self.id}


@dataclass(frozen=True)
class PushImage:
    """Upload an image of the workstation into the node's registry. ``layers_from``: a repository of
    the registry whose layers are mounted into the new one first (the running release's image of the
    same name): of those layers the push then sends none."""
    name: str
    repository: str
    id: str
    image: object = field(default=None, repr=False, compare=False)
    layers_from: str = ""
    kind = "push image"

    def describe(self) -> str:
        shared = f" (the layers it shares with {self.layers_from} are mounted, not sent)" if self.layers_from else ""
        return f"push {self.repository}:latest{shared}"

    def to_json(self) -> dict:
        return {"action": self.kind, "name": self.name, "repository": self.repository, "id": self.id,
                **({"layers_from": self.layers_from} if self.layers_from else {})}


@dataclass(frozen=True)
class TagImage:
    """Name an image the registry holds already a second time (its blobs mounted, nothing uploaded)."""
    name: str
    source: str
    repository: str
    id: str
    image: object = field(default=None, repr=False, compare=False)   # pushed instead when the copy fails
    kind = "tag image"

    def describe(self) -> str:
        return f"tag {self.repository}:latest in the registry (same image as {self.source})"

    def to_json(self) -> dict:
        return {"action": self.kind, "name": self.name, "source": self.source, "repository": self.repository,
                "id": self.id}


@dataclass(frozen=True)
class WriteRelease:
    """Make a release record the node's (records.RELEASE): what runs, each image by id, who deployed it when."""
    release: str
    record: object = field(default=None, repr=False, compare=False)   # the records.Release written
    kind = "write release record"

    def describe(self) -> str:
        return f"write the release record of {self.release} ({RELEASE})"

    def to_json(self) -> dict:
        return {"action": self.kind, "release": self.release}


@dataclass(frozen=True)
class PullImage:
    """The master's engine pulls an image of the release from the node's registry (by the release's tag)."""
    name: str
    reference: str            # <registry host>/infra/<release>/<name>:latest
    id: str                   # the id the release record names, which the pulled image must have
    kind = "pull image"

    def describe(self) -> str:
        return f"pull {self.reference} into the node's engine"

    def to_json(self) -> dict:
        return {"action": self.kind, "name": self.name, "reference": self.reference, "id": self.id}


CONTAINER_VERBS = ("create", "recreate", "start")


@dataclass(frozen=True)
class ChangeContainer:
    """Create, recreate (remove, then run) or start one container; "keep" is no action."""
    container: str
    verb: str
    spec: str                 # the spec label it runs with
    kwargs: dict = field(default_factory=dict, repr=False, compare=False)   # docker run's arguments
    kind = "container"

    def __post_init__(self):
        if self.verb not in CONTAINER_VERBS:
            raise ValueError(f"{self.verb!r} is no container action ({', '.join(CONTAINER_VERBS)})")

    @property
    def done(self) -> str:
        """The verb as reconcile reports it: created, recreated, started."""
        return {"create": "created", "recreate": "recreated", "start": "started"}[self.verb]

    def describe(self) -> str:
        return f"{self.verb} {self.container}"

    def to_json(self) -> dict:
        return {"action": self.kind, "container": self.container, "verb": self.verb, "spec": self.spec}


# ---- the workers' swarm (lapinfra/swarm.py applies these: they reach each worker's engine) ---------

@dataclass(frozen=True)
class LeaveSwarm:
    """A node leaves the swarm it is in, which is not the master's (or the master one it cannot manage)."""
    node: str
    kind = "leave swarm"

    def describe(self) -> str:
        return f"{self.node} leaves the swarm it is in (not the master's)"

    def to_json(self) -> dict:
        return {"action": self.kind, "node": self.node}


@dataclass(frozen=True)
class InitSwarm:
    """The master initialises a new swarm and manages it (advertising ``address``)."""
    node: str
    address: str              # <ip>:<swarm port>
    kind = "init swarm"

    def describe(self) -> str:
        return f"initialise the swarm on {self.node} ({self.address})"

    def to_json(self) -> dict:
        return {"action": self.kind, "node": self.node, "address": self.address}


@dataclass(frozen=True)
class ActivateNode:
    """Make the master's swarm node active again: a drained node cannot attach infra_proxy to the overlay network."""
    node: str
    kind = "activate swarm node"

    def describe(self) -> str:
        return f"make {self.node} active in the swarm again (it was drained)"

    def to_json(self) -> dict:
        return {"action": self.kind, "node": self.node}


@dataclass(frozen=True)
class CreateAppsNetwork:
    """The applications' attachable overlay network (and infra_proxy's), on the manager."""
    network: str
    kind = "create apps network"

    def describe(self) -> str:
        return f"create the applications' overlay network {self.network}"

    def to_json(self) -> dict:
        return {"action": self.kind, "network": self.network}


@dataclass(frozen=True)
class TrustRegistry:
    """A worker trusts the environment's CA for the registry (``host``), so that its engine pulls over TLS."""
    node: str
    host: str                 # docker.<domain>:<port>
    data: bytes = field(default=b"", repr=False, compare=False)    # the CA certificate
    kind = "trust registry"

    def describe(self) -> str:
        return f"{self.node} trusts the environment's CA for {self.host}"

    def to_json(self) -> dict:
        return {"action": self.kind, "node": self.node, "host": self.host}


@dataclass(frozen=True)
class JoinSwarm:
    """A worker joins the master's swarm as a worker (with the join token, read when it joins, never recorded)."""
    node: str
    address: str              # the address it advertises
    manager: str              # <master ip>:<swarm port>
    kind = "join swarm"

    def describe(self) -> str:
        return f"{self.node} ({self.address}) joins the swarm of {self.manager} as a worker"

    def to_json(self) -> dict:
        return {"action": self.kind, "node": self.node, "address": self.address, "manager": self.manager}


@dataclass(frozen=True)
class RemoveSwarmNode:
    """The manager forgets a node's entry that is down while another entry of the same host is (or joins) in
    the swarm: what a worker that joined again or was rebuilt leaves behind."""
    id: str
    hostname: str
    kind = "remove swarm node"

    def describe(self) -> str:
        return f"remove the swarm's old entry {self.id} of {self.hostname} (down, replaced)"

    def to_json(self) -> dict:
        return {"action": self.kind, "id": self.id, "hostname": self.hostname}


# ---- the applications brought back --------------------------------------------------------------

@dataclass(frozen=True)
class RestoreApp:
    """Create again the swarm service of an application that records.APPS records and the swarm lacks
    (a master rebuilt by dr.recover), from the image recorded there."""
    name: str
    image: str                # the recorded reference: <registry host>/apps/<name>:<tag>
    kind = "restore app"

    def describe(self) -> str:
        return f"create the service of app {self.name} again ({self.image}, as {APPS} records it)"

    def to_json(self) -> dict:
        return {"action": self.kind, "name": self.name, "image": self.image}


# ---- the nodes' DNS names ---------------------------------------------------------------------------

@dataclass(frozen=True)
class RegisterName:
    """<node>.node.<domain> registered with the node's address (its A records replaced, by a signed update)."""
    name: str
    address: str
    kind = "register name"

    def describe(self) -> str:
        return f"register {self.name} -> {self.address} in the DNS"

    def to_json(self) -> dict:
        return {"action": self.kind, "name": self.name, "address": self.address}


@dataclass(frozen=True)
class JoinNetwork:
    """Connect an infrastructure container to a further network (the proxy to the applications' overlay,
    to reach each replica): a container is created on the node's infra network only."""
    container: str
    network: str
    kind = "join network"

    def describe(self) -> str:
        return f"connect {self.container} to the network {self.network}"

    def to_json(self) -> dict:
        return {"action": self.kind, "container": self.container, "network": self.network}


@dataclass(frozen=True)
class PushGit:
    """The deployed commit into the target's infrastructure repository: its branch (the productive
    version) and the tag deployed-<commit>. ``over``: the branch's commit a forced push drops."""
    commit: str
    branch: str
    over: str | None = None
    kind = "push git"

    def describe(self) -> str:
        forced = f", pushed over {self.over[:12]} (--force)" if self.over else ""
        return f"push commit {self.commit[:12]} to the git server's {self.branch} and tag deployed-{self.commit[:12]}{forced}"

    def to_json(self) -> dict:
        return {"action": self.kind, "commit": self.commit[:12], "branch": self.branch,
                **({"over": self.over[:12]} if self.over else {})}


Action = (WriteFile | RemoveFile | LoadImage | PushImage | TagImage | WriteRelease | PullImage | ChangeContainer
          | LeaveSwarm | InitSwarm | ActivateNode | CreateAppsNetwork | TrustRegistry | JoinSwarm | RemoveSwarmNode
          | RestoreApp | RegisterName | JoinNetwork | PushGit)


def as_json(actions) -> list[dict]:
    return [action.to_json() for action in actions]
