"""Local port forwarding to a node's loopback, through OpenSSH.

Commands and file transfers go through Fabric; the bulk data of image pushes
and of the Docker API goes through ``ssh -N -L`` with the environment's
ssh_config (admin key, pinned host key, StrictHostKeyChecking yes). Paramiko's
forwarding was measured at about 10 MB/s here and dropped parallel layer uploads
under load ("Socket exception: Bad file descriptor"), which failed pushes;
OpenSSH moves the same data several times faster and has been reliable.
"""
from __future__ import annotations

import socket
import subprocess
import time
from pathlib import Path

from .errors import NodeError


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


class Tunnel:
    """127.0.0.1:<port> on the workstation -> 127.0.0.1:<remote_port> on the node."""

    def __init__(self, ssh_config: Path, host: str, remote_port: int, timeout: float = 20):
        self.port = free_port()
        self.proc = subprocess.Popen(
            ["ssh", "-F", str(ssh_config), "-N", "-o", "ExitOnForwardFailure=yes", "-o", "BatchMode=yes",
             "-o", "ServerAliveInterval=15", "-L", f"127.0.0.1:{self.port}:127.0.0.1:{remote_port}", host],
            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True,
        )
        self._wait(host, remote_port, timeout)

    def _wait(self, host: str, remote_port: int, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise NodeError(f"ssh tunnel to {host}:{remote_port} failed: {self.proc.stderr.read().strip()}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    return
            except OSError:
                time.sleep(0.1)
        self.close()
        raise NodeError(f"ssh tunnel to {host}:{remote_port} did not open within {timeout:.0f}s")

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
        if self.proc.stderr:
            self.proc.stderr.close()

    def __enter__(self) -> "Tunnel":
        return self

    def __exit__(self, *exc) -> None:
        self.close()
