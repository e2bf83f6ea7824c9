"""Nodes without Docker or Vagrant: node state from `vagrant status` (VM providers) or a
stand-in Docker engine (container nodes), what node.down removes and keeps, and node.up
from a second checkout. Facts in, actions out."""
from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import textwrap
from pathlib import Path
from types import SimpleNamespace

import docker.errors
import pytest

from lapinfra import backup, ddns, nodeup, render, swarm
from lapinfra.errors import NodeError
from lapinfra.nodes import Nodes, down_plan, managed_elsewhere, parse_vagrant_status, vm_state
from lapinfra.project import Project
from lapinfra.report import Recorder

# What Vagrant 2.3 prints for `vagrant status --machine-readable` (commas inside data escaped).
VAGRANT_STATUS = textwrap.dedent("""\
    1764800000,master,metadata,provider,virtualbox
    1764800000,backup,metadata,provider,virtualbox
    1764800001,master,provider-name,virtualbox
    1764800001,master,state,running
    1764800001,master,state-human-short,running
    1764800001,master,state-human-long,The VM is running. To stop this VM%!(VAGRANT_COMMA) you can run `vagrant halt` to\\nshut it down forcefully.
    1764800001,backup,provider-name,virtualbox
    1764800001,backup,state,poweroff
    1764800001,backup,state-human-short,poweroff
    1764800001,,ui,info,Current machine states:\\n\\nmaster                    running (virtualbox)\\nbackup                    poweroff (virtualbox)
    """)


def test_vagrants_machine_readable_status_gives_each_machines_state():
    assert parse_vagrant_status(VAGRANT_STATUS) == {"master": "running", "backup": "poweroff"}


def test_a_vms_state_is_vagrants_word_else_whether_it_answers():
    assert vm_state("running", answers=False) == "running" and vm_state("poweroff", answers=True) == "poweroff"
    assert vm_state("not_created", answers=False) == "absent"
    assert vm_state("not_created", answers=True) == "running elsewhere"   # another checkout's or the VM host's
    assert vm_state(None, answers=True) == "running elsewhere"            # Vagrant cannot tell here (no VirtualBox)
    assert vm_state(None, answers=False) == "unknown"


# ---- a stand-in `vagrant`: a small executable first on PATH -----------------------------

FAKE_VAGRANT = """\
#!/usr/bin/env python3
import json, os, sys
state_file = os.environ["FAKE_VAGRANT_STATE"]
states = json.load(open(state_file))
args = sys.argv[1:]
with open(os.environ["FAKE_VAGRANT_LOG"], "a") as log:
    log.write(json.dumps({"args": args, "cwd": os.environ.get("VAGRANT_CWD")}) + "\\n")
fail = os.environ.get("FAKE_VAGRANT_FAIL", "")
if fail and args[0] == fail.split(":")[0]:
    sys.stderr.write(fail.split(":", 1)[1] + "\\n")
    sys.exit(1)
names = [a for a in args[1:] if not a.startswith("-")]
if args[0] == "status":
    for name in names or sorted(states):
        print(f"1764800001,{name},provider-name,virtualbox")
        print(f"1764800001,{name},state,{states.get(name, 'not_created')}")
elif args[0] == "up":
    states.update({n: "running" for n in names})
elif args[0] == "destroy":
    states.update({n: "not_created" for n in names})
elif args[0] == "ssh":
    print(f"ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAI{args[1]} root@{args[1]}")
json.dump(states, open(state_file, "w"))
"""


class FakeVagrant:
    def __init__(self, folder: Path):
        self.folder, self.state, self.log = folder, folder / "state.json", folder / "log.jsonl"

    def set(self, **states):
        self.state.write_text(json.dumps(states))

    def calls(self) -> list[list[str]]:
        return [json.loads(line)["args"] for line in self.log.read_text().splitlines()] if self.log.exists() else []

    def cwds(self) -> set[str]:
        return {json.loads(line)["cwd"] for line in self.log.read_text().splitlines()}


