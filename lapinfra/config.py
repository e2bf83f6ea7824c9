"""Environment configuration: YAML layered over shared defaults, validated once.

Three files make one environment, later ones overriding earlier ones key by key:

    environments/base.yml        shared defaults
    environments/<env>/env.yml   the environment
    nodes/<env>.yml              the environment's nodes

Each file is read by `lapinfra.configfile` (duplicate keys, alias bombs, non-UTF-8
text and folders refused). The merged data is validated by pydantic models that
forbid unknown keys and coerce nothing (``true`` or ``"5000"`` is not a port); every
string has a grammar (a pattern, a Literal or a validator), and the cross-field
checks (`Environment._consistent`) refuse clashes and unresolved references. Every
error is reported against the file and line that set the offending value (for a
missing key: the file where it belongs), all of them at once:
``nodes/test.yml: nodes[1].ip: ... (line 7)``.

docs/configuration.md is generated from these models (`lapinfra.configdoc`): each
Field's description is the key's documentation.
"""
from __future__ import annotations

import difflib
import ipaddress
import re
from pathlib import Path
from typing import Annotated, Any, Literal, NamedTuple, get_args, get_origin

from pydantic import BaseModel, BeforeValidator, ConfigDict, Field, PrivateAttr, ValidationError, ValidationInfo, field_validator, model_validator

from . import aptsources, configfile, services as svc
from .configfile import format_key
from .envname import DEFAULT_ENV, NAME  # noqa: F401 - DEFAULT_ENV is part of this module's interface
from .errors import ConfigError

# ---- grammars ------------------------------------------------------------------
# Every string of the configuration has one: the values reach root shell commands on
# the nodes, named.conf, nginx.conf, master.cfg and the Vagrantfile verbatim.

# Patterns end in \Z, not $: Python's $ also matches before a final newline.
LABEL = r"[a-z0-9](?:[a-z0-9-]{0,61}[a-z0-9])?"                  # one DNS label, at most 63 characters
DNS_NAME = rf"^{LABEL}(?:\.{LABEL})*\Z"
MAX_DNS_NAME = 253                                                   # 255 octets on the wire
IMAGE_REF = (r"(?:[a-z0-9](?:[a-z0-9.-]*[a-z0-9])?(?::[0-9]{1,5})?/)?"   # optional registry host[:port]/
             r"[a-z0-9]+(?:[._-][a-z0-9]+)*(?:/[a-z0-9]+(?:[._-][a-z0-9]+)*)*"
             r"(?::[A-Za-z0-9_][A-Za-z0-9._-]{0,127})?")
IMAGE = rf"^{IMAGE_REF}\Z"
URL = r"https?://[A-Za-z0-9](?:[A-Za-z0-9.-]*[A-Za-z0-9])?(?::[0-9]{1,5})?(?:/[A-Za-z0-9._~%+-]+)*/?"
PATH = r"^(?:~/|/)[A-Za-z0-9._+@/-]*\Z"
TEXT = r"^[\w .,;:!?()/*'+&%@#=-]{0,200}\Z"        # one line of prose: no quotes, $, `, \ or control characters
REPOSITORY = r"^[a-z0-9][a-z0-9._-]{0,62}\Z"
DNS_LABEL = rf"^{LABEL}\Z"
OPTIONAL_IMAGE = rf"^(?:{IMAGE_REF})?\Z"
OPTIONAL_URL = rf"^\Z|^{URL}\Z"
SUITE = r"^[a-z][a-z0-9-]{1,30}\Z"
CMD_ARG = r"^[^\x00-\x1f\x7f]{1,1000}\Z"
WITHIN = r"^[0-9]{1,4}[hdwmy]\Z"
NETWORK_NAME = r"^[a-z][a-z0-9_.-]{1,62}\Z"
BRIDGE = r"^[A-Za-z0-9_.:() -]{0,64}\Z"      # a host interface, as VirtualBox names them ("en0: Wi-Fi (AirPort)")

