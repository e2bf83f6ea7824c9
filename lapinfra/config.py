"""Environment configuration: YAML layered over shared defaults, validated once.

Three files make one environment, later ones overriding earlier ones key by key:

    environments/base.yml        shared defaults
    environments/<env>/env.yml   the environment
    nodes/<env>.yml              the environment's nodes

The merged data is validated by pydantic models that forbid unknown keys. Every
validation error is reported against the file that set the offending key, as
``nodes/test.yml: nodes[1].ip: ...``.
"""
from __future__ import annotations

import ipaddress
import re
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from .envname import DEFAULT_ENV, NAME  # noqa: F401 - DEFAULT_ENV is part of this module's interface
from .errors import ConfigError


class Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True)


class BaseImage(Strict):
    tag: str = "infra/base"
    pull: str = Field("", description="image to pull first; empty: always debootstrap")
    pull_timeout: int = Field(20, ge=1)
    suite: str = "bookworm"
    mirror: str = "http://deb.debian.org/debian"


class Build(Strict):
    jobs: int = Field(2, ge=1, le=16)
    extra_ca_certs: list[str] = Field(default_factory=list)


class Registry(Strict):
    port: int = Field(5000, ge=1, le=65535)
    user: str = Field("infra", pattern=NAME)


# The seed's names of hosts, nodes and workstations (<x>.host.<domain>,
# <x>.node.<domain>, <first>-<last>[-<specifier>].pc.<domain>) are not rendered:
# each is a zone of its own that takes TSIG-signed dynamic updates
# (`invoke dns.register`, lapinfra/ddns.py) and keeps them in /data/dns/dynamic/.
DYNAMIC_ZONES = ("host", "node", "pc")


class Dns(Strict):
    # name relative to the domain -> role of the node that serves it
    names: dict[str, Literal["master", "backup"]]

    @field_validator("names")
    @classmethod
    def _labels(cls, names: dict[str, str]) -> dict[str, str]:
        for name in names:
            if not re.fullmatch(r"[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)*", name):
                raise ValueError(f"{name!r} is not a valid DNS name")
            zone = name.rsplit(".", 1)[-1]
            if zone in DYNAMIC_ZONES:
                raise ValueError(f"{name!r} falls into the dynamic zone {zone}.<domain>, whose names are registered "
                                 f"with `invoke dns.register`, not configured")
        return names


class Git(Strict):
    repositories: list[str] = Field(default_factory=lambda: ["infra"])

    @field_validator("repositories")
    @classmethod
    def _names(cls, repos: list[str]) -> list[str]:
        for repo in repos:
            if not re.fullmatch(r"[a-z0-9][a-z0-9._-]{0,62}", repo) or repo == "gitolite-admin":
                raise ValueError(f"{repo!r} is not a usable repository name")
        return repos


class Cd(Strict):
    repository: str = "infra"
    poll_seconds: int = Field(60, ge=10)


class LoadBalancer(Strict):
    name: str = "app"
    backends: int = Field(2, ge=2, le=8)


class AppHealth(Strict):
    cmd: list[str] = Field(min_length=1, description="run inside the replica; exit 0 means healthy")
    interval: int = Field(2, ge=1, description="seconds")
    timeout: int = Field(2, ge=1, description="seconds")
    retries: int = Field(3, ge=1)
    start_period: int = Field(2, ge=0, description="seconds")


class AppUpdate(Strict):
    parallelism: int = Field(1, ge=1, description="replicas replaced at a time")
    delay: int = Field(1, ge=0, description="seconds between batches")
    monitor: int = Field(10, ge=1, description="seconds a new replica must stay healthy, else the update rolls back")


class App(Strict):
    """apps/<name>/app.yml: an application run as a swarm service on the worker nodes."""
    image: str = Field(pattern=r"^[a-z0-9][a-z0-9._/-]*(:[A-Za-z0-9._-]+)?$", description="an image of the workstation's engine")
    replicas: int = Field(2, ge=1, le=32)
    port: int = Field(ge=1, le=65535, description="the port each replica serves HTTP on")
    health: AppHealth
    update: AppUpdate = AppUpdate()


