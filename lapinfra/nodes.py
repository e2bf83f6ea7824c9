"""Nodes: started and destroyed by Vagrant, reached over SSH with a pinned host key.

The Vagrantfile is rendered from ``nodes/Vagrantfile.j2`` into the environment's
build folder, which is also Vagrant's working directory (``.vagrant/`` lives
there). With the docker provider the project first creates the environment's
docker network; a node is a container running its own Docker engine and sshd.

Host keys: with the docker provider the node's host key is read through the
local Docker API (a trusted channel) right after the node starts, and written
to ``build/<env>/known_hosts``; every SSH connection afterwards rejects any
other key. With a VM provider (virtualbox) the key is read through Vagrant's own
channel (`vagrant ssh NODE -c cat ...`), never trusted on first use over the LAN.

Node state comes from where the nodes are: the local Docker engine for container
nodes, `vagrant status --machine-readable` for VMs (`parse_vagrant_status`,
`vm_state`: a VM that this checkout's Vagrant does not have but that answers at its
address is `running elsewhere`, e.g. on the office host while this is the administrator's
machine). What ``node.down`` removes and keeps (`down_plan`: the backup node's
repository only when asked) and whether an existing node container belongs to
another checkout (`managed_elsewhere`, from the `lapinfra.checkout` label the
Vagrantfile sets and Vagrant's recorded machine id) are pure functions over facts
gathered first.
"""
from __future__ import annotations

import os
import socket
import subprocess
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from . import records
from .errors import LapinfraError, NodeError

HOST_KEY_PUB = records.HOST_KEY_PUB                          # kept on /data: survives node recreation
VM_HOST_KEY_PUB = "/etc/ssh/ssh_host_ed25519_key.pub"          # a VM's own, on its disk
DOCKER_API_PORT = 2375  # the node's engine, bound to the node's loopback only
CONNECT_SECONDS = 10    # TCP connect, the SSH banner, the login: each bounded (Nodes.connect)
CHECKOUT_LABEL = "lapinfra.checkout"  # on a container node: the checkout whose Vagrant made it (Vagrantfile.j2)
BACKUP_REPOSITORY = "/data/restic"    # on the backup node (images/backup/lapbackup.py reaches it over sftp)


# ---- decisions: facts in, plans out (no Docker, no Vagrant) ---------------------------

def parse_vagrant_status(text: str) -> dict[str, str]:
    """`vagrant status --machine-readable` -> {machine: Vagrant's state id}.
    Each line is `timestamp,target,type,data...`; the state is the `state` line's data
    (`running`, `poweroff`, `saved`, `aborted`, `not_created`, ...)."""
    states = {}
    for line in text.splitlines():
        fields = line.split(",")
        if len(fields) >= 4 and fields[1] and fields[2] == "state":
            states[fields[1]] = fields[3].strip()
    return states


RUNNING_ELSEWHERE = "running elsewhere"


def vm_state(vagrant_state: str | None, answers: bool) -> str:
    """A VM node's state. Vagrant's own word when this checkout's Vagrant has the machine
    (`running`, `poweroff`, `saved`, ...). Otherwise (`not_created`, or ``vagrant_state``
    None: Vagrant cannot tell here, e.g. no VirtualBox on a workstation that is not the VM
    host): `running elsewhere` when the node answers at its address (the VM host's or
    another checkout's Vagrant runs it), else `absent` when Vagrant here says so, else
    `unknown`."""
    if vagrant_state not in (None, "", "not_created"):
        return vagrant_state
    if answers:
        return RUNNING_ELSEWHERE
    return "unknown" if vagrant_state is None else "absent"


def managed_elsewhere(container: dict | None, vagrant_id: str | None, checkout: str) -> str | None:
    """Why the existing container node cannot be started by this checkout's Vagrant, or
    None when there is none or it is this checkout's own. ``container``: its ``id`` and
    ``labels``; ``vagrant_id``: the id this checkout's Vagrant recorded for the machine
    (build/<env>/.vagrant/machines/<node>/docker/id), None when it recorded none."""
    if container is None:
        return None
    if vagrant_id and container["id"].startswith(vagrant_id.strip()):
        return None
    owner = (container.get("labels") or {}).get(CHECKOUT_LABEL)
    if owner == checkout:
        return "was made by this checkout, but Vagrant's record of it (.vagrant/) is gone"
    if owner:
        return f"is managed from the checkout {owner}"
    return "was not made by this checkout's Vagrant (another checkout, or by hand)"


