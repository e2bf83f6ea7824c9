"""The one session to the master: SSH, with tunnels to its Docker API and its registry.

A command opens one `MasterSession` and hands it down: the files on the node (read,
write atomically, JSON-lines logs) go over its SSH connection (a deploy's folders are
kept in sync by lapinfra/facts.py, decisions.py and executor.py), the
engine over ``s.docker``, the registry over ``s.registry_port`` (lapinfra/registry.py).
"""
from __future__ import annotations

import contextlib
import json
import posixpath
import secrets as pysecrets
from pathlib import Path

from .errors import LapinfraError
from .nodes import DOCKER_API_PORT, Nodes
from .tunnel import Tunnel


class MasterSession(contextlib.ExitStack):
    """SSH to the master with tunnels to its Docker API (a unix socket) and its registry (a port)."""

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
        # the Docker API on a unix socket only this account reaches (lapinfra/tunnel.py); the registry
        # listens on the master's address only (lapinfra/services.py), not its loopback. Both opened
        # at once: each is an ssh of its own that takes a fifth of a second to connect.
        api = self.enter_context(Tunnel(nodes.ssh_config, master, DOCKER_API_PORT, unix=True, wait=False))
        registry = self.enter_context(Tunnel(nodes.ssh_config, master, self.env.registry.port,
                                             remote_host=str(self.env.master.ip), wait=False))
        self.api_url, self.registry_port = api.wait_open().url, registry.wait_open().port
        self.docker = docker.DockerClient(base_url=self.api_url, timeout=600)
        self.callback(self.docker.close)
        return self

    @property
    def registry_host(self) -> str:
        return f"docker.{self.env.domain}:{self.env.registry.port}"

    def auth(self) -> dict:
        """The registry's push account: this machine's pushes and its registry API calls."""
        return {"username": self.env.registry.user, "password": self.p.secrets.registry_password.reveal()}

    def pull_auth(self) -> dict:
        """The registry's pull-only account: what the master's engine pulls the release with."""
        return {"username": self.p.secrets.registry_pull_user, "password": self.p.secrets.registry_pull_password.reveal()}

    # ---- files on the node --------------------------------------------------
    def run(self, command: str, **kw):
        """A short command on the node (a file read, a mkdir): an error after COMMAND_SECONDS, not a hang."""
        from invoke.exceptions import CommandTimedOut

        try:
            return self.conn.run(command, hide=True, timeout=COMMAND_SECONDS, **kw)
        except CommandTimedOut:
            raise LapinfraError(f"{self.env.master.name} did not finish `{command[:80]}` within {COMMAND_SECONDS}s "
                                f"(is it overloaded or unreachable?)") from None

    def put(self, path: str, data: bytes, mode: int = 0o600) -> None:
        """Write one file atomically (write aside, then rename), with ``mode`` from its first byte."""
        self.run(f"mkdir -p {Path(path).parent}")
        write_file(self.conn.sftp(), path, data, mode)

    def read_json(self, path: str) -> dict | None:
        result = self.run(f"cat {path}", warn=True)
        if not (result.ok and result.stdout.strip()):
            return None
        try:
            return json.loads(result.stdout)
        except ValueError as exc:
            raise LapinfraError(f"{path} on {self.env.master.name} is not JSON ({exc})") from None

    def read_jsonl(self, path: str) -> list[dict]:
        """A JSON-lines log on the node (an absent file is empty; a torn last line is skipped)."""
        result = self.run(f"cat {path}", warn=True)
        out = []
        for line in result.stdout.splitlines() if result.ok else []:
            with contextlib.suppress(json.JSONDecodeError):
                out.append(json.loads(line))
        return out

    def append_jsonl(self, path: str, entry: dict) -> None:
        """Append one line to a JSON-lines log on the node (O_APPEND: lines never interleave)."""
        self.run(f"mkdir -p {Path(path).parent}")
        with self.conn.sftp().open(path, "a") as f:
            f.write(json.dumps(entry, sort_keys=True) + "\n")


# The bound of MasterSession.run: a file read or a mkdir takes a second, not minutes.
COMMAND_SECONDS = 120

# The folder write_file writes in, beside its target (a killed deploy may leave one; sync ignores it).
ASIDE = ".lapinfra-new-"


def write_file(sftp, path: str, data: bytes, mode: int) -> None:
    """Replace ``path`` on the node with ``data`` at ``mode``, never readable by anyone else
    on the way: sftp creates files with the server's default mode (0644), so the file is
    made in a folder of its own created 0700 beside ``path`` (mkdir takes the mode at once,
    nobody but root can open what is inside), set to ``mode`` before its first byte, then
    renamed onto ``path`` (atomic: a reader sees the old file or the new one)."""
    parent, name = posixpath.split(path)
    aside = posixpath.join(parent, f"{ASIDE}{pysecrets.token_hex(6)}")
    tmp = posixpath.join(aside, name)
    sftp.mkdir(aside, 0o700)
    try:
        with sftp.open(tmp, "wb") as f:
            f.chmod(mode)
            f.write(data)
        sftp.posix_rename(tmp, path)
    finally:
        with contextlib.suppress(OSError):
            sftp.remove(tmp)          # only there when the rename did not happen
        with contextlib.suppress(OSError):
            sftp.rmdir(aside)


def named_networks(client, name: str) -> list:
    """The engine's networks called exactly ``name``: its name filter also matches parts of
    names ("infra" finds the swarm's "lapinfra_apps")."""
    return [net for net in client.networks.list(names=[name]) if net.name == name]