@pytest.fixture
def vagrant(tmp_path, monkeypatch):
    folder = tmp_path / "fake-vagrant"
    folder.mkdir()
    exe = folder / "vagrant"
    exe.write_text(FAKE_VAGRANT.replace("/usr/bin/env python3", sys.executable))
    exe.chmod(exe.stat().st_mode | stat.S_IXUSR)
    fake = FakeVagrant(folder)
    fake.set()
    monkeypatch.setenv("PATH", f"{folder}{os.pathsep}{os.environ['PATH']}")
    monkeypatch.setenv("FAKE_VAGRANT_STATE", str(fake.state))
    monkeypatch.setenv("FAKE_VAGRANT_LOG", str(fake.log))
    return fake


class NoDocker:
    """The workstation's Docker engine, where VMs never are: asking it is a bug."""

    def __getattr__(self, name):
        raise AssertionError(f"the local Docker engine was asked ({name}) for a VM node")


@pytest.fixture
def prod(tree, monkeypatch):
    """prod: VirtualBox nodes (master 192.168.0.10, backup 192.168.0.11), its Vagrantfile rendered."""
    p = Project("prod", root=tree, reporter=Recorder())
    p.secrets.ensure()
    render.render_all(p)
    p.__dict__["docker"] = NoDocker()
    monkeypatch.setattr(Nodes, "wait_ssh", lambda self, node, timeout=60: None)
    monkeypatch.setattr(Nodes, "_ssh_ok", lambda self, node: True)
    monkeypatch.setattr(Nodes, "_answers", lambda self, node: False)
    monkeypatch.setattr(ddns, "register_nodes", lambda project, expect_down=False: True)
    return p


def test_the_state_of_vm_nodes_comes_from_vagrant_not_from_the_local_docker_engine(prod, vagrant):
    vagrant.set(master="running", backup="poweroff")
    nodes = Nodes(prod)
    assert nodes.state(prod.env.master) == "running"
    assert nodes.state(prod.env.node("backup")) == "poweroff"
    vagrant.set(master="not_created")
    assert nodes.state(prod.env.master) == "absent"
    assert vagrant.calls()[0] == ["status", "--machine-readable", "master"]
    assert vagrant.cwds() == {str(prod.build_dir)}          # Vagrant's working directory: build/prod


def test_node_status_of_vm_nodes_shows_vagrants_view_in_one_call(prod, vagrant):
    vagrant.set(master="running", backup="poweroff")
    rows = {r["name"]: r for r in Nodes(prod).status()}
    assert (rows["master"]["state"], rows["master"]["ssh"]) == ("running", "ok")
    assert (rows["backup"]["state"], rows["backup"]["ssh"]) == ("poweroff", "-")
    assert rows["backup"]["ip"] == "192.168.0.11"
    assert vagrant.calls() == [["status", "--machine-readable", "master", "backup"]]


class Recovered(Exception):
    """Raised where dr.recover opens its SSH session: the steps before it are what is tested."""


@pytest.fixture
def session_reached(monkeypatch):
    def reached(project):
        raise Recovered()

    monkeypatch.setattr(backup, "MasterSession", reached)


def test_dr_recover_on_virtualbox_starts_a_new_master_vm_and_pins_its_key_through_vagrant(prod, vagrant, session_reached):
    vagrant.set(master="not_created", backup="running")      # the master is lost, the backup node is left
    with pytest.raises(Recovered):
        backup.recover(prod)
    calls = vagrant.calls()
    assert ["up", "--provider=virtualbox", "master"] in calls
    assert ["ssh", "master", "-c", "cat /etc/ssh/ssh_host_ed25519_key.pub"] in calls
    assert not any(c[0] in ("up", "destroy") and "backup" in c for c in calls)
    known = (prod.build_dir / "known_hosts").read_text()
    assert "[192.168.0.10]:2222 ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAImaster" in known


def test_dr_recover_on_virtualbox_keeps_a_master_vm_that_runs(prod, vagrant, session_reached):
    vagrant.set(master="running", backup="running")
    with pytest.raises(Recovered):
        backup.recover(prod)
    assert [c for c in vagrant.calls() if c[0] == "up"] == []


def test_dr_recover_from_a_seed_machine_without_virtualbox_uses_the_master_the_vm_host_started(prod, vagrant, monkeypatch,
                                                                                              session_reached):
    monkeypatch.setenv("FAKE_VAGRANT_FAIL", "status:Vagrant could not detect VirtualBox! Make sure VirtualBox is installed.")
    monkeypatch.setattr(Nodes, "_answers", lambda self, node: node.name == "master")
    with pytest.raises(Recovered):
        backup.recover(prod)
    assert [c for c in vagrant.calls() if c[0] == "up"] == []
    rows = {r["name"]: r for r in Nodes(prod).status()}
    assert rows["master"]["state"] == "running elsewhere" and rows["master"]["ssh"] == "ok"
    assert rows["backup"]["state"] == "unknown"


