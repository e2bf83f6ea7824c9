"""`invoke plan` is the list of actions a deploy then applies (issue 14, "one plan, one executor").

promote.plan and deploy.deploy run against the same stand-in master: its files (the stand-in
SFTP of test_node_files), its engine (containers, the seeded and the pulled images), its registry
(repository -> image id). The plan taken first equals the actions the deploy records in its
releases.jsonl entry, for a first deploy, a deploy that changes nothing, and a new release with
changed config; and the deploy applies the very phases plan decides (phases.deploy_phases), in
their order. The e2e tier does the same against a real node (tests/e2e/test_promote.py)."""
from __future__ import annotations

import io
import json
from types import SimpleNamespace as NS

import docker.errors
import pytest

import contextlib
import itertools

from lapinfra import (backup, ddns, deploy, executor, phases, facts, gitpush, promote, records, services as svc, startstop, status,
                      swarm, verify)
from lapinfra.actions import as_json
from lapinfra.errors import LapinfraError
from lapinfra.nodes import Nodes
from tests.unit.test_git_known_hosts import Master as Conn, host_key
from tests.unit.test_node_files import SFTP, Node
from tests.unit.test_swarm import Engine as SwarmEngine, engines  # noqa: F401  (a fixture, the workers' engines)


class ReadableSFTP(SFTP):
    """The stand-in SFTP server, which plan also reads from (the config's diff)."""

    def open(self, path, mode="r"):
        if "w" in mode:
            return super().open(path, mode)
        return io.BytesIO(self.node.fs[path][2])


class Engine(SwarmEngine):
    """The master's engine: containers name -> (status, spec label), images tag (or reference) -> id,
    and the swarm it manages (test_swarm's stand-in)."""

    def __init__(self):
        super().__init__("master")
        self.containers_state, self.held, self.app_services = {}, {}, {}    # app services: name -> image
        self.on_networks = {}                                                # container -> its networks
        self.networks.get = lambda network: NS(connect=lambda name: self.on_networks[name].add(network))
        self.containers = NS(get=self._get, run=self._run)
        self.services = NS(get=self._service, create=lambda **spec: self.app_services.update({spec["name"]: spec["image"]}))
        self.login = lambda **kw: None
        self.images = NS(get=self._image)
        self.api = NS(load_image=self._load)

    def _get(self, name):
        if name not in self.containers_state:
            raise docker.errors.NotFound(name)
        status, spec = self.containers_state[name]
        return NS(status=status, labels={svc.SPEC_LABEL: spec},
                  attrs={"NetworkSettings": {"Networks": dict.fromkeys(self.on_networks[name], {})}},
                  start=lambda: self.containers_state.update({name: ("running", spec)}),
                  remove=lambda force=False: self.containers_state.pop(name))

    def _service(self, name):
        if name not in self.app_services:
            raise docker.errors.NotFound(name)
        return NS(name=name)

    def _init(self, **kw):
        super()._init(**kw)
        self.app_services.clear()           # a new swarm has no services

    def _run(self, **kwargs):
        self.containers_state[kwargs["name"]] = ("running", kwargs["labels"][svc.SPEC_LABEL])
        self.on_networks[kwargs["name"]] = {kwargs["network"]}

    def _image(self, tag):
        if tag not in self.held:
            raise docker.errors.ImageNotFound(tag)
        return NS(id=self.held[tag])

    def _load(self, archive):
        tag, image_id = archive
        self.held[tag.removesuffix(":latest")] = image_id     # as the engine finds "infra/base" for "infra/base:latest"
        yield {"stream": f"Loaded image: {tag}"}


class Image:
    """An image of the workstation's engine: ``save`` hands (tag, id) to the stand-in engine."""

    def __init__(self, tag, version):
        self.id = f"sha256:{tag.replace('/', '-')}-{version}"

    def save(self, named):
        return named, self.id