class Retention(Strict):
    within: str = Field("1d", pattern=r"^\d+[hdwmy]$")
    daily: int = Field(7, ge=0)
    weekly: int = Field(4, ge=0)
    monthly: int = Field(12, ge=0)
    yearly: int = Field(30, ge=0)


class Backup(Strict):
    interval_minutes: int = Field(10, ge=1)
    keep: Retention = Retention()

    def forget_flags(self) -> str:
        k = self.keep
        return f"--keep-within {k.within} --keep-daily {k.daily} --keep-weekly {k.weekly} --keep-monthly {k.monthly} --keep-yearly {k.yearly}"


class Verify(Strict):
    disruptive: bool | None = Field(None, description="run the suite's disruptive checks (they stop a service for a moment); "
                                    "default: true, false on a protected environment")


class Network(Strict):
    name: str = Field(pattern=r"^[a-z][a-z0-9_.-]{1,62}$")
    subnet: ipaddress.IPv4Network
    # The seed's DHCP range: where nodes without a fixed address (workers) get theirs.
    # Fixed addresses stay outside it. Default: the upper half of the subnet.
    dynamic: ipaddress.IPv4Network | None = None

    @property
    def dynamic_range(self) -> ipaddress.IPv4Network:
        if self.dynamic is not None:
            return self.dynamic
        return list(self.subnet.subnets(prefixlen_diff=1))[1] if self.subnet.prefixlen < 30 else self.subnet


# On the master, port 22 belongs to the git server (`git clone git@git.internal:...`),
# so the node's own admin sshd listens here.
MASTER_SSH_PORT = 2222
MASTER_SERVICE_PORTS = {22: "the git server", 53: "DNS", 80: "the HTTP proxy", 3124: "the apt cache"}


class Node(Strict):
    name: str = Field(pattern=NAME)
    role: Literal["master", "worker", "backup"]
    ip: ipaddress.IPv4Address | None = Field(None, description="fixed address; only a worker may go without one (dynamic, from network.dynamic)")
    memory: int = Field(2048, ge=256, description="MiB, VM providers only")
    cpus: int = Field(2, ge=1)
    ssh_port: int | None = Field(None, ge=1, le=65535, description="the node's admin sshd; default 2222 on the master (whose port 22 is the git server's), 22 elsewhere")

    @property
    def admin_port(self) -> int:
        return self.ssh_port or (MASTER_SSH_PORT if self.role == "master" else 22)

    @property
    def dynamic(self) -> bool:
        """No fixed address: the node gets one when it starts (the seed's worker nodes)."""
        return self.ip is None

    @property
    def ssh_host(self) -> str:
        """The node's name in known_hosts files: OpenSSH's [host]:port form off port 22;
        a node without a fixed address is known by its name (ssh's HostKeyAlias)."""
        host = self.name if self.dynamic else str(self.ip)
        return host if self.admin_port == 22 else f"[{host}]:{self.admin_port}"