def test_dr_recover_where_vagrant_cannot_tell_and_the_master_is_gone_says_where_to_start_it(prod, vagrant, monkeypatch,
                                                                                           session_reached):
    monkeypatch.setenv("FAKE_VAGRANT_FAIL", "status:Vagrant could not detect VirtualBox! Make sure VirtualBox is installed.")
    with pytest.raises(NodeError) as err:
        backup.recover(prod)
    message = str(err.value)
    assert "could not detect VirtualBox" in message and "192.168.0.10:2222" in message
    assert "on the VM host, `vagrant up master`" in message


def test_a_vm_that_answers_but_that_vagrant_here_does_not_have_is_not_started_twice(prod, vagrant, monkeypatch):
    monkeypatch.setattr(Nodes, "_answers", lambda self, node: node.name == "master")
    with pytest.raises(NodeError) as err:
        nodeup.up(prod, "master")
    assert "master (192.168.0.10:2222)" in str(err.value) and "another checkout or the VM host" in str(err.value)
    assert [c for c in vagrant.calls() if c[0] == "up"] == []


def test_vagrant_up_failing_for_a_vm_says_where_vms_are_started(prod, vagrant, monkeypatch):
    monkeypatch.setenv("FAKE_VAGRANT_FAIL", "up:The provider 'virtualbox' could not be found")
    with pytest.raises(NodeError) as err:
        nodeup.up(prod, "master")
    assert "could not be found" in str(err.value) and "on the VM host" in str(err.value)


def test_node_down_on_virtualbox_keeps_the_backup_vm_whose_disk_holds_the_repository(prod, vagrant):
    vagrant.set(master="running", backup="running")
    Nodes(prod).down()
    assert [c for c in vagrant.calls() if c[0] == "destroy"] == [["destroy", "-f", "master"]]
    assert "kept VM backup: its disk holds the backup repository; `--destroy-backups` destroys it" in prod.reporter.lines
    Nodes(prod).down(destroy_backups=True)
    assert vagrant.calls()[-1] == ["destroy", "-f", "master", "backup"]


# ---- container nodes: a stand-in Docker engine ------------------------------------------

class Engine:
    """The local Docker engine: node containers, volumes, networks, and what was removed."""

    def __init__(self):
        self.found, self.volume_names, self.network_names, self.removed = {}, set(), set(), []
        engine = self

        def get(kind, table):
            def lookup(name):
                if name not in table:
                    raise docker.errors.NotFound(f"no {kind} {name}")
                return SimpleNamespace(remove=lambda force=False: engine._remove(kind, name, table), **table_item(table, name))
            return lookup

        def table_item(table, name):
            return table[name] if isinstance(table, dict) else {}

        self.containers = SimpleNamespace(get=get("container", self.found))
        self.volumes = SimpleNamespace(get=get("volume", self.volume_names))
        self.networks = SimpleNamespace(get=get("network", self.network_names))

    def _remove(self, kind, name, table):
        self.removed.append((kind, name))
        table.discard(name) if isinstance(table, set) else table.pop(name)

    def add_node(self, container, node_id="c0ffee", labels=None, status="running"):
        self.found[container] = {"id": node_id, "labels": labels or {}, "status": status}


ALL_VOLUMES = {f"lapinfra-test-{n}-{kind}" for n in ("master", "backup", "worker1", "worker2") for kind in ("data", "docker")}


@pytest.fixture
def engine(project):
    e = Engine()
    for node in project.env.nodes:
        e.add_node(f"lapinfra-test-{node.name}", labels={"lapinfra.checkout": str(project.root.resolve())})
    e.volume_names.update(ALL_VOLUMES)
    e.network_names.add(project.env.network.name)
    project.__dict__["docker"] = e
    return e


def _removed(engine, kind):
    return {name for k, name in engine.removed if k == kind}