class Session(phases.MasterSession):
    """A MasterSession on the stand-ins, entered without connecting."""

    registry_host = "docker.internal:5000"

    def __init__(self, project):
        super().__init__(project)
        node = Node()
        self.conn = Conn(node)
        self.conn._sftp = ReadableSFTP(node)
        self.docker = Engine()
        self.registry = {}            # repository -> image id
        self.appended = []            # the releases.jsonl entries

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def append_jsonl(self, path, entry):
        self.appended.append(entry)

    def pull(self, reference):
        """The master's engine pulls ``reference`` (<registry host>/<repository>:latest) from the registry."""
        repository = reference.split("/", 1)[1].rsplit(":", 1)[0]
        self.docker.held[reference] = self.registry[repository]


@pytest.fixture
def master(project, monkeypatch, engines):
    backup_node = project.env.node("backup")
    known = Nodes(project).known_hosts
    known.parent.mkdir(parents=True, exist_ok=True)
    known.write_text(f"{backup_node.ssh_host} {host_key().split()[0]} {host_key().split()[1]}\n")
    s = Session(project)
    s.conn.node.mkdirs(phases.GIT_HOST_KEY.rsplit("/", 1)[0])      # the git server made its host key
    s.conn.node.fs[phases.GIT_HOST_KEY] = ("file", 0o644, host_key().encode())
    version = {"n": 1}
    monkeypatch.setattr(phases, "built_image", lambda client, tag: Image(tag, version["n"]))
    monkeypatch.setattr(facts, "registry_has", lambda session, repository: repository in s.registry)
    monkeypatch.setattr(executor, "copy_in_registry",
                        lambda session, source, target: s.registry.update({target: s.registry[source]}) or True)
    monkeypatch.setattr(executor, "push_one",
                        lambda session, image, repository, tag, layers_from="": s.registry.update({repository: image.id}) or (0.0, (1, 1)))
    monkeypatch.setattr(executor, "pull_one", lambda session, reference: s.pull(reference))
    for module, name in ((deploy, "ensure_infra_network"), (startstop, "ensure_infra_network"), (phases, "wait_registry"),
                         (phases, "wait_healthy")):
        monkeypatch.setattr(module, name, lambda *a, **kw: None)
    seconds = itertools.count()
    monkeypatch.setattr(records, "now", lambda: f"2026-12-04T05:00:{next(seconds) % 60:02d}+0000")   # each record its own
    engines.by_name["master"] = s.docker                             # the swarm's manager is the session's engine
    for name in ("worker1", "worker2"):
        engines.by_name[name].manager = s.docker
    # the DNS server's node.<domain>: name -> addresses, read by a zone transfer, changed by signed updates
    s.names = {}
    monkeypatch.setattr(ddns, "transfer", lambda p, zone, timeout: {n: list(a) for n, a in s.names.items()})
    monkeypatch.setattr(ddns, "send", lambda message, server, **kw: s.names.update(
        {r.name.to_text(omit_final_dot=True): [r[0].address] for r in message.sections[2] if r.deleting is None}))
    monkeypatch.setattr(Nodes, "dynamic_records", lambda self: {"worker1.node.internal": "172.28.10.130"})
    for module in (promote, deploy):      # plan's and the deploy's
        monkeypatch.setattr(module, "MasterSession", lambda p: s)
        monkeypatch.setattr(module, "check_gate", lambda *a: None)
    # what a deploy does besides its phases, which other tests cover
    monkeypatch.setattr(deploy, "env_lock", lambda *a, **kw: contextlib.nullcontext())
    monkeypatch.setattr(backup, "recover_interrupted", lambda *a: None)
    # the target's git repository: whether its server runs, its branch's commit, its deployed-<commit> tags
    s.git = {"up": True, "branch": None, "tags": set()}
    head = "c0ffee" * 6 + "c0ff"
    monkeypatch.setattr(gitpush, "check_git", lambda session, p, force=False: gitpush.read(session, p))
    monkeypatch.setattr(gitpush, "read", lambda session, p: facts.GitFacts(
        head, up=s.git["up"], branch=s.git["branch"] if s.git["up"] else None, tagged=head[:12] in s.git["tags"]))
    monkeypatch.setattr(gitpush, "push", lambda session, p, action: s.git.update(branch=action.commit) or s.git["tags"].add(action.commit[:12]))
    monkeypatch.setattr(status, "publish_quietly", lambda *a, **kw: True)
    s.version, s.engines = version, engines
    return s