# What each pattern means, for error messages ("'a;b' is not a DNS label ...").
GRAMMARS = {
    NAME: "a name: a lower-case letter, then up to 30 lower-case letters, digits and dashes",
    DNS_LABEL: "a DNS label: lower-case letters, digits and inner dashes, at most 63 characters",
    DNS_NAME: "a DNS name: DNS labels (lower-case letters, digits and inner dashes, at most 63 characters each) joined by dots",
    IMAGE: "an image reference like infra/base or registry.example:5000/name:tag",
    OPTIONAL_IMAGE: "empty or an image reference like debian:bookworm-slim",
    OPTIONAL_URL: "empty or an http(s) URL like http://mirror.example/debian",
    PATH: "an absolute (or ~/) path of letters, digits and . _ + @ / -",
    TEXT: "one line of at most 200 characters, without quotes, $, `, \\ or control characters",
    REPOSITORY: "a repository name: a lower-case letter or digit, then up to 62 lower-case letters, digits and . _ -",
    SUITE: "a Debian suite name like bookworm",
    CMD_ARG: "a command argument of 1 to 1000 characters, without control characters",
    WITHIN: "a duration like 1d (a number and one of h d w m y)",
    NETWORK_NAME: "a network name: a lower-case letter, then 1 to 62 lower-case letters, digits and _ . -",
    BRIDGE: "a host interface name: letters, digits, spaces and _ . : ( ) -",
}

Name = Annotated[str, Field(pattern=NAME)]
Label = Annotated[str, Field(pattern=DNS_LABEL)]
DnsName = Annotated[str, Field(pattern=DNS_NAME, max_length=MAX_DNS_NAME)]
ImageRef = Annotated[str, Field(pattern=IMAGE, max_length=255)]
Repository = Annotated[str, Field(pattern=REPOSITORY)]
Port = Annotated[int, Field(ge=1, le=65535)]


def _parsed(kind, what: str):
    """A before-validator: only a string is read as an address or network (no integers)."""
    def parse(value: Any):
        if not isinstance(value, str):
            raise ValueError(f"{what} must be written as a string like {'172.28.10.10' if kind is ipaddress.IPv4Address else '172.28.10.0/24'}, not {type(value).__name__} {value!r}")
        try:
            return kind(value)
        except ValueError as exc:
            raise ValueError(f"{value!r} is not {what}: {exc}") from None
    return BeforeValidator(parse)


IPv4 = Annotated[ipaddress.IPv4Address, _parsed(ipaddress.IPv4Address, "an IPv4 address")]
IPv4Net = Annotated[ipaddress.IPv4Network, _parsed(ipaddress.IPv4Network, "an IPv4 network (address/prefix, host bits zero)")]


class Strict(BaseModel):
    # python-re: compiled lazily and cheaply; the Rust engine spends ~60 ms of every
    # command line on expanding the DNS grammars' bounded repetitions and Unicode classes.
    model_config = ConfigDict(extra="forbid", frozen=True, strict=True, regex_engine="python-re")


class BaseImage(Strict):
    """The image every image builds on: pulled when possible, else debootstrapped."""
    tag: ImageRef = Field("infra/base", description="every images/*/Dockerfile starts FROM this")
    pull: Annotated[str, Field(pattern=OPTIONAL_IMAGE)] = Field("", description="image to pull first (e.g. debian:bookworm-slim); empty: always debootstrap")
    pull_timeout: int = Field(20, ge=1, description="seconds to wait for the pull before falling back to debootstrap")
    suite: Annotated[str, Field(pattern=SUITE)] = Field("bookworm", description="the Debian release debootstrap installs")
    mirror: Annotated[str, Field(pattern=OPTIONAL_URL)] = Field(
        "", description="the Debian archive debootstrap fetches from; empty: the workstation's own "
                        "(the first apt source whose path ends in /debian, in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list)")


class Build(Strict):
    jobs: int = Field(2, ge=1, le=16, description="independent images built in parallel")
    extra_ca_certs: list[Annotated[str, Field(pattern=PATH)]] = Field(
        default_factory=list, description="PEM bundles (absolute or ~/ paths) trusted inside builds that fetch from PyPI")


class Registry(Strict):
    port: Port = Field(5000, description="the master's port of the image registry (TLS, basic auth), on the master's address")
    user: Name = Field("infra", description="the registry's user (password in secrets/<env>/registry.password)")


class Cache(Strict):
    """The apt cache's upstreams (images/cache, rendered into /env/cache/)."""
    debian_upstream: Annotated[str, Field(pattern=OPTIONAL_URL)] = Field(
        "", description="the Debian archive the cache fetches from; empty: the workstation's own (an apt source whose path ends in /debian), "
                        "else the upstream Debian's apt-cacher-ng package ships")
    ubuntu_upstream: Annotated[str, Field(pattern=OPTIONAL_URL)] = Field(
        "", description="the Ubuntu archive the cache fetches from; empty: the workstation's own (an apt source whose path ends in /ubuntu), "
                        "else the upstream Debian's apt-cacher-ng package ships")