def test_node_down_keeps_the_backup_repository_and_says_how_to_remove_it(project, engine):
    Nodes(project).down()
    assert _removed(engine, "volume") == ALL_VOLUMES - {"lapinfra-test-backup-data"}
    assert engine.volume_names == {"lapinfra-test-backup-data"}
    assert _removed(engine, "container") == {f"lapinfra-test-{n.name}" for n in project.env.nodes}
    assert _removed(engine, "network") == {"lapinfra-test"}
    assert "kept lapinfra-test-backup-data: the backup repository; `--destroy-backups` removes it" in project.reporter.lines


def test_node_down_with_destroy_backups_leaves_nothing(project, engine):
    Nodes(project).down(destroy_backups=True)
    assert engine.volume_names == set() and engine.found == {} and engine.network_names == set()
    assert not any(line.startswith("kept ") for line in project.reporter.lines)


def test_node_down_of_one_node_removes_that_node_only(project, engine):
    Nodes(project).down("master")
    assert _removed(engine, "volume") == {"lapinfra-test-master-data", "lapinfra-test-master-docker"}
    assert _removed(engine, "container") == {"lapinfra-test-master"}
    assert "lapinfra-test" in engine.network_names          # the other nodes still use it


def test_node_down_of_the_backup_node_alone_still_keeps_its_repository(project, engine):
    Nodes(project).down("backup")
    assert _removed(engine, "volume") == {"lapinfra-test-backup-docker"}
    assert "lapinfra-test-backup-data" in engine.volume_names
    assert "kept lapinfra-test-backup-data: the backup repository; `--destroy-backups` removes it" in project.reporter.lines


def test_node_down_says_whose_nodes_it_removed(project, engine):
    engine.add_node("lapinfra-test-master", labels={"lapinfra.checkout": "/srv/other-clone"})
    Nodes(project).down()
    assert "lapinfra-test-master was managed from the checkout /srv/other-clone: removed" in project.reporter.lines


def test_node_down_on_virtualbox_leaves_vms_that_run_from_elsewhere_to_their_vagrant(prod, vagrant, monkeypatch):
    monkeypatch.setattr(Nodes, "_answers", lambda self, node: node.name == "master")    # Vagrant here has none
    Nodes(prod).down(destroy_backups=True)
    assert [c for c in vagrant.calls() if c[0] == "destroy"] == [["destroy", "-f", "backup"]]
    assert any(line.startswith("kept VM master: it runs from the VM host or another checkout") and
               "`vagrant destroy master` there" in line for line in prod.reporter.lines)


def test_the_down_plan_keep_data_and_destroy_backups(project):
    env, volumes = project.env, Nodes(project).volumes
    plan = down_plan(env.nodes, "docker", volumes, keep_data=True)
    assert plan.remove_volumes == [f"lapinfra-test-{n.name}-docker" for n in env.nodes]
    assert [what for what, _ in plan.kept] == [f"lapinfra-test-{n.name}-data" for n in env.nodes]
    plan = down_plan(env.nodes, "docker", volumes, keep_data=True, destroy_backups=True)
    assert "lapinfra-test-backup-data" in plan.remove_volumes          # asked for by name: it goes
    assert "lapinfra-test-master-data" not in plan.remove_volumes
    plan = down_plan(env.nodes, "virtualbox", volumes, keep_data=True, destroy_backups=False)
    assert plan.destroy == [] and plan.remove_volumes == []            # a VM's /data is on its disk


def test_the_volume_node_down_keeps_is_the_one_the_next_node_up_mounts(project):
    kept = [what for what, _ in down_plan(project.env.nodes, "docker", Nodes(project).volumes).kept]
    assert kept == ["lapinfra-test-backup-data"]
    vagrantfile = render.render_all(project).files[project.build_dir / "Vagrantfile"]
    backup_block = vagrantfile.split('config.vm.define "backup"')[1].split("config.vm.define")[0]
    assert '"-v", "lapinfra-test-backup-data:/data"' in backup_block


@pytest.fixture
def up_path(project, engine, vagrant, monkeypatch):
    """node.up on container nodes, its Docker-side steps stood in for."""
    (project.build_dir).mkdir(parents=True, exist_ok=True)
    (project.build_dir / "Vagrantfile").write_text("")
    monkeypatch.setattr(Nodes, "ensure_node_network", lambda self: None)
    monkeypatch.setattr(Nodes, "_pin_host_key", lambda self, node: None)
    monkeypatch.setattr(Nodes, "wait_ssh", lambda self, node, timeout=60: None)
    monkeypatch.setattr(Nodes, "address", lambda self, node: str(node.ip) if node.ip else "172.28.10.129")
    monkeypatch.setattr(Nodes, "write_ssh_config", lambda self: None)
    monkeypatch.setattr(swarm, "ensure", lambda p: {})
    monkeypatch.setattr(ddns, "register_nodes", lambda p, expect_down=False: True)
    return vagrant


