"""What runs on the master node: one spec per infrastructure container.

A container is ``infra_<name>`` from image ``infra/<image>`` (the name unless
several containers share an image), with ``/data/<name>`` on the node as its
``/data``, its secrets read-only at ``/run/secrets``, the environment volume
(``infra_environment``'s ``/env``) mounted read-only, and a place on the node's
``infra`` network, where the others reach it as ``infra_<name>``. The spec's
hash (image id, ports, mounts, config and secrets content) is stored as a label;
a container whose label matches is left running.
"""
from __future__ import annotations

import hashlib
import ipaddress
import json
from dataclasses import dataclass, field

DATA = "/data"
ENV_DIR = f"{DATA}/environment"      # rendered config of the environment, /env in containers
SECRETS_DIR = f"{DATA}/secrets"      # per service, /run/secrets in its container

# Where the verification suite writes on any environment, production included, and removes
# again at the end of each check: a branch lapinfra-verify/<id> of a git repository, the
# Maven and artifact collections lapinfra-verify-<id>/, Trac tickets whose summary starts
# with "lapinfra-verify". Nothing a user keeps is ever written under these names.
SUITE_PLACE = "lapinfra-verify"

STATE_DIR = f"{DATA}/lapinfra"       # lapinfra's records and the node's SSH host keys (lapinfra/records.py names each)
NETWORK = "infra"                    # the node's network of infrastructure containers
# Fixed addresses on it: nginx resolves its upstreams once, at start, so a
# recreated or restarted backend must come back on the address it had.
NETWORK_SUBNET = ipaddress.IPv4Network("172.31.254.0/24")
SPEC_LABEL = "lapinfra.spec"
PREFIX = "infra_"
# The swarm's overlay network of the applications (lapinfra/swarm.py, lapinfra/apps.py);
# infra_proxy joins it where the environment has workers, to reach each replica.
APPS_NETWORK = "lapinfra_apps"


@dataclass(frozen=True)
class Service:
    name: str
    image_name: str = ""
    ports: dict = field(default_factory=dict)      # "53/udp" -> host binding
    secrets: dict = field(default_factory=dict)    # file in /run/secrets -> secret file name
    http: int = 0                                  # port served behind the proxy (80 and 443)
    vhost: str = ""                                # its name there, below the domain; default: the service's name
    # its HTTP service takes a password: the proxy forwards only anonymous reads (GET, HEAD)
    # on port 80 and sends everything else, and its login paths, to HTTPS
    takes_password: bool = False
    login_paths: tuple = ()                        # paths of a login page (port 80 redirects them to https)
    provides_env: bool = False                     # the environment container itself
    local_image: bool = False                      # from the node's own copy (loaded by save|load, not pulled)
    volumes: dict = field(default_factory=dict)    # extra node path -> container path
    read_only: dict = field(default_factory=dict)  # extra node path -> container path, mounted read-only
    environment: dict = field(default_factory=dict)
    networks: tuple = ()                           # further networks, joined once it runs (the apps' overlay)
    # paths below its /data that it writes in place (a database, a journal): a snapshot copies
    # them with this container paused for just that copy; the rest of its data is read live
    freeze: tuple = ()

    @property
    def image(self) -> str:
        return self.image_name or self.name

    @property
    def container(self) -> str:
        return PREFIX + self.name