# The names of hosts, nodes and workstations (<x>.host.<domain>,
# <x>.node.<domain>, <first>-<last>[-<specifier>].pc.<domain>) are not rendered:
# each is a zone of its own that takes TSIG-signed dynamic updates
# (`invoke dns.register`, lapinfra/ddns.py) and keeps them in /data/dns/dynamic/.
DYNAMIC_ZONES = ("host", "node", "pc")


class Dns(Strict):
    names: dict[DnsName, Literal["master", "backup"]] = Field(
        description="names of the domain's zone, relative to the domain -> the role of the node that serves them")

    @field_validator("names")
    @classmethod
    def _outside_dynamic_zones(cls, names: dict[str, str]) -> dict[str, str]:
        for name in names:
            zone = name.rsplit(".", 1)[-1]
            if zone in DYNAMIC_ZONES:
                raise ValueError(f"{name!r} falls into the dynamic zone {zone}.<domain>, whose names are registered "
                                 f"with `invoke dns.register`, not configured")
        return names


class Git(Strict):
    repositories: list[Repository] = Field(default_factory=lambda: ["infra"], description="created on the git server (gitolite), RW+ for the admin key")

    @field_validator("repositories")
    @classmethod
    def _names(cls, repos: list[str]) -> list[str]:
        for repo in repos:
            if repo == "gitolite-admin":
                raise ValueError("'gitolite-admin' is the git server's own administration repository; pick another name")
            if repos.count(repo) > 1:
                raise ValueError(f"{repo!r} is listed twice")
        return repos


class Cd(Strict):
    repository: Repository = Field("infra", description="the repository the CD server polls and builds; one of git.repositories")
    poll_seconds: int = Field(60, ge=10, description="how often the CD server polls it")


class LoadBalancer(Strict):
    name: Label = Field("app", description="<name>.<domain>: nginx with sticky sessions over the sample app's backends")
    backends: int = Field(2, ge=2, le=8, description="sample app containers behind it")


CmdArg = Annotated[str, Field(pattern=CMD_ARG)]


class AppHealth(Strict):
    cmd: list[CmdArg] = Field(min_length=1, description="run inside the replica; exit 0 means healthy")
    interval: int = Field(2, ge=1, description="seconds")
    timeout: int = Field(2, ge=1, description="seconds")
    retries: int = Field(3, ge=1, description="failed checks before the replica is unhealthy")
    start_period: int = Field(2, ge=0, description="seconds")


class AppUpdate(Strict):
    parallelism: int = Field(1, ge=1, description="replicas replaced at a time")
    delay: int = Field(1, ge=0, description="seconds between batches")
    monitor: int = Field(10, ge=1, description="seconds a new replica must stay healthy, else the update rolls back")


class App(Strict):
    """apps/<name>/app.yml: an application run as a swarm service on the worker nodes."""
    image: ImageRef = Field(description="an image of the workstation's engine")
    replicas: int = Field(2, ge=1, le=32, description="replicas on the workers")
    port: Port = Field(description="the port each replica serves HTTP on")
    health: AppHealth = Field(description="the replicas' health check")
    update: AppUpdate = Field(AppUpdate(), description="how a new version replaces the replicas")


class Retention(Strict):
    within: Annotated[str, Field(pattern=WITHIN)] = Field("1d", description="keep every snapshot this recent (restic --keep-within)")
    daily: int = Field(7, ge=0, description="then one a day for this many days")
    weekly: int = Field(4, ge=0, description="then one a week")
    monthly: int = Field(12, ge=0, description="then one a month")
    yearly: int = Field(30, ge=0, description="then one a year")


class Backup(Strict):
    interval_minutes: int = Field(10, ge=1, description="scheduled snapshots of the master's /data to the backup node")
    keep: Retention = Field(Retention(), description="the snapshots kept (restic forget)")
    drill_hours: int = Field(24, ge=1, le=744, description="restore drills on the backup node, every this many hours: "
                             "restic check of the next seventh of the vault's packs, the latest snapshot restored and "
                             "compared with its manifest, git fsck, sqlite and registry probes (docs/data.md)")

    @property
    def drill_interval_s(self) -> int:
        """LAPVAULT_DRILL_INTERVAL_S of the backup node."""
        return self.drill_hours * 3600

    def forget_flags(self) -> str:
        k = self.keep
        return f"--keep-within {k.within} --keep-daily {k.daily} --keep-weekly {k.weekly} --keep-monthly {k.monthly} --keep-yearly {k.yearly}"