def releasing(monkeypatch, release: str, files: dict[str, bytes]) -> None:
    """This checkout is ``release``, its rendered config ``files`` (for plan and the deploy)."""
    for module in (promote, deploy):
        monkeypatch.setattr(module, "release_id", lambda root: release)
        monkeypatch.setattr(module, "config_files", lambda p: files)


def plan_then_deploy(project, s, monkeypatch, release: str, files: dict[str, bytes]) -> tuple[list, list]:
    """(plan's actions, the actions the deploy then applied and recorded in releases.jsonl)."""
    releasing(monkeypatch, release, files)
    planned = promote.plan(project)["actions"]
    deploy.deploy(project)
    entry = s.appended[-1]
    assert entry["outcome"] == "deployed" and entry["release"] == release
    return planned, entry["actions"]


def test_the_plan_is_what_the_deploy_applies_first_again_and_for_a_new_release(project, master, monkeypatch):
    files = {"proxy/nginx.conf": b"events {}\n", "dns/named.conf": b"options {};\n"}
    planned, applied = plan_then_deploy(project, master, monkeypatch, "r1", files)
    assert planned == applied
    kinds = {a["action"] for a in applied}
    assert kinds == {"write file", "load image", "push image", "push git", "write release record", "init swarm",
                     "create apps network", "trust registry", "join swarm", "pull image", "container", "join network",
                     "register name"}
    joined, = [i for i, a in enumerate(applied) if a["action"] == "join network"]       # the proxy, once created
    assert applied[joined - 1] == {**applied[joined - 1], "action": "container", "container": "infra_proxy"}
    pushed, = [i for i, a in enumerate(applied) if a["action"] == "push git"]
    assert applied[pushed - 1]["action"] == "push image" and applied[pushed + 1]["action"] == "write release record"
    assert applied[-4:] == [{"action": "register name", "name": f"{n}.node.internal", "address": a} for n, a in (
        ("backup", "172.28.10.20"), ("master", "172.28.10.10"), ("worker1", "172.28.10.130"), ("worker2", "172.28.10.31"))]
    assert [a["node"] for a in applied if a["action"] == "join swarm"] == ["worker1", "worker2"]
    assert {a["container"] for a in applied if a["action"] == "container"} == {s.container for s in svc.services(project.env)}
    assert {a["name"] for a in applied if a["action"] == "pull image"} == set(phases.release_refs(
        phases.Target(project, records.read_release(master), master.registry_host)))

    planned, applied = plan_then_deploy(project, master, monkeypatch, "r1", files)
    # pyinfra's no-op: nothing to change (the git server holds the commit); the record of who deployed it now is written
    assert planned == applied == [{"action": "write release record", "release": "r1"}]

    changed = {"proxy/nginx.conf": b"events {}\n# another\n", "dns/extra.conf": b"zone {};\n"}
    planned, applied = plan_then_deploy(project, master, monkeypatch, "r2", changed)
    assert planned == applied
    assert [a["path"] for a in applied if a["action"] in ("write file", "remove file")] == [
        "/data/environment/dns/extra.conf", "/data/environment/proxy/nginx.conf", "/data/environment/dns/named.conf"]
    assert {a["action"] for a in applied} == {"write file", "remove file", "tag image", "write release record",
                                              "pull image", "container", "join network"}      # the proxy recreated


def test_a_new_build_of_the_seeded_images_is_loaded_and_planned_alike(project, master, monkeypatch):
    files = {"proxy/nginx.conf": b"events {}\n"}
    plan_then_deploy(project, master, monkeypatch, "r1", files)
    master.version["n"] = 2                                           # every image built anew
    planned, applied = plan_then_deploy(project, master, monkeypatch, "r2", files)
    assert planned == applied
    assert [a["tag"] for a in applied if a["action"] == "load image"] == sorted(phases.seed_tags(project.env))
    assert {a["action"] for a in applied} == {"load image", "push image", "write release record", "pull image", "container",
                                              "join network"}