class Environment(Strict):
    name: str = Field(pattern=NAME)
    description: str = ""
    domain: str = "internal"
    provider: Literal["docker", "virtualbox"]
    network: Network | None = None
    bridge: str = Field("", description="host interface to bridge VMs to (virtualbox)")
    promoted_from: str | None = None
    protected: bool = Field(False, description="destructive commands ask for confirmation (refuse without --yes when there is no terminal)")
    verify: Verify = Verify()
    base_image: BaseImage = BaseImage()
    build: Build = Build()
    registry: Registry = Registry()
    git: Git = Git()
    cd: Cd = Cd()
    lb: LoadBalancer = LoadBalancer()
    backup: Backup = Backup()
    dns: Dns
    node_image: str = "lapinfra/node"
    nodes: list[Node]
    apps: dict[str, App] = Field(default_factory=dict, description="apps/<name>/app.yml, run on the workers")

    @model_validator(mode="after")
    def _consistent(self) -> "Environment":
        if self.provider == "docker" and self.network is None:
            raise ConfigError("", "network", "the docker provider needs a network (name, subnet)")
        _unique(self.nodes, "name")
        _unique([n for n in self.nodes if not n.dynamic], "ip", self.nodes)
        roles = [n.role for n in self.nodes]
        for role in ("master", "backup"):
            if roles.count(role) != 1:
                raise ConfigError("", "nodes", f"exactly one node with role {role!r} is needed, found {roles.count(role)}")
        if self.cd.repository not in self.git.repositories:
            raise ConfigError("", "cd.repository", f"{self.cd.repository!r} is not one of git.repositories {self.git.repositories}")
        for i, node in enumerate(self.nodes):
            if node.dynamic and node.role != "worker":
                raise ConfigError("", f"nodes[{i}].ip", f"the {node.role} node needs a fixed address (only workers may take a dynamic one)")
        if self.network is not None:
            self._check_addresses(self.network)
        taken = {*self.dns.names, self.lb.name, *DYNAMIC_ZONES}
        for name in self.apps:
            if not re.fullmatch(NAME, name) or name in taken:
                raise ConfigError("", f"apps.{name}", f"{name!r} cannot name an application (served as {name}.{self.domain}): "
                                  "lower-case letters, digits and dashes, and none of the names the infrastructure uses")
        for i, node in enumerate(self.nodes):
            if node.role == "master" and node.admin_port in MASTER_SERVICE_PORTS:
                raise ConfigError("", f"nodes[{i}].ssh_port", f"port {node.admin_port} on the master belongs to {MASTER_SERVICE_PORTS[node.admin_port]}; pick another (default {MASTER_SSH_PORT})")
        return self

    def _check_addresses(self, net: Network) -> None:
        dynamic = net.dynamic_range
        if not dynamic.subnet_of(net.subnet):
            raise ConfigError("", "network.dynamic", f"{dynamic} is not inside the subnet {net.subnet}")
        for i, node in enumerate(self.nodes):
            if node.dynamic:
                continue
            if node.ip not in net.subnet or node.ip in (net.subnet.network_address, net.subnet.broadcast_address, next(net.subnet.hosts())):
                raise ConfigError("", f"nodes[{i}].ip", f"{node.ip} is not a usable address in {net.subnet} (the first host is the gateway)")
            if node.ip in dynamic:
                raise ConfigError("", f"nodes[{i}].ip", f"{node.ip} lies in the dynamic range {dynamic} (network.dynamic), "
                                  "which nodes without a fixed address take theirs from; pick one outside it")

    # ---- derived values ---------------------------------------------------
    @property
    def disruptive_checks(self) -> bool:
        """Whether the verification suite may stop or break something for a moment."""
        return (not self.protected) if self.verify.disruptive is None else self.verify.disruptive

    @property
    def workers(self) -> list[Node]:
        return [n for n in self.nodes if n.role == "worker"]

    @property
    def routed_apps(self) -> dict[str, App]:
        """The applications the load balancer serves: all of apps/, where there are workers to run them."""
        return dict(sorted(self.apps.items())) if self.workers else {}

    def node(self, role: str) -> Node:
        return next(n for n in self.nodes if n.role == role)

    @property
    def master(self) -> Node:
        return self.node("master")

    @property
    def zone_records(self) -> dict[str, str]:
        """The names rendered into the domain's own zone -> their IPv4 addresses."""
        records = {f"{name}.{self.domain}": str(self.node(role).ip) for name, role in self.dns.names.items()}
        records[f"{self.lb.name}.{self.domain}"] = str(self.master.ip)
        for name in self.routed_apps:   # the load balancer on the master routes each to its replicas
            records[f"{name}.{self.domain}"] = str(self.master.ip)
        return dict(sorted(records.items()))

    @property
    def node_records(self) -> dict[str, str]:
        """<node>.node.<domain> -> the fixed address of each node that has one: registered
        in the dynamic zone node.<domain> when the infrastructure starts, together with the
        addresses dynamic nodes have at that moment (lapinfra/ddns.register_nodes)."""
        return {f"{n.name}.node.{self.domain}": str(n.ip) for n in self.nodes if not n.dynamic}

    @property
    def dynamic_zones(self) -> list[str]:
        return [f"{zone}.{self.domain}" for zone in DYNAMIC_ZONES]

    @property
    def dns_records(self) -> dict[str, str]:
        """Every fully qualified name the environment serves -> its IPv4 address."""
        return dict(sorted({**self.zone_records, **self.node_records}.items()))

    def as_json(self) -> dict[str, Any]:
        data = self.model_dump(mode="json")
        data["dns_records"] = self.dns_records
        return data