class Verify(Strict):
    disruptive: bool | None = Field(None, description="run the suite's disruptive checks (they stop a service for a moment); "
                                    "default: true, false on a protected environment")


class Network(Strict):
    name: Annotated[str, Field(pattern=NETWORK_NAME)] = Field(description="the Docker network of the container nodes")
    subnet: IPv4Net = Field(description="its subnet; the first host is the gateway")
    dynamic: IPv4Net | None = Field(None, description="the LAN's DHCP range: where nodes without a fixed address (workers) get theirs; "
                                    "fixed addresses stay outside it; default: the upper half of the subnet")

    @property
    def dynamic_range(self) -> ipaddress.IPv4Network:
        if self.dynamic is not None:
            return self.dynamic
        return list(self.subnet.subnets(prefixlen_diff=1))[1] if self.subnet.prefixlen < 30 else self.subnet


# On the master, port 22 belongs to the git server (`git clone git@git.internal:...`),
# so the node's own admin sshd listens here.
MASTER_SSH_PORT = 2222
# Who a service publishing a port on the master is, in an error message.
SERVICE_OWNERS = {"git": "the git server", "dns": "DNS", "proxy": "the HTTP proxy", "registry": "the registry"}
# a port the proxy listens on for another service
PORT_OWNERS = {svc.APT_PORT: "the apt cache"}
# Names of the infrastructure's containers (lapinfra/services.py, infra_<name>), which
# no configured name may take; test_config keeps them equal to services.services().
SERVICE_NAMES = ("registry", "environment", "dns", "git", "trac", "cd", "cache", "maven", "artifact", "status", "proxy",
                 "backup")
# Networks a node's subnet must not overlap: the master's network of infrastructure
# containers (= services.NETWORK_SUBNET) and the swarm's pool (= swarm.ADDRESS_POOL).
RESERVED_NETWORKS = {ipaddress.IPv4Network("172.31.254.0/24"): "the master's infra network (services.NETWORK_SUBNET)",
                     ipaddress.IPv4Network("172.29.0.0/16"): "the swarm's overlay address pool (swarm.ADDRESS_POOL)"}


class Node(Strict):
    name: Name = Field(description="the node's name (<name>.node.<domain>)")
    role: Literal["master", "worker", "backup"] = Field(description="exactly one master and one backup; any number of workers")
    ip: IPv4 | None = Field(None, description="fixed address; only a worker may go without one (dynamic, from network.dynamic)")
    memory: int = Field(2048, ge=256, description="MiB, VM providers only")
    cpus: int = Field(2, ge=1, description="VM providers only")
    ssh_port: Port | None = Field(None, description="the node's admin sshd; default 2222 on the master (whose port 22 is the git server's), 22 elsewhere")

    @property
    def admin_port(self) -> int:
        return self.ssh_port or (MASTER_SSH_PORT if self.role == "master" else 22)

    @property
    def dynamic(self) -> bool:
        """No fixed address: the node gets one when it starts (worker nodes usually do)."""
        return self.ip is None

    @property
    def ssh_host(self) -> str:
        """The node's name in known_hosts files: OpenSSH's [host]:port form off port 22;
        a node without a fixed address is known by its name (ssh's HostKeyAlias)."""
        host = self.name if self.dynamic else str(self.ip)
        return host if self.admin_port == 22 else f"[{host}]:{self.admin_port}"


