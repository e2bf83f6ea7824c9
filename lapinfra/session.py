"""The one session to the master: SSH, with tunnels to its Docker API and its registry.

A command opens one `MasterSession` and hands it down: the files on the node (read,
write atomically, sync a folder, JSON-lines logs) go over its SSH connection, the
engine over ``s.docker``, the registry over ``s.registry_port`` (lapinfra/registry.py).
"""
from __future__ import annotations

import contextlib
import hashlib
import io
import json
from pathlib import Path

from .nodes import DOCKER_API_PORT, Nodes
from .tunnel import Tunnel


class MasterSession(contextlib.ExitStack):
    """SSH to the master with tunnels to its Docker API and its registry."""

    def __init__(self, project):
        super().__init__()
        self.p = project
        self.env = project.env

    def __enter__(self):
        super().__enter__()
        import docker

        nodes = Nodes(self.p)
        self.conn = self.enter_context(nodes.connect())
        self.conn.open()
        self.conn.transport.set_keepalive(15)
        nodes.write_ssh_config()
        master = self.env.master.name
        self.api_port = self.enter_context(Tunnel(nodes.ssh_config, master, DOCKER_API_PORT)).port
        self.registry_port = self.enter_context(Tunnel(nodes.ssh_config, master, self.env.registry.port)).port
        self.docker = docker.DockerClient(base_url=f"tcp://127.0.0.1:{self.api_port}", timeout=600)
        self.callback(self.docker.close)
        return self

    @property
    def registry_host(self) -> str:
        return f"docker.{self.env.domain}:{self.env.registry.port}"

    def auth(self) -> dict:
        return {"username": self.env.registry.user, "password": self.p.secrets.registry_password.reveal()}

    # ---- files on the node --------------------------------------------------
    def remote_hashes(self, folder: str) -> dict[str, str]:
        out = self.conn.run(f"mkdir -p {folder} && cd {folder} && find . -type f -exec sha256sum {{}} +", hide=True).stdout
        return {line.split(None, 1)[1].strip()[2:]: line.split()[0] for line in out.splitlines() if line.strip()}

    def sync(self, files: dict[str, bytes], folder: str, mode: int = 0o644) -> list[str]:
        """Make ``folder`` on the node hold exactly ``files`` (relative path -> content)."""
        remote = self.remote_hashes(folder)
        sftp = self.conn.sftp()
        changed = []
        for rel, data in sorted(files.items()):
            if remote.get(rel) != hashlib.sha256(data).hexdigest():
                self.conn.run(f"mkdir -p {folder}/{Path(rel).parent}", hide=True)
                sftp.putfo(io.BytesIO(data), f"{folder}/{rel}")
                sftp.chmod(f"{folder}/{rel}", mode)
                changed.append(rel)
        for rel in sorted(set(remote) - set(files)):
            sftp.remove(f"{folder}/{rel}")
            changed.append(rel)
        return changed

    def put(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write one file atomically (write aside, then rename)."""
        self.conn.run(f"mkdir -p {Path(path).parent}", hide=True)
        self.conn.sftp().putfo(io.BytesIO(data), f"{path}.new")
        self.conn.sftp().chmod(f"{path}.new", mode)
        self.conn.run(f"mv -f {path}.new {path}", hide=True)

    def read_json(self, path: str) -> dict | None:
        result = self.conn.run(f"cat {path}", hide=True, warn=True)
        return json.loads(result.stdout) if result.ok and result.stdout.strip() else None

    def read_jsonl(self, path: str) -> list[dict]:
        """A JSON-lines log on the node (an absent file is empty; a torn last line is skipped)."""
        result = self.conn.run(f"cat {path}", hide=True, warn=True)
        out = []
        for line in result.stdout.splitlines() if result.ok else []:
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def append_jsonl(self, path: str, entry: dict) -> None:
        """Append one line to a JSON-lines log on the node (O_APPEND: lines never interleave)."""
        self.conn.run(f"mkdir -p {Path(path).parent}", hide=True)
        with self.conn.sftp().open(path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")


def named_networks(client, name: str) -> list:
    """The engine's networks called exactly ``name``: its name filter also matches parts of
    names ("infra" finds the swarm's "lapinfra_apps")."""
    return [net for net in client.networks.list(names=[name]) if net.name == name]
