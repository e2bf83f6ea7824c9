"""Worker nodes and applications, without Docker: configuration, rendering, the service spec."""
from types import SimpleNamespace

import pytest

from lapinfra import apps, config, ddns, render, services
from lapinfra.errors import ConfigError, LapinfraError


def _expect(tree, file, key, fragment):
    with pytest.raises(ConfigError) as err:
        config.load(tree, "test")
    assert (err.value.file, err.value.key) == (file, key)
    assert fragment in str(err.value)


def _nodes(tree, text):
    (tree / "nodes/test.yml").write_text(text)


def test_a_worker_without_an_address_takes_a_dynamic_one(tree):
    env = config.load(tree, "test")
    worker1 = next(n for n in env.nodes if n.name == "worker1")
    assert worker1.dynamic and worker1.ip is None
    assert str(env.network.dynamic_range) == "172.28.10.128/25"   # the subnet's upper half by default
    assert [n.name for n in env.workers] == ["worker1", "worker2"]
    assert "worker1.node.internal" not in env.node_records           # registered with the address it holds
    assert env.node_records["worker2.node.internal"] == "172.28.10.31"
    assert worker1.ssh_host == "worker1"                              # pinned by name (HostKeyAlias)


def test_only_workers_may_go_without_an_address(tree):
    _nodes(tree, "nodes:\n  - {name: master, role: master}\n  - {name: backup, role: backup, ip: 172.28.10.20}\n")
    _expect(tree, "nodes/test.yml", "nodes[0].ip", "the master node needs a fixed address")


def test_a_fixed_address_in_the_dynamic_range_is_refused(tree):
    text = (tree / "nodes/test.yml").read_text().replace("ip: 172.28.10.31", "ip: 172.28.10.200")
    _nodes(tree, text)
    _expect(tree, "nodes/test.yml", "nodes[3].ip", "lies in the dynamic range 172.28.10.128/25")


def test_a_dynamic_range_outside_the_subnet_is_refused(tree):
    env_yml = tree / "environments/test/env.yml"
    env_yml.write_text(env_yml.read_text() + "  dynamic: 172.28.99.0/25\n")
    _expect(tree, "environments/test/env.yml", "network.dynamic", "is not inside the subnet")


def test_an_app_without_a_health_check_names_its_file(tree):
    app = tree / "apps/hello/app.yml"
    app.write_text("image: infra/sampleapp\nreplicas: 3\nport: 8080\n")
    _expect(tree, "apps/hello/app.yml", "apps.hello.health", "Field required")


def test_an_app_with_a_wrong_value_names_file_and_key(tree):
    app = tree / "apps/hello/app.yml"
    app.write_text(app.read_text().replace("replicas: 3", "replicas: none"))
    _expect(tree, "apps/hello/app.yml", "apps.hello.replicas", "integer")


def test_an_app_may_not_take_an_infrastructure_name(tree):
    (tree / "apps/git").mkdir()
    (tree / "apps/git/app.yml").write_text((tree / "apps/hello/app.yml").read_text())
    _expect(tree, "apps/git/app.yml", "apps.git", "cannot name an application")


def test_apps_are_served_only_where_there_are_workers(tree):
    test, staging = config.load(tree, "test"), config.load(tree, "staging")
    assert test.zone_records["hello.internal"] == str(test.master.ip)
    assert staging.workers == [] and staging.routed_apps == {} and "hello.internal" not in staging.zone_records
    assert services.by_name(test, "proxy").networks == (services.APPS_NETWORK,)
    assert services.by_name(staging, "proxy").networks == ()


def test_the_load_balancer_routes_each_app_to_its_replicas(project):
    out = render.render_all(project)
    conf = out.files[project.build_dir / "rendered/proxy/nginx.conf"]
    assert "server_name hello.internal;" in conf
    assert "include /run/lapinfra/upstreams/hello.conf;" in conf
    block = conf.split("upstream app_hello {")[1].split("}")[0]
    assert "hash $lb_key consistent;" in block                        # sticky, as app.internal
    assert out.files[project.build_dir / "rendered/proxy/apps"] == "hello 8080\n"
    render.check_zone(out.files[project.build_dir / "rendered/dns/db.zone"], "internal", project.env.zone_records)


def test_a_dynamic_worker_gets_no_fixed_address_in_the_vagrantfile(project):
    vagrantfile = render.render_all(project).files[project.build_dir / "Vagrantfile"]
    worker1 = vagrantfile.split('config.vm.define "worker1"')[1].split("config.vm.define")[0]
    worker2 = vagrantfile.split('config.vm.define "worker2"')[1].split("config.vm.define")[0]
    assert '"--ip"' not in worker1 and '"--network", LAPINFRA_NETWORK' in worker1
    assert '"--ip", "172.28.10.31"' in worker2


def test_a_dynamic_worker_needs_ip_to_be_registered_by_hand(project):
    name = ddns.parse("worker1.node", "internal")
    with pytest.raises(LapinfraError, match="no fixed address.*--ip"):
        ddns.address_for(project.env, name, None)
    assert ddns.address_for(project.env, ddns.parse("worker2.node", "internal"), None) == "172.28.10.31"