class Environment(Strict):
    name: Name = Field(description="the environment's folder name, environments/<name>/ (set by the loader)")
    description: Annotated[str, Field(pattern=TEXT)] = Field("", description="one line of prose shown to people")
    domain: DnsName = Field("internal", description="the DNS domain the master serves (<name>.<domain>)")
    provider: Literal["docker", "virtualbox"] = Field(description="what the nodes are: containers with their own dockerd (docker) or VMs (virtualbox)")
    network: Network | None = Field(None, description="the nodes' network; needed by the docker provider, optional for virtualbox")
    bridge: Annotated[str, Field(pattern=BRIDGE)] = Field("", description="host interface to bridge VMs to (virtualbox)")
    promoted_from: Name | None = Field(None, description="the environment whose verified releases this one takes (docs/promotion.md)")
    protected: bool = Field(False, description="destructive commands ask for confirmation (refuse without --yes when there is no terminal)")
    verify: Verify = Field(Verify(), description="the verification suite (infra_tests/)")
    base_image: BaseImage = Field(BaseImage(), description="the base image every image builds on")
    build: Build = Field(Build(), description="image builds")
    registry: Registry = Field(Registry(), description="the image registry on the master")
    cache: Cache = Field(Cache(), description="the apt cache on the master (ubuntu.cache.<domain>:3124)")
    git: Git = Field(Git(), description="the git server (gitolite) on the master")
    cd: Cd = Field(Cd(), description="the CD server (buildbot) on the master")
    lb: LoadBalancer = Field(LoadBalancer(), description="the load balancer over the sample app")
    backup: Backup = Field(Backup(), description="scheduled snapshots to the backup node")
    dns: Dns = Field(description="the domain's zone")
    node_image: ImageRef = Field("lapinfra/node", description="the image of container nodes (docker provider)")
    nodes: list[Node] = Field(description="nodes/<env>.yml: the environment's nodes")
    apps: dict[Name, App] = Field(default_factory=dict, description="apps/<name>/app.yml, run on the workers")
    _origin: dict = PrivateAttr(default_factory=dict)   # key path -> (file, line), set by load()

    @model_validator(mode="after")
    def _consistent(self, info: ValidationInfo) -> "Environment":
        known = (info.context or {}).get("environments")
        problems = [*self._node_problems(), *self._reference_problems(known), *self._name_problems()]
        roles_ok = not any(key == "nodes" for key, _ in problems)
        if self.network is not None:
            problems += self._network_problems(self.network)
        problems += self._address_problems()
        if roles_ok and self.master.ip is not None:
            problems += self._port_problems()
        if problems:
            raise ConfigError.of([ConfigError("", key, message) for key, message in problems])
        return self

    # ---- cross-field checks: each returns [(key, message)] ----------------------
    def _node_problems(self) -> list[tuple[str, str]]:
        out = []
        if self.provider == "docker" and self.network is None:
            out.append(("network", "the docker provider needs a network (name, subnet)"))
        for attr in ("name", "ip"):
            seen: dict[Any, int] = {}
            for i, node in enumerate(self.nodes):
                value = getattr(node, attr)
                if value is None:
                    continue
                if value in seen:
                    out.append((f"nodes[{i}].{attr}", f"duplicate {attr} {value} (also nodes[{seen[value]}])"))
                else:
                    seen[value] = i
        roles = [n.role for n in self.nodes]
        for role in ("master", "backup"):
            if roles.count(role) != 1:
                out.append(("nodes", f"exactly one node with role {role!r} is needed, found {roles.count(role)}"))
        for i, node in enumerate(self.nodes):
            if node.dynamic and node.role != "worker":
                out.append((f"nodes[{i}].ip", f"the {node.role} node needs a fixed address (only workers may take a dynamic one)"))
        return out

    def _reference_problems(self, known: list[str] | None) -> list[tuple[str, str]]:
        out = []
        if self.cd.repository not in self.git.repositories:
            out.append(("cd.repository", f"{self.cd.repository!r} is not one of git.repositories {self.git.repositories}"))
        if self.promoted_from is not None:
            if self.promoted_from == self.name:
                out.append(("promoted_from", f"an environment cannot be promoted from itself ({self.name!r})"))
            elif known is not None and self.promoted_from not in known:
                out.append(("promoted_from", f"unknown environment {self.promoted_from!r}; known environments: {', '.join(known)}"))
        return out

    def _name_problems(self) -> list[tuple[str, str]]:
        out = []
        infra = {**dict.fromkeys(SERVICE_NAMES, "an infrastructure container"), **dict.fromkeys(DYNAMIC_ZONES, "a dynamic zone"),
                 **dict.fromkeys(self.dns.names, "a name in dns.names")}
        if self.lb.name in infra:
            out.append(("lb.name", f"{self.lb.name!r} is already {infra[self.lb.name]}; the load balancer needs a name of its own"))
        taken = {*infra, self.lb.name}
        for name in self.apps:
            if not re.fullmatch(NAME, name) or name in taken:
                out.append((f"apps.{name}", f"{name!r} cannot name an application (served as {name}.{self.domain}): "
                            "lower-case letters, digits and dashes, and none of the names the infrastructure uses"))
        relative = [*self.dns.names, self.lb.name, *self.apps, *(f"{n.name}.node" for n in self.nodes)]
        longest = max(relative, key=len)
        if len(longest) + 1 + len(self.domain) > MAX_DNS_NAME:
            out.append(("domain", f"{longest}.{self.domain} would be {len(longest) + 1 + len(self.domain)} characters; "
                        f"a DNS name has at most {MAX_DNS_NAME}: pick a shorter domain"))
        return out

    def _network_problems(self, net: Network) -> list[tuple[str, str]]:
        out = []
        subnet = net.subnet
        if subnet.is_loopback or subnet.is_multicast or subnet.is_link_local or subnet.is_reserved or subnet.network_address.is_unspecified:
            out.append(("network.subnet", f"{subnet} is not a network for nodes (loopback, multicast, link-local, reserved or unspecified)"))
        if subnet.prefixlen > 29:
            out.append(("network.subnet", f"{subnet} is too small: a gateway and two nodes need at least a /29"))
        for reserved, what in RESERVED_NETWORKS.items():
            if subnet.overlaps(reserved):
                out.append(("network.subnet", f"{subnet} overlaps {reserved}, {what}; pick another subnet"))
        dynamic = net.dynamic_range
        if not dynamic.subnet_of(subnet):
            out.append(("network.dynamic", f"{dynamic} is not inside the subnet {subnet}"))
        elif subnet.prefixlen <= 30 and next(subnet.hosts()) in dynamic:
            out.append(("network.dynamic", f"{dynamic} holds the gateway {next(subnet.hosts())} (the subnet's first host)"))
        room = dynamic.num_addresses - (2 if dynamic.prefixlen < 31 else 0)
        wanting = [i for i, n in enumerate(self.nodes) if n.dynamic]
        if len(wanting) > room:
            out.append((f"nodes[{wanting[room]}].ip", f"{len(wanting)} nodes take a dynamic address, but the dynamic range {dynamic} has {room}"))
        return out

    def _address_problems(self) -> list[tuple[str, str]]:
        out = []
        net = self.network
        if net is not None:   # compared as integers: 5,000 nodes are checked in milliseconds
            first, last = int(net.subnet.network_address), int(net.subnet.broadcast_address)
            gateway = first + 1 if net.subnet.prefixlen <= 30 else None
            dynamic = net.dynamic_range
            dyn_first, dyn_last = int(dynamic.network_address), int(dynamic.broadcast_address)
        for i, node in enumerate(self.nodes):
            if node.ip is None:
                continue
            ip = int(node.ip)
            if not _usable_unicast(ip):
                out.append((f"nodes[{i}].ip", f"{node.ip} is not a usable unicast address (loopback, multicast, link-local, broadcast, reserved or unspecified)"))
            elif net is not None and (not first < ip < last or ip == gateway):
                out.append((f"nodes[{i}].ip", f"{node.ip} is not a usable address in {net.subnet} (the first host is the gateway)"))
            elif net is not None and dyn_first <= ip <= dyn_last:
                out.append((f"nodes[{i}].ip", f"{node.ip} lies in the dynamic range {dynamic} (network.dynamic), "
                            "which nodes without a fixed address take theirs from; pick one outside it"))
        return out

    def _port_problems(self) -> list[tuple[str, str]]:
        """Two listeners on one protocol, port and address of the master: the services'
        published ports (lapinfra/services.py) and the master's admin sshd. The clash is
        blamed on the key that moved a listener off its default."""
        listeners = self._master_listeners()
        out = []
        for i, one in enumerate(listeners):
            for other in listeners[i + 1:]:
                if (one.protocol, one.port) != (other.protocol, other.port) or (None not in (one.address, other.address) and one.address != other.address):
                    continue
                blamed, owner = (one, other) if one.key and (one.moved or not other.key) else (other, one)
                if blamed.key:
                    out.append((blamed.key, f"port {blamed.port} on the master belongs to {owner.who}; pick another (default {blamed.default})"))
        return out

    def _master_listeners(self) -> list["Listener"]:
        out = []
        for service in svc.services(self):
            for spec, binding in service.ports.items():
                address, port = binding if isinstance(binding, tuple) else (None, binding)   # a bare port: every address
                key, default = ("registry.port", Registry.model_fields["port"].default) if service.name == "registry" else ("", port)
                who = PORT_OWNERS.get(port) or SERVICE_OWNERS.get(service.name, service.container)
                out.append(Listener(spec.split("/")[1], address, port, who, key, default))
        index = next(i for i, n in enumerate(self.nodes) if n.role == "master")
        out.append(Listener("tcp", str(self.master.ip), self.master.admin_port, "the master's admin sshd", f"nodes[{index}].ssh_port", MASTER_SSH_PORT))
        return out

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