def other_checkout_message(env_name: str, checkout: str, found: dict[str, str]) -> str:
    """The error of `node.up` when node containers exist that this checkout's Vagrant did
    not make: which, whose (``found``: container name -> managed_elsewhere's reason), and
    what to do."""
    prefix = "is managed from the checkout "
    owners = sorted({why[len(prefix):] for why in found.values() if why.startswith(prefix)})
    lines = [f"node.up --env={env_name}: the environment's nodes exist already, not managed from this checkout ({checkout}):"]
    lines += [f"  {name} {why}" for name, why in sorted(found.items())]
    there = f"in {' or '.join(owners)}" if owners else "in the checkout that made them"
    lines.append(f"Either `invoke node.down --env={env_name}` {there} and then `invoke node.up --env={env_name}` here, "
                 f"or take them over from here: `invoke node.down --env={env_name} --destroy-backups` removes them "
                 f"whichever checkout made them (without --destroy-backups the backup repository is kept, and it opens "
                 f"only with that checkout's secrets/{env_name}/restic.password: copy that folder here first).")
    return "\n".join(lines)


@dataclass
class DownPlan:
    """What `node.down` does: the nodes destroyed, the volumes removed, what is kept and why."""
    destroy: list = field(default_factory=list)         # nodes (config objects)
    remove_volumes: list[str] = field(default_factory=list)
    kept: list[tuple[str, str]] = field(default_factory=list)   # (volume or VM, why)


KEPT_BACKUP = "the backup repository; `--destroy-backups` removes it"
KEPT_DATA = "its /data (--keep-data)"
KEPT_BACKUP_VM = "its disk holds the backup repository; `--destroy-backups` destroys it"
KEPT_DATA_VM = "its disk holds its /data (--keep-data), which `vagrant destroy` would delete"
NOT_OURS_VM = "it runs from the VM host or another checkout, not from this one's Vagrant: `vagrant destroy {name}` there"


def down_plan(todo, provider: str, volumes, keep_data: bool = False, destroy_backups: bool = False,
              states: dict[str, str] | None = None) -> DownPlan:
    """Which nodes to destroy and which volumes to remove. ``volumes(node)`` is the node's
    [data volume, docker volume]. The backup node's /data holds the backup repository
    (/data/restic): it goes only with ``destroy_backups``, whatever ``keep_data`` says;
    ``keep_data`` keeps every other node's /data. A VM's /data is on its disk, which
    `vagrant destroy` deletes, so a VM whose /data is kept is not destroyed at all, nor is
    one that this checkout's Vagrant does not run (``states``: vm_state of each VM)."""
    plan = DownPlan()
    for node in todo:
        keep = not destroy_backups if node.role == "backup" else keep_data
        if provider == "docker":
            plan.destroy.append(node)
            data, *rest = volumes(node)
            if keep:
                plan.kept.append((data, KEPT_BACKUP if node.role == "backup" else KEPT_DATA))
            else:
                plan.remove_volumes.append(data)
            plan.remove_volumes.extend(rest)
        elif (states or {}).get(node.name) in (RUNNING_ELSEWHERE, "unknown"):
            plan.kept.append((f"VM {node.name}", NOT_OURS_VM.format(name=node.name)))
        elif keep:
            plan.kept.append((f"VM {node.name}", KEPT_BACKUP_VM if node.role == "backup" else KEPT_DATA_VM))
        else:
            plan.destroy.append(node)
    return plan