def test_the_deploy_applies_the_phases_plan_decides_in_their_order(project, master, monkeypatch):
    walked = []
    for kind in {type(phase) for phase in phases.deploy_phases(project.env)}:
        def logged(self, s, target, ex, apply=kind.apply):
            walked.append(self.name)
            return apply(self, s, target, ex)
        monkeypatch.setattr(kind, "apply", logged)
    plan_then_deploy(project, master, monkeypatch, "r1", {"proxy/nginx.conf": b"events {}\n"})
    names = [phase.name for phase in phases.deploy_phases(project.env)]
    assert walked == names
    assert names[:6] == ["upload", "seed", "infra_registry", "images", "git push", "release record"]
    assert names[6:9] == ["swarm", "infra_registry", "pulls"]
    assert names[-4:] == ["health checks", "apps", "names", "git push"]     # once the containers that changed serve
    assert len(names) == 13 + len(svc.services(project.env)) - 1


def test_a_git_server_that_does_not_run_yet_gets_the_commit_once_the_deploy_started_it(project, master, monkeypatch):
    """A first deploy: its git server starts with the deploy, so plan puts the push last, where the deploy
    makes it (and the deploy's facts then find the server running)."""
    master.git["up"] = False
    real_read = gitpush.read

    def read(session, p):        # the server runs once infra_git was created
        master.git["up"] = "infra_git" in master.docker.containers_state
        return real_read(session, p)

    monkeypatch.setattr(gitpush, "read", read)
    planned, applied = plan_then_deploy(project, master, monkeypatch, "r1", {"proxy/nginx.conf": b"events {}\n"})
    assert planned == applied
    assert applied[-1] == {"action": "push git", "commit": "c0ffeec0ffee", "branch": "master"}
    assert [a["action"] for a in applied].count("push git") == 1


def test_a_deploy_asks_the_git_server_once_when_it_runs(project, master, monkeypatch):
    """The early push decides on the facts of the deploy's check, and the late one has nothing to do
    once the early one found the server running: one read (one ls-remote) per deploy."""
    reads, real_read = [], gitpush.read
    monkeypatch.setattr(gitpush, "read", lambda session, p: reads.append(1) or real_read(session, p))
    plan_then_deploy(project, master, monkeypatch, "r1", {"proxy/nginx.conf": b"events {}\n"})
    reads.clear()
    planned, applied = plan_then_deploy(project, master, monkeypatch, "r2", {"proxy/nginx.conf": b"events { }\n"})
    assert planned == applied and "push git" not in [a["action"] for a in applied]   # the same commit, pushed before
    assert len(reads) == 2      # plan's read, then the deploy's one (its check, which the early push decides on)


def test_plan_changes_nothing_on_the_master(project, master, monkeypatch):
    releasing(monkeypatch, "r1", {"proxy/nginx.conf": b"events {}\n"})
    fs, secrets = dict(master.conn.node.fs), sorted(project.secrets.path("x").parent.iterdir())
    out = promote.plan(project)
    assert out["actions"] and master.conn.node.fs == fs and master.docker.containers_state == {} and master.registry == {}
    assert [engine.calls for engine in master.engines.by_name.values()] == [[], [], []] and master.engines.cas == {}
    assert sorted(project.secrets.path("x").parent.iterdir()) == secrets     # nor here: no secret written


def test_the_swarms_repairs_are_planned_and_recorded_in_the_deploys_order(project, master, monkeypatch):
    files = {"proxy/nginx.conf": b"events {}\n"}
    plan_then_deploy(project, master, monkeypatch, "r1", files)
    manager, worker2 = master.docker, master.engines.by_name["worker2"]
    manager.members["m1"]["Spec"]["Availability"] = "drain"
    worker2.state = {"LocalNodeState": "active", "NodeID": "elsewhere", "ControlAvailable": False}   # another swarm
    manager.add_member("old-worker2", "worker2", "worker", state="down")
    planned, applied = plan_then_deploy(project, master, monkeypatch, "r1", files)
    assert planned == applied == [
        {"action": "write release record", "release": "r1"},
        {"action": "activate swarm node", "node": "master"},
        {"action": "leave swarm", "node": "worker2"},
        {"action": "join swarm", "node": "worker2", "address": "172.28.10.31", "manager": "172.28.10.10:2377"},
        {"action": "remove swarm node", "id": "old-worker2", "hostname": "worker2"}]
    assert worker2.calls[-2:][0] == ("leave",) and "old-worker2" not in manager.members