# Never a node's address: "this network" and unspecified, loopback, link-local,
# multicast, reserved (with the limited broadcast address).
NOT_UNICAST = [(int(n.network_address), int(n.broadcast_address)) for n in map(ipaddress.IPv4Network, (
    "0.0.0.0/8", "127.0.0.0/8", "169.254.0.0/16", "224.0.0.0/4", "240.0.0.0/4"))]


class Listener(NamedTuple):
    """Something listening on a port of the master."""
    protocol: str
    address: str | None     # None: every address
    port: int
    who: str
    key: str                # the configuration key that sets the port; "" when fixed
    default: int

    @property
    def moved(self) -> bool:
        return self.port != self.default


def _usable_unicast(ip: int) -> bool:
    return not any(first <= ip <= last for first, last in NOT_UNICAST)


# ---- loading -----------------------------------------------------------------

APT_DIR = Path("/etc/apt")   # the workstation's apt sources: the default mirrors (lapinfra/aptsources.py)


def environment_names(root: Path) -> list[str]:
    return sorted(p.parent.name for p in (root / "environments").glob("*/env.yml"))


def app_files(root: Path) -> list[Path]:
    """apps/<name>/app.yml: the applications, the same for every environment."""
    return sorted(Path(root, "apps").glob("*/app.yml"))