def services(env) -> list[Service]:
    """The infrastructure containers in start order: the registry first (every
    other image is pulled from it), the port-80 proxy last (nginx resolves its upstreams when it starts)."""
    ip = str(env.master.ip)
    apps = [Service(f"{env.lb.name}{i}", "sampleapp", http=8080) for i in range(1, env.lb.backends + 1)]
    others = [
        Service("registry", ports={"5000/tcp": (ip, env.registry.port)},
                secrets={"htpasswd": "registry.htpasswd", "pull.htpasswd": "registry-pull.htpasswd",
                         "tls.crt": "registry.crt", "tls.key": "registry.key"}, local_image=True),
        Service("environment", provides_env=True),
        Service("dns", ports={"53/udp": (ip, 53), "53/tcp": (ip, 53)}, secrets={k: k for k in DNS_KEYS},
                freeze=("dynamic",)),
        Service("git", ports={"22/tcp": (ip, 22)}, secrets={"admin.pub": "admin_ed25519.pub", "cd.pub": "cd_ed25519.pub"}),
        Service("trac", http=8000, freeze=("env/db",)),
        Service("cd", http=8010, takes_password=True, login_paths=("/auth/",), secrets={"git.key": "cd_ed25519", "worker.password": "cd.worker-password",
                                          "admin.password": "cd.admin-password", "git.known_hosts": "git_known_hosts"},
                freeze=("master/state.sqlite*",)),
        # apt's proxy port is the proxy's (APT_PORT), which keeps the report page and passwords off it
        Service("cache", http=3142, vhost="ubuntu.cache", takes_password=True, login_paths=(APT_REPORT,),
                secrets={"admin.password": "cache.password"}),
        Service("maven", "repository", http=80, takes_password=True, secrets={"htpasswd": "maven.htpasswd"}),
        Service("artifact", "repository", http=80, takes_password=True, secrets={"htpasswd": "artifact.htpasswd"}),
        *apps,
        status_service(env),
        Service("proxy", ports={"80/tcp": (ip, 80), "443/tcp": (ip, 443), f"{APT_PORT}/tcp": (ip, APT_PORT)}, secrets=PROXY_SECRETS,
                networks=(APPS_NETWORK,) if env.workers else ()),
    ]
    return [*others, backup_service(env, others)]


# The apt cache as the LAN's HTTP proxy for apt (ubuntu.cache.<domain>:3124): the proxy
# listens there and passes apt's requests on to infra_cache, but never a password nor the
# report page, which is served on https://ubuntu.cache.<domain>/ only.
APT_PORT = 3124
APT_REPORT = "/acng-report.html"
# The DNS's TSIG keys: the transfer key and each dynamic zone's update key (lapinfra/secrets.py).
DNS_KEYS = ("tsig.key", "tsig-host.key", "tsig-node.key", "tsig-pc.key")
# The proxy's TLS certificate for port 443, signed by the environment's CA (lapinfra/secrets.py).
PROXY_SECRETS = {"tls.crt": "proxy.crt", "tls.key": "proxy.key"}
BACKUP_DATA = "/srv/data"      # the node's /data in the backup container (lapbackup's DATA)
BACKUP_SECRETS = {"restic.password": "restic.password", "backup_ed25519": "backup_ed25519", "backup_known_hosts": "backup_known_hosts"}


def status_service(env) -> Service:
    """The status page (images/status/lapstatus): its own /data holds facts.json (published by
    lapinfra/status.py) and what it generates; lapbackup's state (no secret there) it reads only."""
    return Service("status", http=8020, read_only={f"{DATA}/backup": "/backup"}, environment={"STATUS_ENV": env.name})


def backup_service(env, others: list[Service] | None = None) -> Service:
    """Snapshots of the whole /data to the backup node (restic over sftp), on a schedule.
    Its image is kept on the node itself, so a fresh master can restore before any registry runs.
    ``others``: the services whose ``freeze`` paths it copies paused (BACKUP_FREEZE);
    default: the environment's."""
    if others is None:
        others = [service for service in services(env) if service.name != "backup"]
    return Service(
        "backup", secrets=BACKUP_SECRETS, local_image=True,
        volumes={DATA: BACKUP_DATA, "/var/run/docker.sock": "/var/run/docker.sock"},
        environment={
            "BACKUP_REPOSITORY": backup_repository(env.node("backup")),
            "BACKUP_INTERVAL": str(env.backup.interval_minutes * 60),
            "BACKUP_KEEP": env.backup.forget_flags(),
            "BACKUP_ENV": env.name,
            "BACKUP_FREEZE": json.dumps(freeze_policy(others), sort_keys=True),
            **backup_names(),
        },
    )


def backup_names() -> dict[str, str]:
    """What lapbackup takes from lapinfra instead of keeping copies: the prefix of the
    containers a snapshot may pause (every infrastructure container's), and the backup
    container's own name (never paused: a one-off tool container must not freeze its scheduler)."""
    return {"BACKUP_PAUSE_PREFIX": PREFIX, "BACKUP_CONTAINER": Service("backup").container}


