"""`Project`: the validated configuration of one environment and what hangs off it.

Tasks build one `Project` per command line and hand it to the library; tests
build their own. Nothing here talks to docker or a node until asked.
"""
from __future__ import annotations

import os
from functools import cached_property
from pathlib import Path

from . import buildstamp, config
from .envname import resolve_env
from .errors import ConfigError, LapinfraError
from .images import ImageGraph
from .report import Reporter
from .secrets import SecretStore

ROOT = Path(__file__).resolve().parent.parent


class Project:
    def __init__(self, env: str | None = None, root: Path = ROOT, reporter: Reporter | None = None):
        self.root = Path(root)
        # before reading anything: the stats a build's stamp records (lapinfra/buildstamp.py)
        self.inputs = buildstamp.Inputs.take(self.root, resolve_env(env))
        self.env = config.load(self.root, resolve_env(env))
        self.reporter = reporter or Reporter()
        self.build_dir = self.root / "build" / self.env.name

    @cached_property
    def secrets(self) -> SecretStore:
        return SecretStore(self.root, self.env)

    @property
    def name(self) -> str:
        return self.env.name

    @cached_property
    def docker(self):
        import docker

        try:
            return docker.from_env(timeout=600)
        except docker.errors.DockerException as exc:
            raise LapinfraError(f"cannot reach the Docker engine ({exc}); is dockerd running?") from None

    def extra_ca(self) -> bytes:
        out = b""
        for i, name in enumerate(self.env.build.extra_ca_certs):
            path = Path(os.path.expanduser(name))
            if not path.is_file():
                key = f"build.extra_ca_certs[{i}]"
                file, line = config.where(self.env, key)   # the file that listed it, not always env.yml
                raise ConfigError(file, key, f"no such file {path}", line)
            self.inputs.add_extra_ca(name, path)
            out += path.read_bytes()
        return out

    @cached_property
    def graph(self) -> ImageGraph:
        return ImageGraph.discover(self.root, self.env.base_image.tag, self.extra_ca(), self.env.node_image)