def test_the_service_of_an_app(project):
    spec = apps.service_spec(project.env, "hello", "docker.internal:5000/apps/hello:0123456789ab")
    assert spec["image"] == "docker.internal:5000/apps/hello:0123456789ab"
    assert spec["mode"] == {"replicated": {"Replicas": 3}}
    assert spec["constraints"] == ["node.role==worker"]
    assert spec["networks"] == [services.APPS_NETWORK]
    assert spec["hostname"] == "{{.Node.Hostname}}-{{.Task.Slot}}"
    assert spec["endpoint_spec"]["Mode"] == "dnsrr"                    # tasks.hello: every replica's own address
    assert spec["healthcheck"]["Test"] == ["CMD", "busybox", "wget", "-q", "-O", "/dev/null", "http://127.0.0.1:8080/"]
    assert spec["healthcheck"]["Interval"] == 2_000_000_000
    update = spec["update_config"]
    assert (update["FailureAction"], update["Order"], update["Parallelism"], update["Monitor"]) == ("rollback", "start-first", 1, 10_000_000_000)


def test_app_commands_refuse_an_unknown_app_or_an_environment_without_workers(tree):
    from lapinfra.project import Project

    with pytest.raises(LapinfraError, match="apps/nope/app.yml: no such application; applications: hello"):
        apps._app(Project("test", root=tree).env, "nope")
    with pytest.raises(LapinfraError, match="nodes/staging.yml declares no worker nodes"):
        apps._app(Project("staging", root=tree).env, "hello")


def test_a_dynamic_worker_vm_asks_the_lans_dhcp(tree):
    import subprocess

    from lapinfra.project import Project
    from lapinfra.report import Recorder

    prod = tree / "nodes/prod.yml"
    prod.write_text(prod.read_text() + "  - name: worker1\n    role: worker\n")
    p = Project("prod", root=tree, reporter=Recorder())
    p.secrets.ensure()
    vagrantfile = render.render_all(p).files[p.build_dir / "Vagrantfile"]
    worker = vagrantfile.split('config.vm.define "worker1"')[1]
    assert 'type: "dhcp"' in worker and '"public_network"' in worker
    run = subprocess.run(["ruby", "-c", str(p.build_dir / "Vagrantfile")], capture_output=True, text=True)
    assert run.returncode == 0, run.stderr


class FakeService:
    """A swarm service whose UpdateStatus moves through the given states, one per reload."""

    def __init__(self, statuses, tasks=()):
        self.name = "hello"
        self._statuses, self._tasks, self.attrs = list(statuses), list(tasks), {}

    def reload(self):
        if self._statuses:
            self.attrs = {"UpdateStatus": self._statuses.pop(0)}

    def tasks(self, filters=None):
        return self._tasks


def test_an_update_waits_for_its_own_outcome_not_the_previous_one(monkeypatch):
    monkeypatch.setattr(apps.time, "sleep", lambda s: None)
    previous = {"State": "completed", "StartedAt": "t1"}
    service = FakeService([previous, previous, {"State": "updating", "StartedAt": "t2"}, {"State": "completed", "StartedAt": "t2"}])
    apps.wait_update(service, before="t1", timeout=10)
    assert service._statuses == []        # read until the new update completed


def test_a_rolled_back_update_is_an_error_that_says_why(monkeypatch):
    monkeypatch.setattr(apps.time, "sleep", lambda s: None)
    failed = {"Status": {"State": "failed", "Err": "task: non-zero exit (137): dockerexec: unhealthy container"}}
    service = FakeService([{"State": "updating", "StartedAt": "t2"},
                           {"State": "rollback_completed", "StartedAt": "t2", "Message": "rollback completed"}], [failed])
    with pytest.raises(LapinfraError, match="rolled it back: rollback completed; failed replicas: .*unhealthy container"):
        apps.wait_update(service, before=None, timeout=10)


def test_the_nodes_infra_network_is_told_apart_from_the_swarms_lapinfra_apps():
    """Docker's name filter "infra" also returns "lapinfra_apps": that overlay network must
    neither be taken for the infra network nor removed (it broke deploys once the swarm ran)."""
    from lapinfra import phases

    class Net:
        def __init__(self, name, subnet):
            self.name, self.attrs = name, {"IPAM": {"Config": [{"Subnet": subnet}]}}

        @property
        def containers(self):
            raise AssertionError(f"{self.name} inspected")

        def remove(self):
            raise AssertionError(f"{self.name} removed")

    class Client:
        networks = SimpleNamespace(list=lambda names: [Net("lapinfra_apps", "172.29.1.0/24"), Net("infra", str(services.NETWORK_SUBNET))],
                                   create=lambda *a, **kw: pytest.fail("created again"))

    phases.ensure_infra_network(Client())
    assert [n.name for n in phases.named_networks(Client(), "infra")] == ["infra"]