def layer_files(root: Path, env: str) -> list[Path]:
    return [root / "environments" / "base.yml", root / "environments" / env / "env.yml", root / "nodes" / f"{env}.yml"]


# Where a key that is missing belongs: the environment's own choices in its env.yml,
# the nodes in its nodes file, everything else in the shared defaults.
ENV_KEYS = ("provider", "network", "bridge", "promoted_from", "protected", "description")


def _home(root: Path, env: str, key: str) -> str:
    base, env_file, nodes_file = (str(p.relative_to(root)) for p in layer_files(root, env))
    return nodes_file if key == "nodes" else env_file if key in ENV_KEYS else base


Origin = dict[tuple, tuple[str, int | None]]   # key path -> (file, line) that set it


def load(root: Path, env: str, apt_dir: Path | None = None) -> Environment:
    """Load, merge and validate one environment; raise ConfigError listing every defect.
    Unset mirrors default to the apt sources in ``apt_dir`` (the workstation's, APT_DIR)."""
    root = Path(root)
    known = environment_names(root)
    if not re.fullmatch(NAME, env or "") or not (root / "environments" / env / "env.yml").exists():
        raise ConfigError("environments", "--env", f"unknown environment {env!r}; known environments: {', '.join(known) or 'none'}")
    merged: dict[str, Any] = {"name": env}
    origin: Origin = {}
    errors: list[ConfigError] = []
    layers = [(path, None) for path in layer_files(root, env)] + [(path, path.parent.name) for path in app_files(root)]
    for path, app in layers:
        rel = str(path.relative_to(root))
        if not path.exists() and not path.is_symlink():
            if path.parent.name == "nodes":
                errors.append(ConfigError(rel, "", "missing: every environment needs a nodes file"))
            continue
        try:
            data, lines = configfile.read(path, rel)
        except ConfigError as exc:
            errors.append(exc)
            continue
        if app is not None:
            data, lines = {"apps": {app: data}}, {("apps", app, *k): v for k, v in lines.items()}
        _merge(merged, data, origin, rel, lines, ())
    if errors:
        raise ConfigError.of(errors)
    _default_mirrors(merged, apt_dir or APT_DIR)
    order = [str(path.relative_to(root)) for path, _ in layers]
    try:
        loaded = Environment.model_validate(merged, context={"environments": known})
    except ConfigError as cause:  # raised by the cross-field checks, without a file
        located = [_located(root, env, origin, _parse_key(e.key), e.message) for e in cause.errors]
        raise ConfigError.of(_in_file_order(located, order)) from None
    except ValidationError as exc:
        raise ConfigError.of(_in_file_order([_from_pydantic(root, env, origin, err) for err in exc.errors()], order)) from None
    loaded._origin = origin
    return loaded


def _in_file_order(errors: list[ConfigError], order: list[str]) -> list[ConfigError]:
    """As the files are layered, and by line within each."""
    return sorted(errors, key=lambda e: (order.index(e.file) if e.file in order else len(order), e.line or 0))


def where(env: Environment, key: str) -> tuple[str, int | None]:
    """The file and line that set ``key`` (as ``build.extra_ca_certs[0]``) of a loaded
    environment, for errors found after loading; ("", None) when no file did."""
    loc = _parse_key(key)
    for end in range(len(loc), 0, -1):
        if loc[:end] in env._origin:
            return env._origin[loc[:end]]
    return "", None


