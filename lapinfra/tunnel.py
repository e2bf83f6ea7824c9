"""Local forwarding to a node, through OpenSSH.

Commands and file transfers go through Fabric; the bulk data of image pushes
and of the Docker API goes through ``ssh -N -L`` with the environment's
ssh_config (admin key, pinned host key, StrictHostKeyChecking yes). Paramiko's
forwarding was measured at about 10 MB/s here and dropped parallel layer uploads
under load ("Socket exception: Bad file descriptor"), which failed pushes;
OpenSSH moves the same data several times faster and has been reliable.

The node's Docker API (root on the node, no authentication) is forwarded to a
unix socket in a folder of its own (0700, removed when the tunnel closes): only
the workstation account that opened it can reach it. The registry's tunnel stays
a TCP port of 127.0.0.1, because ``docker push`` names its target host:port; the
registry asks for the account's password on it (docs/security.md).
"""
from __future__ import annotations

import shutil
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from .errors import NodeError

# AF_UNIX paths are limited to 108 bytes (104 on BSDs): a long TMPDIR falls back to /tmp.
SOCKET_NAME = "docker.sock"
MAX_SOCKET_PATH = 100


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def ssh_argv(ssh_config: Path, host: str, local: str, remote: str) -> list[str]:
    """``ssh -N -L local:remote``: ``local`` is ``127.0.0.1:<port>`` or a socket path; ``remote``
    ``<address>:<port>`` as the node sees it. A socket is created 0600 (StreamLocalBindMask),
    replacing a stale one of the same path (StreamLocalBindUnlink)."""
    return ["ssh", "-F", str(ssh_config), "-N", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
            "-o", "ServerAliveInterval=15", "-o", "StreamLocalBindUnlink=yes", "-o", "StreamLocalBindMask=0177",
            "-L", f"{local}:{remote}", host]


def socket_folder() -> Path:
    """A fresh folder only this account can enter (mkdtemp makes it 0700)."""
    base = tempfile.gettempdir()
    if len(base) + 40 > MAX_SOCKET_PATH:
        base = "/tmp"
    return Path(tempfile.mkdtemp(prefix="lapinfra-ssh-", dir=base))


class Tunnel:
    """127.0.0.1:<port> on the workstation -> <remote_host>:<remote_port> as the node sees it
    (its loopback unless told); with ``unix=True`` a socket in a fresh 0700 folder instead of
    the port (``path``, ``url`` for the Docker SDK)."""

    def __init__(self, ssh_config: Path, host: str, remote_port: int, timeout: float = 20,
                 remote_host: str = "127.0.0.1", unix: bool = False, wait: bool = True):
        self.port = None
        self.folder = self.path = None
        if unix:
            self.folder = socket_folder()
            self.path = self.folder / SOCKET_NAME
            local = str(self.path)
        else:
            self.port = free_port()
            local = f"127.0.0.1:{self.port}"
        self.remote = f"{remote_host}:{remote_port}"
        try:
            self.proc = subprocess.Popen(
                ssh_argv(ssh_config, host, local, self.remote),
                stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
            )
        except BaseException:
            self._remove_folder()
            raise
        self.host, self.timeout = host, timeout
        if wait:
            self.wait_open()

    def wait_open(self) -> "Tunnel":
        """Return once the tunnel takes connections (``wait=False``: several opened at once, then each
        waited for); NodeError when ssh fails or it does not open within the timeout."""
        self._wait(self.host, self.timeout)
        return self

    @property
    def url(self) -> str:
        """The Docker SDK's base_url for this tunnel."""
        return f"unix://{self.path}" if self.path else f"tcp://127.0.0.1:{self.port}"

    def _connect(self) -> None:
        if self.path:
            with socket.socket(socket.AF_UNIX) as s:
                s.settimeout(1)
                s.connect(str(self.path))
        else:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                pass

    def _wait(self, host: str, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                error = self.proc.stderr.read().strip()
                self.close()
                raise NodeError(f"ssh tunnel to {host} {self.remote} failed: {error}")
            try:
                self._connect()
                return
            except OSError:
                time.sleep(0.1)
        self.close()
        raise NodeError(f"ssh tunnel to {host} {self.remote} did not open within {timeout:.0f}s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait(5)
        if self.proc.stderr:
            self.proc.stderr.close()
        self._remove_folder()

    def _remove_folder(self) -> None:
        if self.folder is not None:
            shutil.rmtree(self.folder, ignore_errors=True)

    def __enter__(self) -> "Tunnel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