def _unique(nodes: list[Node], attr: str, all_nodes: list[Node] | None = None) -> None:
    index = (all_nodes or nodes).index
    seen: dict[Any, int] = {}
    for node in nodes:
        value = getattr(node, attr)
        if value in seen:
            raise ConfigError("", f"nodes[{index(node)}].{attr}", f"duplicate {attr} {value} (also nodes[{seen[value]}])")
        seen[value] = index(node)


# ---- loading -----------------------------------------------------------------

def environment_names(root: Path) -> list[str]:
    return sorted(p.parent.name for p in (root / "environments").glob("*/env.yml"))


def app_files(root: Path) -> list[Path]:
    """apps/<name>/app.yml: the applications, the same for every environment."""
    return sorted(Path(root, "apps").glob("*/app.yml"))


def layer_files(root: Path, env: str) -> list[Path]:
    return [root / "environments" / "base.yml", root / "environments" / env / "env.yml", root / "nodes" / f"{env}.yml"]


def load(root: Path, env: str) -> Environment:
    """Load, merge and validate one environment; raise ConfigError on any defect."""
    root = Path(root)
    if not re.fullmatch(NAME, env or "") or not (root / "environments" / env / "env.yml").is_file():
        known = ", ".join(environment_names(root)) or "none"
        raise ConfigError("environments", "--env", f"unknown environment {env!r}; known environments: {known}")
    merged: dict[str, Any] = {"name": env}
    origin: dict[tuple, str] = {}
    for path in layer_files(root, env):
        rel = str(path.relative_to(root))
        if path.exists():
            _merge(merged, _read_yaml(path, rel), origin, rel, ())
        elif path.name != "base.yml" and path.parent.name == "nodes":
            raise ConfigError(rel, "", "missing: every environment needs a nodes file")
    for path in app_files(root):
        rel = str(path.relative_to(root))
        _merge(merged, {"apps": {path.parent.name: _read_yaml(path, rel)}}, origin, rel, ())
    try:
        return Environment.model_validate(merged)
    except ConfigError as cause:  # raised by the cross-field checks, without a file
        raise ConfigError(_origin(origin, _parse_key(cause.key), ""), cause.key, cause.message) from None
    except ValidationError as exc:
        err = exc.errors()[0]
        loc = tuple(err["loc"])
        message = err["msg"].removeprefix("Value error, ")
        if err["type"] == "extra_forbidden":
            message = "unknown key"
        raise ConfigError(_origin(origin, loc, ""), _format_key(loc), message) from None


def _read_yaml(path: Path, rel: str) -> dict[str, Any]:
    try:
        data = yaml.safe_load(path.read_text())
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark else ""
        raise ConfigError(rel, where, f"malformed YAML: {getattr(exc, 'problem', exc)}") from None
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(rel, "", "the top level must be a mapping of keys")
    return data


def _merge(into: dict, new: dict, origin: dict, rel: str, prefix: tuple) -> None:
    for key, value in new.items():
        path = prefix + (key,)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, origin, rel, path)
        else:
            into[key] = value
            origin[path] = rel
            _mark(value, origin, rel, path)


def _mark(value: Any, origin: dict, rel: str, path: tuple) -> None:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, sub in items:
        origin[path + (key,)] = rel
        _mark(sub, origin, rel, path + (key,))


def _origin(origin: dict, loc: tuple, fallback: str) -> str:
    for end in range(len(loc), 0, -1):
        if loc[:end] in origin:
            return origin[loc[:end]]
    return fallback or "environments/base.yml"


def _format_key(loc: tuple) -> str:
    out = ""
    for part in loc:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out


def _parse_key(key: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", key))