def test_the_recorded_apps_the_swarm_lacks_are_planned_and_brought_back(project, master, monkeypatch):
    files = {"proxy/nginx.conf": b"events {}\n"}
    image = "docker.internal:5000/apps/hello:0123456789ab"
    master.conn.node.mkdirs(records.APPS.rsplit("/", 1)[0])
    master.conn.node.fs[records.APPS] = ("file", 0o644, json.dumps({"hello": {"image": image}, "gone": {"image": "x"}}).encode())
    master.docker.app_services["hello"] = image        # in the swarm the master had; the deploy's new swarm lacks it
    planned, applied = plan_then_deploy(project, master, monkeypatch, "r1", files)
    assert planned == applied and {"action": "restore app", "name": "hello", "image": image} in applied
    assert master.docker.app_services == {"hello": image}      # "gone" is in no apps/<name>/: left alone

    planned, applied = plan_then_deploy(project, master, monkeypatch, "r1", files)
    assert planned == applied == [{"action": "write release record", "release": "r1"}]

    del master.docker.app_services["hello"]           # its service removed by hand
    planned, applied = plan_then_deploy(project, master, monkeypatch, "r1", files)
    assert planned == applied == [{"action": "write release record", "release": "r1"},
                                  {"action": "restore app", "name": "hello", "image": image}]


def test_a_node_name_missing_or_wrong_in_the_dns_is_planned_and_registered(project, master, monkeypatch):
    files = {"proxy/nginx.conf": b"events {}\n"}
    plan_then_deploy(project, master, monkeypatch, "r1", files)
    master.names["backup.node.internal"] = ["172.28.10.99"]          # moved by hand
    del master.names["worker2.node.internal"]                         # removed by hand
    monkeypatch.setattr(Nodes, "dynamic_records", lambda self: {"worker1.node.internal": "172.28.10.131"})   # a new address
    planned, applied = plan_then_deploy(project, master, monkeypatch, "r1", files)
    assert planned == applied == [{"action": "write release record", "release": "r1"}] + [
        {"action": "register name", "name": f"{n}.node.internal", "address": a} for n, a in (
            ("backup", "172.28.10.20"), ("worker1", "172.28.10.131"), ("worker2", "172.28.10.31"))]
    assert master.names["backup.node.internal"] == ["172.28.10.20"]


def test_a_dns_server_that_does_not_answer_yet_is_planned_as_holding_no_name(project, master, monkeypatch):
    def unreachable(p, zone, timeout):
        raise ddns.Unreachable("no DNS server yet")
    monkeypatch.setattr(ddns, "transfer", unreachable)
    releasing(monkeypatch, "r1", {})
    planned = promote.plan(project)["actions"]
    assert [a["name"] for a in planned if a["action"] == "register name"] == [
        "backup.node.internal", "master.node.internal", "worker1.node.internal", "worker2.node.internal"]