def freeze_policy(services_: list[Service]) -> dict:
    """lapbackup's BACKUP_FREEZE: container -> its frozen paths below the node's /data."""
    return {service.container: [f"{service.name}/{path}" for path in service.freeze] for service in services_ if service.freeze}


def backup_repository(node) -> str:
    """restic's sftp repository on the backup node, the inbox: the backup node's /data/restic
    as its sftp-only user ``backup`` sees it, chrooted to /data (URL form when its sshd is
    off port 22). lapbackup reads the vault, /vault, beside it."""
    if node.admin_port == 22:
        return f"sftp:backup@{node.ip}:/restic"
    return f"sftp://backup@{node.ip}:{node.admin_port}//restic"


def by_name(env, name: str) -> Service:
    return next(service for service in services(env) if service.name == name)


def vhosts(env) -> list[dict]:
    """Name-based virtual hosts of the proxy (the load balancer aside). ``takes_password``: on
    port 80 only its anonymous reads pass; ``login_paths`` there are redirected to https."""
    out = []
    for service in services(env):
        if service.http and service.image != "sampleapp":
            out.append({"name": f"{service.vhost or service.name}.{env.domain}", "upstream": f"{service.container}:{service.http}",
                        "takes_password": service.takes_password, "login_paths": list(service.login_paths)})
    return out


def proxy_names(env) -> list[str]:
    """Every name the proxy serves (its certificate's names): the virtual hosts, the load
    balancer, the applications on the workers."""
    apps = [f"{name}.{env.domain}" for name in env.routed_apps]
    return [v["name"] for v in vhosts(env)] + [load_balancer(env)["name"]] + apps


def apt_proxy(env) -> dict:
    """The proxy's apt port (APT_PORT): where apt's requests go, and the page they may not ask for."""
    cache = by_name(env, "cache")
    return {"port": APT_PORT, "upstream": f"{cache.container}:{cache.http}", "report": APT_REPORT,
            "report_url": f"https://{cache.vhost}.{env.domain}{APT_REPORT}"}


def load_balancer(env) -> dict:
    backends = [service for service in services(env) if service.image == "sampleapp"]
    return {"name": f"{env.lb.name}.{env.domain}", "backends": [f"{backend.container}:{backend.http}" for backend in backends]}


def address(env, service: Service) -> str:
    index = [other.name for other in services(env)].index(service.name)
    return str(NETWORK_SUBNET.network_address + 10 + index)


def run_kwargs(service: Service, image: str, env, config_hash: str, image_id: str) -> dict:
    """Keyword arguments for docker's containers.run, with the spec hash label."""
    volumes = {f"{DATA}/{service.name}": {"bind": "/data", "mode": "rw"}}
    if service.secrets:
        volumes[f"{SECRETS_DIR}/{service.name}"] = {"bind": "/run/secrets", "mode": "ro"}
    if service.provides_env:
        volumes[ENV_DIR] = {"bind": "/env", "mode": "ro"}
    if service.local_image:  # the registry starts before the env container exists
        volumes[f"{ENV_DIR}/{service.image}"] = {"bind": f"/env/{service.image}", "mode": "ro"}
    for source, target in service.volumes.items():
        volumes[source] = {"bind": target, "mode": "rw"}
    for source, target in service.read_only.items():
        volumes[source] = {"bind": target, "mode": "ro"}
    kwargs = {
        "image": image,
        "name": service.container,
        "hostname": service.name,
        "detach": True,
        "network": NETWORK,
        "networking_config": {NETWORK: {"IPAMConfig": {"IPv4Address": address(env, service)}}},
        "ports": dict(service.ports),
        "volumes": volumes,
        "volumes_from": [] if service.provides_env or service.local_image else ["infra_environment:ro"],
        "restart_policy": {"Name": "unless-stopped"},
        "environment": dict(service.environment),
        "labels": {"lapinfra.env": env.name, "lapinfra.service": service.name},
    }
    kwargs["labels"][SPEC_LABEL] = spec_hash(kwargs, image_id, config_hash)
    return kwargs


def spec_hash(kwargs: dict, image_id: str, config_hash: str) -> str:
    material = {k: v for k, v in kwargs.items() if k not in ("labels", "image")}
    material.update(image_id=image_id, config=config_hash)
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]
