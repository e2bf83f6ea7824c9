"""What runs on the master node: one spec per infrastructure container.

A container is ``infra_<name>`` from image ``infra/<name>``, with ``/data/<name>``
on the node as its ``/data``, its secrets read-only at ``/run/secrets``, and the
environment volume (``infra_environment``'s ``/env``) mounted read-only. The
spec's hash (image id, ports, mounts, config and secrets content) is stored as a
label; a container whose label matches is left running.
"""
from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass, field

DATA = "/data"
ENV_DIR = f"{DATA}/environment"      # rendered config of the environment, /env in containers
SECRETS_DIR = f"{DATA}/secrets"      # per service, /run/secrets in its container
STATE_DIR = f"{DATA}/lapinfra"       # release record
SPEC_LABEL = "lapinfra.spec"
PREFIX = "infra_"


@dataclass(frozen=True)
class Service:
    name: str
    ports: dict = field(default_factory=dict)      # "53/udp" -> host binding
    secrets: dict = field(default_factory=dict)    # file in /run/secrets -> secret file name
    provides_env: bool = False                     # the environment container itself
    local_image: bool = False                      # started from the node's own image (the registry)

    @property
    def container(self) -> str:
        return PREFIX + self.name


def services(env) -> list[Service]:
    """The infrastructure containers, in start order: the registry first, as the seed says."""
    ip = str(env.master.ip)
    return [
        Service("registry", {"5000/tcp": env.registry.port},
                {"htpasswd": "registry.htpasswd", "tls.crt": "registry.crt", "tls.key": "registry.key"}, local_image=True),
        Service("environment", provides_env=True),
        Service("dns", {"53/udp": (ip, 53), "53/tcp": (ip, 53)}, {"tsig.key": "tsig.key"}),
    ]


def by_name(env, name: str) -> Service:
    return next(s for s in services(env) if s.name == name)


def run_kwargs(service: Service, image: str, env_name: str, config_hash: str, image_id: str) -> dict:
    """Keyword arguments for docker's containers.run, with the spec hash label."""
    volumes = {f"{DATA}/{service.name}": {"bind": "/data", "mode": "rw"}}
    if service.secrets:
        volumes[f"{SECRETS_DIR}/{service.name}"] = {"bind": "/run/secrets", "mode": "ro"}
    if service.provides_env:
        volumes[ENV_DIR] = {"bind": "/env", "mode": "ro"}
    kwargs = {
        "image": image,
        "name": service.container,
        "detach": True,
        "ports": dict(service.ports),
        "volumes": volumes,
        "volumes_from": [] if service.provides_env or service.local_image else ["infra_environment:ro"],
        "restart_policy": {"Name": "unless-stopped"},
        "labels": {"lapinfra.env": env_name, "lapinfra.service": service.name},
    }
    if service.local_image:  # the registry starts before the env container exists
        volumes[f"{ENV_DIR}/{service.name}"] = {"bind": f"/env/{service.name}", "mode": "ro"}
    kwargs["labels"][SPEC_LABEL] = spec_hash(kwargs, image_id, config_hash)
    return kwargs


def spec_hash(kwargs: dict, image_id: str, config_hash: str) -> str:
    material = {k: v for k, v in kwargs.items() if k not in ("labels", "image")}
    material.update(image_id=image_id, config=config_hash)
    return hashlib.sha256(json.dumps(material, sort_keys=True, default=str).encode()).hexdigest()[:16]