def _default_mirrors(merged: dict, apt_dir: Path) -> None:
    """Empty mirrors and upstreams default to the workstation's own apt sources."""
    wanted = [("base_image", "mirror", "debian"), ("cache", "debian_upstream", "debian"), ("cache", "ubuntu_upstream", "ubuntu")]
    if all(isinstance(merged.get(s, {}), dict) and merged.get(s, {}).get(k) for s, k, _ in wanted):
        return
    sources = aptsources.read(apt_dir)
    for section, key, archive in wanted:
        part = merged.setdefault(section, {})
        if isinstance(part, dict) and not part.get(key):
            uri = aptsources.archive_uri(sources, archive)
            if uri and re.fullmatch(URL, uri):
                part[key] = uri


def _from_pydantic(root: Path, env: str, origin: Origin, err: dict) -> ConfigError:
    loc = tuple(part for part in err["loc"] if part != "[key]")
    message = err["msg"].removeprefix("Value error, ")
    if err["type"] == "extra_forbidden":
        message = "unknown key"
        close = difflib.get_close_matches(str(loc[-1]), _keys_at(loc[:-1]), n=1)
        if close:
            message += f"; did you mean {close[0]!r}?"
    elif err["type"] == "string_pattern_mismatch":
        pattern = err["ctx"]["pattern"]
        message = f"{_shown(err['input'])} is not {GRAMMARS.get(pattern, 'valid: it must match ' + pattern)}"
    elif err["type"].endswith("_type") or err["type"] in ("literal_error", "is_instance_of", "string_too_long", "greater_than_equal", "less_than_equal"):
        message += f", not {_shown(err['input'])}"
    return _located(root, env, origin, loc, message, missing=err["type"] == "missing")


def _shown(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def _located(root: Path, env: str, origin: Origin, loc: tuple, message: str, missing: bool = False) -> ConfigError:
    """The error at key path ``loc``, in the file and on the line that wrote it (for a
    missing key: in the file that holds its parent, else where such a key belongs)."""
    search = loc[:-1] if missing else loc
    for end in range(len(search), 0, -1):
        if search[:end] in origin:
            file, line = origin[search[:end]]
            return ConfigError(file, format_key(loc), message, line)
    return ConfigError(_home(root, env, str(loc[0]) if loc else ""), format_key(loc), message)


def _keys_at(loc: tuple) -> list[str]:
    """The keys the model allows at key path ``loc`` (for "did you mean")."""
    kind: Any = Environment
    for part in loc:
        kind = _unwrap(kind)
        if isinstance(kind, type) and issubclass(kind, BaseModel):
            field = kind.model_fields.get(str(part))
            if field is None:
                return []
            kind = field.annotation
        elif get_origin(kind) in (list, dict):
            kind = get_args(kind)[-1]
        else:
            return []
    kind = _unwrap(kind)
    return list(kind.model_fields) if isinstance(kind, type) and issubclass(kind, BaseModel) else []


def _unwrap(kind: Any) -> Any:
    """Annotated[X, ...] and X | None -> X."""
    while True:
        if get_origin(kind) is Annotated:
            kind = get_args(kind)[0]
            continue
        args = [a for a in get_args(kind) if a is not type(None)]
        if get_origin(kind) not in (list, dict, Literal, None) and len(args) == 1:
            kind = args[0]
            continue
        return kind


def _merge(into: dict, new: dict, origin: Origin, rel: str, lines: configfile.Lines, prefix: tuple) -> None:
    for key, value in new.items():
        path = prefix + (key,)
        if isinstance(value, dict) and isinstance(into.get(key), dict):
            _merge(into[key], value, origin, rel, lines, path)
        else:
            into[key] = value
            origin[path] = (rel, lines.get(path))
            _mark(value, origin, rel, lines, path)


def _mark(value: Any, origin: Origin, rel: str, lines: configfile.Lines, path: tuple) -> None:
    items = value.items() if isinstance(value, dict) else enumerate(value) if isinstance(value, list) else ()
    for key, sub in items:
        origin[path + (key,)] = (rel, lines.get(path + (key,)))
        _mark(sub, origin, rel, lines, path + (key,))


def _parse_key(key: str) -> tuple:
    return tuple(int(p) if p.isdigit() else p for p in re.findall(r"[^.\[\]]+", key))