def test_node_up_after_node_down_mounts_the_kept_backup_repository_again_and_says_so(project, engine, up_path):
    Nodes(project).down()
    nodeup.up(project)
    assert ["up", "--provider=docker", "master", "backup", "worker1", "worker2"] in up_path.calls()
    assert ("node backup: reusing the kept volume lapinfra-test-backup-data: the backup repository (/data/restic)"
            in project.reporter.lines)


def test_node_up_from_a_second_checkout_names_the_checkout_that_manages_the_environment(project, engine, up_path):
    for node in project.env.nodes:
        engine.add_node(f"lapinfra-test-{node.name}", labels={"lapinfra.checkout": "/home/alice/lap-infra"})
    with pytest.raises(NodeError) as err:
        nodeup.up(project)
    message = str(err.value)
    assert "lapinfra-test-master is managed from the checkout /home/alice/lap-infra" in message
    assert "`invoke node.down --env=test` in /home/alice/lap-infra" in message
    assert "--destroy-backups" in message and str(project.root.resolve()) in message
    assert [c for c in up_path.calls() if c[0] == "up"] == []      # no raw "name already in use" from Docker


def _own_nodes(project, engine, stopped=()):
    """Node containers this checkout's Vagrant made; those named in ``stopped`` exited."""
    for node in project.env.nodes:
        machine = project.build_dir / ".vagrant/machines" / node.name / "docker"
        machine.mkdir(parents=True)
        (machine / "id").write_text(f"id-{node.name}")
        engine.add_node(f"lapinfra-test-{node.name}", node_id=f"id-{node.name}0123",
                        status="exited" if node.name in stopped else "running")


def test_node_up_of_this_checkouts_own_nodes_goes_ahead(project, engine, up_path):
    _own_nodes(project, engine, stopped={"worker1"})
    nodeup.up(project)
    assert [c for c in up_path.calls() if c[0] == "up"] == [["up", "--provider=docker", "worker1"]]   # the stopped one only


def test_node_up_with_every_node_running_does_not_call_vagrant(project, engine, up_path):
    _own_nodes(project, engine)
    nodeup.up(project)
    assert [c for c in up_path.calls() if c[0] == "up"] == []
    assert "nodes master backup worker1 worker2 (test): running already" in project.reporter.lines


def test_who_manages_an_existing_node_container():
    here = "/work/clone-b"
    assert managed_elsewhere(None, None, here) is None
    assert managed_elsewhere({"id": "abc123", "labels": {}}, "abc123", here) is None
    assert managed_elsewhere({"id": "abc", "labels": {"lapinfra.checkout": "/work/clone-a"}}, None, here) \
        == "is managed from the checkout /work/clone-a"
    assert "record of it (.vagrant/) is gone" in managed_elsewhere({"id": "abc", "labels": {"lapinfra.checkout": here}}, None, here)
    assert "by hand" in managed_elsewhere({"id": "abc", "labels": {}}, "other", here)


RUBY_VAGRANT = """\
require "json"
$args = {}
class Rec
  def initialize; @name = nil; end
  def method_missing(name, *args, **kw)
    @name = args[0] if name == :name=
    $args[@name] = args[0] if name == :create_args=
    yield Rec.new if block_given?
    self
  end
  def respond_to_missing?(*)
    true
  end
end
module Vagrant
  def self.require_version(*); end
  def self.configure(_)
    yield Rec.new
  end
end
load ARGV[0]
puts JSON.dump($args)
"""


def test_the_vagrantfile_labels_each_container_node_with_the_checkout_that_made_it(project, tmp_path):
    render.render_all(project)
    stub = tmp_path / "vagrant_stub.rb"
    stub.write_text(RUBY_VAGRANT)
    run = subprocess.run(["ruby", str(stub), str(project.build_dir / "Vagrantfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr
    args = json.loads(run.stdout)["lapinfra-test-master"]
    assert f"lapinfra.checkout={project.root.resolve()}" in args
