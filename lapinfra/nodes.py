"""Nodes: started and destroyed by Vagrant, reached over SSH with a pinned host key.

The Vagrantfile is rendered from ``nodes/Vagrantfile.j2`` into the environment's
build folder, which is also Vagrant's working directory (``.vagrant/`` lives
there). With the docker provider the project first creates the environment's
docker network; a node is a container running its own Docker engine and sshd.

Host keys: with the docker provider the node's host key is read through the
local Docker API (a trusted channel) right after the node starts, and written
to ``build/<env>/known_hosts``; every SSH connection afterwards rejects any
other key.
"""
from __future__ import annotations

import os
import socket
import subprocess
import time
from pathlib import Path

from . import ddns
from .errors import LapinfraError, NodeError

HOST_KEY_PUB = "/data/lapinfra/ssh/ssh_host_ed25519_key.pub"  # kept on /data: survives node recreation
DOCKER_API_PORT = 2375  # the node's engine, bound to the node's loopback only


class Nodes:
    def __init__(self, project):
        self.p = project
        self.env = project.env

    # ---- names ----------------------------------------------------------------
    def container_name(self, node) -> str:
        return f"lapinfra-{self.env.name}-{node.name}"

    def volumes(self, node) -> list[str]:
        return [f"lapinfra-{self.env.name}-{node.name}-data", f"lapinfra-{self.env.name}-{node.name}-docker"]

    def select(self, name: str | None):
        if name is None:
            return list(self.env.nodes)
        match = [n for n in self.env.nodes if n.name == name]
        if not match:
            known = ", ".join(n.name for n in self.env.nodes)
            raise LapinfraError(f"nodes/{self.env.name}.yml: no node named {name!r}; nodes: {known}")
        return match

    @property
    def known_hosts(self) -> Path:
        return self.p.build_dir / "known_hosts"

    @property
    def ssh_config(self) -> Path:
        return self.p.build_dir / "ssh_config"

    # ---- vagrant ----------------------------------------------------------------
    def vagrant(self, *args: str) -> str:
        env = dict(os.environ, VAGRANT_CWD=str(self.p.build_dir), VAGRANT_NO_COLOR="1", VAGRANT_CHECKPOINT_DISABLE="1")
        run = subprocess.run(["vagrant", *args], env=env, capture_output=True, text=True)
        if run.returncode != 0:
            tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-20:])
            raise NodeError(f"vagrant {' '.join(args)} failed (in {self.p.build_dir}):\n{tail}")
        return run.stdout

    def ensure_network(self) -> None:
        """The environment's docker network: its subnet, and its dynamic range (ip_range,
        the seed's DHCP range) where nodes without a fixed address get theirs."""
        import docker.errors

        net = self.env.network
        if self.env.provider != "docker" or net is None:
            return
        try:
            existing = self.p.docker.networks.get(net.name)
        except docker.errors.NotFound:
            existing = None
        if existing is not None:
            pools = existing.attrs.get("IPAM", {}).get("Config") or []
            if str(net.subnet) not in [c.get("Subnet") for c in pools]:
                raise NodeError(f"docker network {net.name} exists with subnets {[c.get('Subnet') for c in pools]}, "
                                f"not {net.subnet}: remove it or change network.subnet")
            if str(net.dynamic_range) in [c.get("IPRange") for c in pools]:
                return
            existing.reload()
            if existing.containers:
                raise NodeError(f"docker network {net.name} hands out dynamic addresses from {[c.get('IPRange') for c in pools]}, "
                                f"not {net.dynamic_range}: `invoke node.down --env={self.env.name}` first")
            existing.remove()   # unused: made again with the dynamic range
        pool = docker.types.IPAMPool(subnet=str(net.subnet), iprange=str(net.dynamic_range))
        self.p.docker.networks.create(net.name, driver="bridge", ipam=docker.types.IPAMConfig(pool_configs=[pool]),
                                      labels={"lapinfra.env": self.env.name})

    def up(self, name: str | None = None) -> None:
        self.ensure_network()
        if self.env.provider != "docker":
            raise NodeError(f"provider {self.env.provider}: nodes are VMs on a real host; run `vagrant up` there (see docs/setup.md)")
        todo = self.select(name)
        with self.p.reporter.step(f"vagrant up {' '.join(n.name for n in todo)} ({self.env.name})"):
            self.vagrant("up", "--provider=docker", *[n.name for n in todo])
        for node in todo:
            with self.p.reporter.step(f"node {node.name}: host key pinned, ssh answers"):
                self._pin_host_key(node)
                self.wait_ssh(node)
        self.write_ssh_config()
        if self.env.workers and self.state(self.env.master) == "running":
            from . import swarm

            # the master manages the swarm, the workers join it (lapinfra/swarm.py)
            for name, action in swarm.ensure(self.p).items():
                self.p.reporter.info(f"swarm: {name}: {action}")
        # a node that comes up registers its name, where the master's DNS already runs
        ddns.register_nodes(self.p, expect_down=True)

    def down(self, name: str | None = None, keep_data: bool = False) -> None:
        todo = self.select(name)
        if (self.p.build_dir / "Vagrantfile").exists():
            with self.p.reporter.step(f"vagrant destroy {' '.join(n.name for n in todo)} ({self.env.name})"):
                self.vagrant("destroy", "-f", *[n.name for n in todo])
        self._remove_leftovers(todo, keep_data)

    def _remove_leftovers(self, todo, keep_data: bool) -> None:
        import docker.errors

        client = self.p.docker
        for node in todo:
            try:
                client.containers.get(self.container_name(node)).remove(force=True)
            except docker.errors.NotFound:
                pass
            for volume in self.volumes(node)[1:] if keep_data else self.volumes(node):
                try:
                    client.volumes.get(volume).remove(force=True)
                except docker.errors.NotFound:
                    pass
        remaining = [n for n in self.env.nodes if n not in todo and self.state(n) != "absent"]
        if not remaining and self.env.network is not None:
            try:
                client.networks.get(self.env.network.name).remove()
            except docker.errors.NotFound:
                pass
        self._forget_host_keys(todo)

    def state(self, node) -> str:
        import docker.errors

        try:
            return self.p.docker.containers.get(self.container_name(node)).status
        except docker.errors.NotFound:
            return "absent"

    def address(self, node) -> str | None:
        """The node's address: its fixed one, else (a dynamic worker) the one it holds on
        the environment's network now; None when it does not run."""
        if not node.dynamic:
            return str(node.ip)
        if self.env.provider != "docker":
            return None
        import docker.errors

        try:
            container = self.p.docker.containers.get(self.container_name(node))
        except docker.errors.NotFound:
            return None
        network = (container.attrs["NetworkSettings"].get("Networks") or {}).get(self.env.network.name) or {}
        return network.get("IPAddress") or None

    def dynamic_records(self) -> dict[str, str]:
        """<node>.node.<domain> -> the current address of every running node without a fixed one."""
        out = {}
        for node in [n for n in self.env.nodes if n.dynamic]:
            try:
                ip = self.address(node)
            except LapinfraError:   # no Docker engine answers: such a node cannot run either
                ip = None
            if ip:
                out[f"{node.name}.node.{self.env.domain}"] = ip
        return out

    def status(self) -> list[dict]:
        rows = []
        for node in self.env.nodes:
            state = self.state(node) if self.env.provider == "docker" else "unknown (VM)"
            ssh = "-"
            if state == "running":
                ssh = "ok" if self._ssh_ok(node) else "no answer"
            ip = self.address(node) if state == "running" else (str(node.ip) if node.ip else None)
            rows.append({"name": node.name, "role": node.role, "ip": ip or "dynamic", "state": state, "ssh": ssh})
        return rows

    # ---- host keys and connections ---------------------------------------------------
    def _pin_host_key(self, node) -> None:
        container = self.p.docker.containers.get(self.container_name(node))
        for _ in range(60):
            code, out = container.exec_run(["cat", HOST_KEY_PUB])
            if code == 0 and out.strip():
                break
            time.sleep(0.5)
        else:
            raise NodeError(f"node {node.name}: no SSH host key at {HOST_KEY_PUB} after 30s")
        key_type, key = out.decode().split()[:2]
        lines = [l for l in self._known_lines() if not l.startswith(f"{node.ssh_host} ")]
        lines.append(f"{node.ssh_host} {key_type} {key}")
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def _forget_host_keys(self, todo) -> None:
        ips = {f"{n.ssh_host} " for n in todo}
        lines = [l for l in self._known_lines() if not any(l.startswith(ip) for ip in ips)]
        if self.known_hosts.exists():
            self.known_hosts.write_text("".join(l + "\n" for l in lines))

    def _known_lines(self) -> list[str]:
        return self.known_hosts.read_text().splitlines() if self.known_hosts.exists() else []

    def write_ssh_config(self) -> None:
        """An ssh_config for plain `ssh -F build/<env>/ssh_config master` and testinfra.
        A node without a fixed address gets the one it holds now, and its pinned key
        is looked up by its name (HostKeyAlias), whatever address it has."""
        blocks = []
        for node in self.env.nodes:
            ip = self.address(node)
            if ip is None:
                continue
            alias = f"  HostKeyAlias {node.name}\n" if node.dynamic else ""
            blocks.append(
                f"Host {node.name} {ip}\n  HostName {ip}\n  Port {node.admin_port}\n  User root\n{alias}"
                f"  IdentityFile {self.p.secrets.path('admin_ed25519').resolve()}\n  IdentitiesOnly yes\n"
                f"  UserKnownHostsFile {self.known_hosts.resolve()}\n  StrictHostKeyChecking yes\n"
                f"  PasswordAuthentication no\n  LogLevel ERROR\n"
            )
        self.ssh_config.write_text("\n".join(blocks))

    def wait_ssh(self, node, timeout: float = 60) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self._ssh_ok(node):
                return
            time.sleep(1)
        raise NodeError(f"node {node.name} ({self.address(node) or 'no address'}): no SSH login within {timeout:.0f}s")

    def _ssh_ok(self, node) -> bool:
        try:
            with socket.create_connection((self.address(node), node.admin_port), timeout=2):
                pass
            with self.connect(node) as conn:
                return conn.run("true", hide=True, warn=True).ok
        except Exception:  # noqa: BLE001 - any failure means "not yet"
            return False

    def connect(self, node=None):
        """A Fabric connection to a node (default: the master) that trusts only the pinned key."""
        import paramiko
        from fabric import Config, Connection

        node = node or self.env.master
        ip = self.address(node)
        if ip is None or not self.known_hosts.exists() or f"{node.ssh_host} " not in self.known_hosts.read_text():
            raise NodeError(f"no pinned host key for {node.name} ({ip or 'not running'}) in {self.known_hosts}: is the node up? (`invoke node.up --env={self.env.name}`)")
        conn = Connection(
            ip, port=node.admin_port, user="root", connect_timeout=10,
            # commands on nodes never read the workstation's stdin (also under pytest or CI)
            config=Config(overrides={"run": {"in_stream": False}}),
            connect_kwargs={"key_filename": str(self.p.secrets.path("admin_ed25519")), "look_for_keys": False, "allow_agent": False},
        )
        conn.client = paramiko.SSHClient()
        conn.client.load_host_keys(str(self.known_hosts))
        if node.dynamic:  # pinned under its name (HostKeyAlias): trusted at the address it holds now
            keys = conn.client.get_host_keys()
            for key_type, key in (keys.lookup(node.ssh_host) or {}).items():
                keys.add(ip if node.admin_port == 22 else f"[{ip}]:{node.admin_port}", key_type, key)
        conn.client.set_missing_host_key_policy(paramiko.RejectPolicy())
        return conn

    def run(self, command: str, node=None) -> int:
        """Run a command on a node (default: the master), streaming its output; return its exit code."""
        with self.connect(node) as conn:
            return conn.run(command, warn=True, pty=False).exited