class Nodes:
    def __init__(self, project):
        self.p = project
        self.env = project.env
        self._vagrant_failure = ""   # why Vagrant could not tell the VMs' state, for the error that needs it

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
        try:
            run = subprocess.run(["vagrant", *args], env=env, capture_output=True, text=True)
        except FileNotFoundError:
            raise NodeError(f"vagrant is not installed here (`./lap` installs it); needed for `vagrant {args[0]}`") from None
        if run.returncode != 0:
            tail = "\n".join((run.stdout + run.stderr).strip().splitlines()[-20:])
            raise NodeError(f"vagrant {' '.join(args)} failed (in {self.p.build_dir}):\n{tail}")
        return run.stdout

    def ensure_node_network(self) -> None:
        """The environment's docker network: its subnet, and its dynamic range (ip_range,
        the LAN's DHCP range) where nodes without a fixed address get theirs."""
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

    def boot(self, name: str | None = None) -> None:
        """`vagrant up` the nodes (all, or ``name``), pin their host keys, wait until SSH
        answers, write the ssh_config. `invoke node.up` is lapinfra.nodeup.up: this, then
        the swarm and the nodes' DNS names."""
        todo = self.select(name)
        start = todo
        if self.env.provider == "docker":
            self._refuse_nodes_of_other_checkouts(todo)
            self.ensure_node_network()
            self._say_reused_data(todo)
            # `vagrant up` leaves a running container as it is, and takes seconds to say so
            states = self.states(todo)
            start = [node for node in todo if states[node.name] != "running"]
        else:
            self._refuse_vms_running_elsewhere(todo)
        if start:
            with self.p.reporter.step(f"vagrant up {' '.join(n.name for n in start)} ({self.env.name})"):
                self._vagrant_up(start)
        else:
            self.p.reporter.info(f"nodes {' '.join(n.name for n in todo)} ({self.env.name}): running already")
        for node in todo:
            if self.address(node) is None:   # a VM worker on DHCP: its address is known once it registered
                self.p.reporter.warn(f"node {node.name}: no fixed address; pin its key by name (docs/setup.md, 4b)")
                continue
            with self.p.reporter.step(f"node {node.name}: host key pinned, ssh answers"):
                self._pin_host_key(node)
                self.wait_ssh(node)
        self.write_ssh_config()

    def _vagrant_up(self, todo) -> None:
        try:
            self.vagrant("up", f"--provider={self.env.provider}", *[n.name for n in todo])
        except NodeError as exc:
            if self.env.provider == "docker":
                raise
            raise NodeError(f"{exc}\nNodes of provider {self.env.provider} are VMs started where {self.env.provider} runs: "
                            f"on the VM host, `vagrant up` in its copy of {self.p.build_dir} (docs/setup.md, step 3)") from None

    def _refuse_nodes_of_other_checkouts(self, todo) -> None:
        """Before `vagrant up`: a node container of this environment that this checkout's
        Vagrant did not make would fail with Docker's "name already in use"; say whose it is."""
        checkout = str(self.p.root.resolve())
        found = {}
        for node in todo:
            why = managed_elsewhere(self._container_facts(node), self._vagrant_id(node), checkout)
            if why:
                found[self.container_name(node)] = why
        if found:
            raise NodeError(other_checkout_message(self.env.name, checkout, found))

    def _refuse_vms_running_elsewhere(self, todo) -> None:
        """Before `vagrant up` of VMs: a node that this checkout's Vagrant does not have but
        that answers at its fixed address runs already; a second one must not be started."""
        states = self.states(todo)
        elsewhere = [n for n in todo if states[n.name] == RUNNING_ELSEWHERE]
        if elsewhere:
            where = ", ".join(f"{n.name} ({n.ip}:{n.admin_port})" for n in elsewhere)
            raise NodeError(f"node.up --env={self.env.name}: {where} answer(s), but this checkout's Vagrant "
                            f"({self.p.build_dir}/.vagrant) has no such VM: they run from another checkout or the VM host. "
                            f"Manage them there (`vagrant status` in its {self.p.build_dir.relative_to(self.p.root)}), "
                            f"or `vagrant destroy` them there first")

    def _say_reused_data(self, todo) -> None:
        """A kept /data volume (node.down keeps the backup repository) is mounted again by the
        next `vagrant up` (same volume name in the Vagrantfile): say so."""
        import docker.errors

        for node in todo:
            if self.state(node) != "absent":
                continue
            data = self.volumes(node)[0]
            try:
                self.p.docker.volumes.get(data)
            except docker.errors.NotFound:
                continue
            what = f"the backup repository ({BACKUP_REPOSITORY})" if node.role == "backup" else "its /data"
            self.p.reporter.info(f"node {node.name}: reusing the kept volume {data}: {what}")

    def _container_facts(self, node) -> dict | None:
        import docker.errors

        try:
            container = self.p.docker.containers.get(self.container_name(node))
        except docker.errors.NotFound:
            return None
        return {"id": container.id, "labels": container.labels or {}}

    def _vagrant_id(self, node) -> str | None:
        path = self.p.build_dir / ".vagrant" / "machines" / node.name / self.env.provider / "id"
        if not path.is_file():
            return None
        return path.read_text().strip() or None

    def _answers(self, node) -> bool:
        try:
            with socket.create_connection((str(node.ip), node.admin_port), timeout=2):
                return True
        except OSError:
            return False

    def down(self, name: str | None = None, keep_data: bool = False, destroy_backups: bool = False) -> DownPlan:
        """Destroy nodes (all, or ``name``) and their volumes. The backup node's /data (the
        backup repository) is kept unless ``destroy_backups``; ``keep_data`` keeps the
        other nodes' /data. A kept volume is mounted again by the next `node.up`."""
        todo = self.select(name)
        states = self.states(todo) if self.env.provider != "docker" else None
        plan = down_plan(todo, self.env.provider, self.volumes, keep_data, destroy_backups, states)
        if plan.destroy and (self.p.build_dir / "Vagrantfile").exists():
            with self.p.reporter.step(f"vagrant destroy {' '.join(n.name for n in plan.destroy)} ({self.env.name})"):
                self.vagrant("destroy", "-f", *[n.name for n in plan.destroy])
        if self.env.provider == "docker":
            self._remove_leftovers(plan)
        self._forget_host_keys(plan.destroy)
        for what, why in plan.kept:
            self.p.reporter.info(f"kept {what}: {why}")
        return plan

    def _remove_leftovers(self, plan: DownPlan) -> None:
        """Containers of the destroyed nodes that Vagrant here did not know (another
        checkout's, or left behind), the plan's volumes, and the network once unused."""
        import docker.errors

        client, checkout = self.p.docker, str(self.p.root.resolve())
        for node in plan.destroy:
            try:
                container = client.containers.get(self.container_name(node))
            except docker.errors.NotFound:
                continue
            owner = (container.labels or {}).get(CHECKOUT_LABEL)
            if owner and owner != checkout:
                self.p.reporter.info(f"{self.container_name(node)} was managed from the checkout {owner}: removed")
            container.remove(force=True)
        for volume in plan.remove_volumes:
            try:
                client.volumes.get(volume).remove(force=True)
            except docker.errors.NotFound:
                pass
        remaining = [n for n in self.env.nodes if n not in plan.destroy and self.state(n) != "absent"]
        if not remaining and self.env.network is not None:
            try:
                client.networks.get(self.env.network.name).remove()
            except docker.errors.NotFound:
                pass

    def state(self, node) -> str:
        """`running`, `absent`, or the provider's word for another state (Docker's `exited`,
        Vagrant's `poweroff`, ...); a VM that only answers is `running elsewhere`. A VM whose
        state cannot be known here is an error that says where to look."""
        state = self.states([node])[node.name]
        if state == "unknown":
            raise NodeError(f"node {node.name}: Vagrant cannot tell its state here ({self._vagrant_failure}) and it does "
                            f"not answer at {node.ip or 'its DHCP address'}:{node.admin_port}. Start it where its VMs run: on the VM host, "
                            f"`vagrant up {node.name}` in its copy of {self.p.build_dir.relative_to(self.p.root)} "
                            f"(docs/setup.md, step 3), then pin its key; or run this command on the VM host")
        return state

    def states(self, nodes) -> dict[str, str]:
        """The state of each node, from where the nodes are: the local Docker engine for
        container nodes, Vagrant (one `vagrant status`) for VMs, and for VMs that Vagrant
        here does not have, whether they answer at their address (vm_state)."""
        if self.env.provider != "docker":
            try:
                found = self.vagrant_states([n.name for n in nodes])
            except NodeError as exc:   # e.g. no VirtualBox here: only whether they answer is known
                self._vagrant_failure = " ".join(str(exc).splitlines()[1:])[-300:] or str(exc)
                found = None
            out = {}
            for node in nodes:
                said = None if found is None else found.get(node.name, "not_created")
                not_here = said in (None, "not_created")
                out[node.name] = vm_state(said, not_here and not node.dynamic and self._answers(node))
            return out
        import docker.errors

        out = {}
        for node in nodes:
            try:
                out[node.name] = self.p.docker.containers.get(self.container_name(node)).status
            except docker.errors.NotFound:
                out[node.name] = "absent"
        return out

    def vagrant_states(self, names: list[str]) -> dict[str, str]:
        if not (self.p.build_dir / "Vagrantfile").exists():
            raise NodeError(f"{self.p.build_dir / 'Vagrantfile'} is missing: `invoke render --env={self.env.name}` writes it")
        return parse_vagrant_status(self.vagrant("status", "--machine-readable", *names))

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
        states = self.states(self.env.nodes)
        for node in self.env.nodes:
            state = states[node.name]
            ssh = "-"
            if state in ("running", RUNNING_ELSEWHERE):
                ssh = "ok" if self._ssh_ok(node) else "no answer"
            ip = self.address(node) if state in ("running", RUNNING_ELSEWHERE) else (str(node.ip) if node.ip else None)
            rows.append({"name": node.name, "role": node.role, "ip": ip or "dynamic", "state": state, "ssh": ssh})
        return rows

    # ---- host keys and connections ---------------------------------------------------
    def _pin_host_key(self, node) -> None:
        key_type, key = self._read_host_key(node) if self.env.provider == "docker" else self._read_vm_host_key(node)
        lines = [l for l in self._known_lines() if not l.startswith(f"{node.ssh_host} ")]
        lines.append(f"{node.ssh_host} {key_type} {key}")
        self.known_hosts.parent.mkdir(parents=True, exist_ok=True)
        self.known_hosts.write_text("\n".join(lines) + "\n")

    def _read_host_key(self, node) -> tuple[str, str]:
        """Through the local Docker API: a trusted channel to the container node."""
        container = self.p.docker.containers.get(self.container_name(node))
        for _ in range(60):
            code, out = container.exec_run(["cat", HOST_KEY_PUB])
            if code == 0 and out.strip():
                return tuple(out.decode().split()[:2])
            time.sleep(0.5)
        raise NodeError(f"node {node.name}: no SSH host key at {HOST_KEY_PUB} after 30s")

    def _read_vm_host_key(self, node) -> tuple[str, str]:
        """Through Vagrant's own channel to the VM (never trusted on first use over the LAN)."""
        out = self.vagrant("ssh", node.name, "-c", f"cat {VM_HOST_KEY_PUB}")
        for line in out.splitlines():
            fields = line.split()
            if len(fields) >= 2 and fields[0].startswith(("ssh-", "ecdsa-")):
                return fields[0], fields[1]
        raise NodeError(f"node {node.name}: `vagrant ssh {node.name} -c 'cat {VM_HOST_KEY_PUB}'` printed no host key")

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
        content = "\n".join(blocks)
        if self.ssh_config.exists() and self.ssh_config.read_text() == content:
            return
        # written aside, then renamed: another process (the suite's, an ssh tunnel) reading it
        # meanwhile sees the old file or the new one, never a half-written one
        aside = self.ssh_config.with_name(f".{self.ssh_config.name}.{os.getpid()}.{threading.get_ident()}")   # threads too
        aside.write_text(content)
        aside.replace(self.ssh_config)

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
            ip, port=node.admin_port, user="root", connect_timeout=CONNECT_SECONDS,
            # commands on nodes never read the workstation's stdin (also under pytest or CI)
            config=Config(overrides={"run": {"in_stream": False}}),
            # a node that takes the TCP connection but never says hello (or never answers the
            # login) is an error after CONNECT_SECONDS too, not a hang
            connect_kwargs={"key_filename": str(self.p.secrets.path("admin_ed25519")), "look_for_keys": False, "allow_agent": False,
                            "banner_timeout": CONNECT_SECONDS, "auth_timeout": CONNECT_SECONDS},
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


def backup_known_hosts(project) -> str:
    """The backup node's pinned host key, as the backup container's known_hosts (read only)."""
    backup = project.env.node("backup")
    known = Nodes(project).known_hosts
    lines = [l for l in (known.read_text().splitlines() if known.exists() else []) if l.startswith(f"{backup.ssh_host} ")]
    if not lines:
        raise LapinfraError(f"the backup node {backup.name} ({backup.ip}) has no pinned host key: is it up? (`invoke node.up --env={project.name}`)")
    return "\n".join(lines) + "\n"


def write_backup_known_hosts(project) -> None:
    """backup_known_hosts into the secrets folder (a secret of the backup container), when it differs."""
    content = backup_known_hosts(project)
    path = project.secrets.path("backup_known_hosts")
    if not path.exists() or path.read_text() != content:
        project.secrets._write("backup_known_hosts", content)