@pytest.fixture
def gated(project, master, monkeypatch):
    """The stand-in master as a promotion target: its /data snapshotted and restored by a stand-in backup
    tool (a copy of the node's files), its suite's outcome set by the test; every MasterSession opened counted."""
    project.env = master.env = project.env.model_copy(update={"promoted_from": "staging"})
    master.opened, master.suite, snapshots = [], {"passed": True}, {}
    for module in (promote, deploy, backup):
        monkeypatch.setattr(module, "MasterSession", lambda p: master.opened.append(p.name) or master)

    def tool(s, args):
        if args[0] == "snapshot":
            snapshots[f"snap{len(snapshots)}"] = dict(master.conn.node.fs)
            return {"id": f"snap{len(snapshots) - 1}"}
        if args[0] == "list":
            return [{"id": i, "time": "2026-12-04T05:00:00Z", "tags": [f"env={project.name}"]} for i in snapshots]
        master.conn.node.fs.clear()
        master.conn.node.fs.update(snapshots[args[1]])
        return {"restored": args[1]}
    monkeypatch.setattr(backup, "run_tool", tool)
    monkeypatch.setattr(master.docker.containers, "list", lambda all=False: [
        NS(name=name, remove=lambda force=False, name=name: master.docker.containers_state.pop(name))
        for name in list(master.docker.containers_state)], raising=False)
    master.read_jsonl = lambda path: [e for e in master.appended if "outcome" in e]      # releases.jsonl
    monkeypatch.setattr(verify, "run_suite", lambda p: (master.suite["passed"], {"tests": 1, "failures": int(not master.suite["passed"])}))
    return master


def started(actions: list[dict]) -> set:
    return {(a["container"], a["verb"]) for a in actions if a["action"] == "container"}


def test_a_gated_deploy_and_its_rollback_take_one_session_and_record_the_rollbacks_actions_apart(project, gated, monkeypatch):
    releasing(monkeypatch, "r1", {"proxy/nginx.conf": b"events {}\n"})
    deploy.deploy(project)                       # its pre-deploy snapshot through the deploy's session
    assert gated.opened == [project.name]
    first = gated.appended[-1]
    assert first["outcome"] == "deployed" and first["snapshot"] == "snap0" and "rollback_actions" not in first

    gated.opened.clear()
    gated.suite["passed"] = False
    releasing(monkeypatch, "r2", {"proxy/nginx.conf": b"events {}\n# r2\n"})
    with pytest.raises(LapinfraError, match="rolled back: test runs r1 again"):
        deploy.deploy(project)
    assert gated.opened == [project.name]         # the snapshot, the safety snapshot and the restore in the same one
    entry = gated.appended[-1]
    assert entry["outcome"] == "rolled back" and entry["release"] == "r2"
    assert {"action": "write release record", "release": "r2"} in entry["actions"]
    # the restore stopped every container and started the restored release r1 (its record read, not written)
    assert started(entry["rollback_actions"]) == {(s.container, "create") for s in svc.services(project.env)}
    assert not any(a["action"] == "write release record" for a in entry["rollback_actions"])
    assert records.read_release(gated).release == "r1"


def test_rollback_by_hand_takes_one_session_and_records_the_actions_of_its_start(project, gated, monkeypatch):
    for release, conf in (("r1", b"events {}\n"), ("r2", b"events {}\n# r2\n")):
        releasing(monkeypatch, release, {"proxy/nginx.conf": conf})
        deploy.deploy(project)
    monkeypatch.setattr(promote, "_listing", lambda s: (["environment", "lapinfra"], ["release.json"]))
    gated.opened.clear()
    entry = promote.rollback(project)
    assert gated.opened == [project.name]
    assert entry["release"] == "r1" and gated.appended[-1] == entry
    assert started(entry["actions"]) == {(s.container, "create") for s in svc.services(project.env)}


def test_the_deploy_waits_for_the_containers_its_start_changed_and_for_no_other(project, master, monkeypatch):
    waited = []
    monkeypatch.setattr(phases, "wait_healthy", lambda client, names, accepting=None: waited.append(sorted(names)))
    files = {"proxy/nginx.conf": b"events {}\n"}
    plan_then_deploy(project, master, monkeypatch, "r1", files)
    # a first deploy: every container but the registry, which the release's push waited for already
    assert waited == [sorted(s.container for s in svc.services(project.env) if s.name != "registry")]
    plan_then_deploy(project, master, monkeypatch, "r1", files)
    assert waited[1:] == []                                                        # nothing changed: no wait
    plan_then_deploy(project, master, monkeypatch, "r1", {"proxy/nginx.conf": b"events {}\n# changed\n"})
    assert waited[1:] == [["infra_proxy"]]
