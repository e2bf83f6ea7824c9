"""The decisions of a deploy, facts in and actions out, and `invoke plan` taking the same ones.

lapinfra/decisions.py: files to write or remove, images to load onto the master, to push or
tag in its registry, the release record to write, images for the master's engine to pull,
containers to create, recreate or start, the applications' services to create again; pure
functions over facts read first
(lapinfra/facts.py), one table each, with no-op rows that expect no action, and the facts as
the actions leave them (after each, its decision has nothing left to do). The
executor (lapinfra/executor.py) does what they decide and records it; promote.plan shows
exactly their actions. Two disagreements plan had are pinned here: an image
whose id the current release holds is tagged in the registry only when the registry still holds
it, and a stopped container of the wanted spec is started, not kept."""
from __future__ import annotations

import hashlib
from types import SimpleNamespace as NS

import docker.errors
import pytest

from lapinfra import ddns, decisions, phases, executor, facts, gitpush, promote, records, services as svc, swarm
from lapinfra.actions import (ChangeContainer, InitSwarm, JoinNetwork, LoadImage, PullImage, PushGit, PushImage, RemoveFile,
                              RestoreApp, TagImage, WriteFile, WriteRelease, as_json)
from lapinfra.facts import GitFacts, NodeFacts
from lapinfra.nodes import Nodes
from lapinfra.report import Recorder

# ---- containers --------------------------------------------------------------------------

CONTAINERS = [
    # (status, spec label of the container, wanted label) -> action
    ((None, None, "a"), "create"),
    (("running", "a", "a"), "keep"),
    (("paused", "a", "a"), "keep"),        # a snapshot holds it for a moment and unpauses it itself
    (("exited", "a", "a"), "start"),
    (("created", "a", "a"), "start"),
    (("running", "b", "a"), "recreate"),
    (("paused", "b", "a"), "recreate"),
    (("exited", "b", "a"), "recreate"),
    (("running", None, "a"), "recreate"),  # no spec label: not made by lapinfra as it is now
]


@pytest.mark.parametrize("facts, action", CONTAINERS)
def test_container_action(facts, action):
    assert phases.container_action(*facts) == action


class Engine:
    """A stand-in Docker client with at most one container, and what was done to it."""

    def __init__(self, status, label):
        self.done = []
        container = None if status is None else NS(
            status=status, labels={svc.SPEC_LABEL: label} if label else {}, attrs={"NetworkSettings": {"Networks": {"infra": {}}}},
            start=lambda: self.done.append("start"), remove=lambda force=False: self.done.append("remove"))

        def get(name):
            if container is None:
                raise docker.errors.NotFound(name)
            return container
        self.containers = NS(get=get, run=lambda **kw: self.done.append("run"))


PAST = {"create": "created", "keep": "kept", "start": "started", "recreate": "recreated"}
DONE = {"create": ["run"], "keep": [], "start": ["start"], "recreate": ["remove", "run"]}


@pytest.mark.parametrize("facts, action", CONTAINERS)
def test_reconcile_does_what_container_action_decides_and_nothing_else(facts, action):
    status, label, wanted = facts
    engine = Engine(status, label)
    assert phases.reconcile(engine, {"name": "infra_dns", "labels": {svc.SPEC_LABEL: wanted}}, Recorder()) == PAST[action]
    assert engine.done == DONE[action]


# ---- images ------------------------------------------------------------------------------

IMAGES = {"dns": NS(id="sha256:d"), "git": NS(id="sha256:g"), "trac": NS(id="sha256:t")}

PUSHES = [
    # (current release's id -> repository, what the registry holds) -> decision per image
    pytest.param({}, set(), {"dns": ("push",), "git": ("push",), "trac": ("push",)}, id="first deploy"),
    pytest.param({"sha256:d": "infra/r1/dns", "sha256:g": "infra/r1/git", "sha256:t": "infra/r1/trac"},
                 {"infra/r2/dns", "infra/r2/git", "infra/r2/trac"},
                 {"dns": ("have",), "git": ("have",), "trac": ("have",)}, id="no-op: all there"),
    pytest.param({"sha256:d": "infra/r1/dns"}, {"infra/r1/dns"},
                 {"dns": ("tag", "infra/r1/dns"), "git": ("push",), "trac": ("push",)}, id="same image, other name"),
    pytest.param({"sha256:d": "infra/r1/dns"}, set(),
                 {"dns": ("push",), "git": ("push",), "trac": ("push",)}, id="the registry lost the current release"),
    pytest.param({"sha256:d": "infra/r2/dns"}, set(),
                 {"dns": ("push",), "git": ("push",), "trac": ("push",)}, id="the same release, not in the registry"),
]


@pytest.mark.parametrize("present, registry, decisions", PUSHES)
def test_push_decisions(present, registry, decisions):
    assert phases.push_decisions(IMAGES, "r2", present, registry.__contains__) == decisions


def test_present_images_of_a_release_record():
    record = records.Release.from_dict({"release": "r1", "images": {"dns": {"repository": "infra/r1/dns", "id": "sha256:d"}}})
    assert phases.present_images(record) == {"sha256:d": "infra/r1/dns"}
    assert phases.present_images(None) == {}


def test_image_actions_of_a_no_op_deploy_are_none_and_tags_come_before_pushes():
    every = {"infra/r2/dns", "infra/r2/git", "infra/r2/trac"}
    assert decisions.image_actions(IMAGES, "r2", None, every) == []
    current = records.new_release("r1", {"git": "sha256:g"}, {})
    got = decisions.image_actions(IMAGES, "r2", current, {"infra/r1/git"})
    assert [a.describe() for a in got] == ["tag infra/r2/git:latest in the registry (same image as infra/r1/git)",
                                           "push infra/r2/dns:latest", "push infra/r2/trac:latest"]
    assert got[0] == TagImage("git", "infra/r1/git", "infra/r2/git", "sha256:g")


MOUNTS = [
    # (the running release's images, the registry's repositories) -> the repository the push of dns mounts layers from
    pytest.param({}, set(), "", id="first deploy: nothing to mount"),
    pytest.param({"dns": "sha256:old"}, {"infra/r1/dns"}, "infra/r1/dns", id="changed image: the running one's layers"),
    pytest.param({"dns": "sha256:old"}, set(), "", id="running image gone from the registry: nothing to mount"),
    pytest.param({"git": "sha256:g"}, {"infra/r1/git"}, "", id="no running image of that name"),
]


@pytest.mark.parametrize("running, repositories, layers_from", MOUNTS)
def test_a_push_mounts_the_layers_of_the_running_image_of_its_name(running, repositories, layers_from):
    current = records.new_release("r1", running, {})
    pushes = [a for a in decisions.image_actions({"dns": IMAGES["dns"]}, "r2", current, repositories) if isinstance(a, PushImage)]
    assert [(a.repository, a.layers_from) for a in pushes] == [("infra/r2/dns", layers_from)]
    assert ("layers it shares with" in pushes[0].describe()) == bool(layers_from)
    assert pushes[0].to_json().get("layers_from", "") == layers_from


# ---- files -------------------------------------------------------------------------------

def sha(data: bytes) -> str:
    return decisions.sha256(data)


FILES = [
    # (desired files, what the node holds: path -> sha256) -> actions
    pytest.param({}, {}, [], id="no-op: nothing"),
    pytest.param({"a": b"1", "b/c": b"2"}, {"a": sha(b"1"), "b/c": sha(b"2")}, [], id="no-op: all there"),
    pytest.param({"a": b"1"}, {}, [WriteFile("/f", "a", 0o600)], id="new file"),
    pytest.param({"a": b"1"}, {"a": sha(b"old")}, [WriteFile("/f", "a", 0o600)], id="changed file"),
    pytest.param({"a": b"1"}, {"a": sha(b"1"), "z": sha(b"x")}, [RemoveFile("/f", "z")], id="extra file"),
    pytest.param({"b": b"2", "a": b"1"}, {"c": "x"}, [WriteFile("/f", "a", 0o600), WriteFile("/f", "b", 0o600),
                                                      RemoveFile("/f", "c")], id="writes in order, then removals"),
]


@pytest.mark.parametrize("files, remote, expected", FILES)
def test_file_actions(files, remote, expected):
    got = decisions.file_actions("/f", files, remote, 0o600)
    assert got == expected
    assert all(a.data == files[a.path] for a in got if isinstance(a, WriteFile))


def test_the_json_of_a_write_names_the_path_and_mode_never_the_content():
    action = WriteFile("/data/secrets/registry", "tls.key", 0o600, b"a made-up PAYLOAD")
    assert action.to_json() == {"action": "write file", "path": "/data/secrets/registry/tls.key", "mode": "0600"}
    assert "PAYLOAD" not in repr(action) and action.describe() == "write /data/secrets/registry/tls.key (0600)"


def test_folders_actions_keep_the_folders_order():
    desired = {"/b": ({"x": b"1"}, 0o644), "/a": ({"y": b"2"}, 0o600)}
    got = decisions.folders_actions(desired, {"/a": {}, "/b": {"x": sha(b"1")}})
    assert got == [WriteFile("/a", "y", 0o600)]
    assert decisions.folders_actions(desired, {"/a": {"y": sha(b"2")}, "/b": {"x": sha(b"1")}}) == []


# ---- seeding -----------------------------------------------------------------------------

SEEDS = {"infra/base": NS(id="sha256:b"), "infra/registry": NS(id="sha256:r")}


@pytest.mark.parametrize("seeded, loaded", [
    pytest.param({"infra/base": "sha256:b", "infra/registry": "sha256:r"}, [], id="no-op: both there"),
    pytest.param({}, ["infra/base", "infra/registry"], id="first installation"),
    pytest.param({"infra/base": "sha256:b", "infra/registry": "sha256:old"}, ["infra/registry"], id="another id"),
])
def test_seed_actions(seeded, loaded):
    got = decisions.seed_actions(SEEDS, seeded)
    assert [a.tag for a in got] == loaded and all(isinstance(a, LoadImage) and a.image is SEEDS[a.tag] for a in got)


# ---- the release record, and the pulls of the master's engine --------------------------------

RECORD_R2 = records.Release("r2", {"dns": records.ReleasedImage("infra/r2/dns", "sha256:d"),
                                   "git": records.ReleasedImage("infra/r2/git", "sha256:g")},
                            {"dns": "c1"}, deployed_by="bob", deployed_at="2026-12-04T05:00:00+0000")


@pytest.mark.parametrize("current, written", [
    pytest.param(RECORD_R2, False, id="no-op: the node holds this very record"),
    pytest.param(None, True, id="nothing deployed yet"),
    pytest.param(records.Release("r1"), True, id="another release"),
    pytest.param(records.Release.from_dict({**RECORD_R2.to_dict(), "deployed_by": "alice"}), True,
                 id="the same release, deployed by another or at another time"),
])
def test_release_actions(current, written):
    got = decisions.release_actions(current, RECORD_R2)
    assert got == ([WriteRelease("r2")] if written else [])
    assert all(a.record is RECORD_R2 for a in got)


REFS = {"dns": "reg:5000/infra/r2/dns:latest", "git": "reg:5000/infra/r2/git:latest"}


@pytest.mark.parametrize("held, pulled", [
    pytest.param({"reg:5000/infra/r2/dns:latest": "sha256:d", "reg:5000/infra/r2/git:latest": "sha256:g"}, [],
                 id="no-op: the engine holds both"),
    pytest.param({}, ["dns", "git"], id="a new release"),
    pytest.param({"reg:5000/infra/r2/dns:latest": "sha256:d", "reg:5000/infra/r2/git:latest": "sha256:swapped"}, ["git"],
                 id="another image under the release's tag"),
])
def test_pull_actions(held, pulled):
    got = decisions.pull_actions(REFS, RECORD_R2, held)
    assert got == [PullImage(name, REFS[name], RECORD_R2.images[name].id) for name in pulled]


# ---- the applications brought back ---------------------------------------------------------------

APPS = {"hello": "reg:5000/apps/hello:1", "shop": "reg:5000/apps/shop:2"}


@pytest.mark.parametrize("configured, services, restored", [
    pytest.param({"hello", "shop"}, {"hello", "shop"}, [], id="no-op: every recorded app has its service"),
    pytest.param({"hello", "shop"}, set(), ["hello", "shop"], id="a new swarm: every recorded app"),
    pytest.param({"hello", "shop"}, {"hello"}, ["shop"], id="one service gone"),
    pytest.param({"hello"}, set(), ["hello"], id="an app no longer in apps/ is left alone"),
    pytest.param(set(), set(), [], id="no-op: no app in apps/"),
])
def test_restore_actions(configured, services, restored):
    assert decisions.restore_actions(configured, APPS, services) == [RestoreApp(name, APPS[name]) for name in restored]


def test_nothing_recorded_restores_nothing():
    assert decisions.restore_actions({"hello"}, {}, set()) == []


# ---- the facts once the actions are applied: each decision then has nothing left to do -----------

def test_after_each_phases_actions_its_decision_has_nothing_left_to_do():
    node = facts.NodeFacts(files={"/f": {"z": sha(b"x")}}, containers={"infra_a": facts.ContainerState("exited", "1")})
    files = {"/f": ({"a": b"1"}, 0o644), "/g": ({"b": b"2"}, 0o600)}
    wanted = [kwargs("infra_a", "1"), kwargs("infra_b", "2")]
    decide = [lambda n: decisions.folders_actions(files, n.files),
              lambda n: decisions.seed_actions(SEEDS, n.seeded),
              lambda n: decisions.image_actions(IMAGES, "r2", None, n.manifests),
              lambda n: decisions.release_actions(n.release, RECORD_R2),
              lambda n: decisions.pull_actions(REFS, RECORD_R2, n.pulled),
              lambda n: decisions.container_actions(wanted, n.containers),
              lambda n: decisions.restore_actions(set(APPS), APPS, n.services)]
    for phase in decide:
        actions = phase(node)
        assert actions
        node = decisions.after(node, actions)
        assert phase(node) == []
    assert decisions.after(node, []) == node
    assert node.files == {"/f": {"a": sha(b"1")}, "/g": {"b": sha(b"2")}} and node.release is RECORD_R2


def test_a_new_swarm_has_no_services_left():
    node = decisions.after(facts.NodeFacts(apps=APPS, services=frozenset(APPS)), [InitSwarm("master", "172.28.10.10:2377")])
    assert node.services == frozenset() and len(decisions.restore_actions(set(APPS), node.apps, node.services)) == 2


# ---- containers, as a list ----------------------------------------------------------------

def kwargs(name, spec):
    return {"name": name, "labels": {svc.SPEC_LABEL: spec}}


@pytest.mark.parametrize("containers, expected", [
    pytest.param({"infra_a": ("running", "1"), "infra_b": ("paused", "2")}, [], id="no-op: all kept"),
    pytest.param({"infra_a": ("exited", "1")}, [("infra_a", "start"), ("infra_b", "create")], id="stopped and missing"),
    pytest.param({"infra_a": ("running", "0"), "infra_b": ("running", "2")}, [("infra_a", "recreate")], id="another spec"),
])
def test_container_actions(containers, expected):
    states = {name: facts.ContainerState(*fact) for name, fact in containers.items()}
    got = decisions.container_actions([kwargs("infra_a", "1"), kwargs("infra_b", "2")], states)
    assert [(a.container, a.verb) for a in got] == expected
    assert all(a.kwargs["name"] == a.container for a in got)


def test_keep_is_no_container_action():
    with pytest.raises(ValueError):
        ChangeContainer("infra_a", "keep", "1")


# ---- the executor: does what it is given, records each ---------------------------------------

class Registry:
    """A stand-in session for the executor: copies in the registry and pushes."""

    def __init__(self, copies_ok=True):
        self.done, self.copies_ok = [], copies_ok


@pytest.fixture
def registry(monkeypatch):
    reg = Registry()
    monkeypatch.setattr(executor, "copy_in_registry", lambda s, src, dst: reg.done.append(("copy", src, dst)) or reg.copies_ok)
    monkeypatch.setattr(executor, "push_one",
                        lambda s, image, repo, tag, layers_from="": reg.done.append(("push", repo, layers_from)) or (0.1, (0, 1)))
    return reg


def test_the_executor_records_what_it_applied_in_order(registry):
    ex = executor.Executor(Recorder(), s=registry, client=Engine(None, None))
    actions = [TagImage("git", "infra/r1/git", "infra/r2/git", "sha256:g"), PushImage("dns", "infra/r2/dns", "sha256:d"),
               ChangeContainer("infra_dns", "create", "a", {"name": "infra_dns"})]
    assert ex.apply(actions) == [actions[0], actions[2], actions[1]]     # the pushes together, last
    assert ex.applied == [actions[0], actions[2], actions[1]]
    assert registry.done == [("copy", "infra/r1/git", "infra/r2/git"), ("push", "infra/r2/dns", "")]
    assert ex.client.done == ["run"]
    assert ex.apply([]) == []


def test_the_tags_in_the_registry_are_made_several_at_once_and_recorded_in_their_order(monkeypatch):
    import threading

    together = threading.Barrier(3, timeout=10)      # broken unless three copies run at the same time
    monkeypatch.setattr(executor, "copy_in_registry", lambda s, src, dst: together.wait() >= 0)
    tags = [TagImage(name, f"infra/r1/{name}", f"infra/r2/{name}", f"sha256:{name}") for name in ("dns", "git", "trac")]
    assert executor.Executor(Recorder(), s=object()).apply(tags) == tags


def test_a_tag_the_registry_refuses_is_pushed_and_recorded_as_the_push(registry):
    registry.copies_ok = False
    ex = executor.Executor(Recorder(), s=registry)
    ex.apply([TagImage("git", "infra/r1/git", "infra/r2/git", "sha256:g")])
    # pushed instead, sending none of the layers the registry has under the name it could not copy
    assert as_json(ex.applied) == [PushImage("git", "infra/r2/git", "sha256:g", layers_from="infra/r1/git").to_json()]
    assert registry.done[-1] == ("push", "infra/r2/git", "infra/r1/git")


def test_the_executor_writes_the_release_record_and_pulls_together_last(monkeypatch):
    pulled, written = [], []
    monkeypatch.setattr(executor, "pull_one", lambda s, reference: pulled.append(reference))
    monkeypatch.setattr(executor, "write_release", lambda s, record: written.append(record))
    ex = executor.Executor(Recorder(), s=NS())
    actions = [PullImage("dns", REFS["dns"], "sha256:d"), WriteRelease("r2", RECORD_R2), PullImage("git", REFS["git"], "sha256:g")]
    assert ex.apply(actions) == [actions[1], actions[0], actions[2]]
    assert sorted(pulled) == sorted(REFS.values()) and written == [RECORD_R2]
    assert as_json(ex.applied)[0] == {"action": "write release record", "release": "r2"}


# ---- plan: the same decisions, on the node's facts ----------------------------------------

class Master:
    """A stand-in MasterSession for plan: the release record, the containers, the registry; its
    engine holds each image of release r2 (reference -> id: ``pulled``), as a deploy of r2 leaves it."""

    registry_host = "docker.internal:5000"

    def __init__(self, record, containers, registry, pulled):
        self.record, self.registry = record, registry
        self.containers = containers
        self.commands = []

        def get(name):
            if name not in containers:
                raise docker.errors.NotFound(name)
            status, label = containers[name]
            # (each on both networks: a running proxy has joined the applications' already)
            return NS(status=status, labels={svc.SPEC_LABEL: label},
                      attrs={"NetworkSettings": {"Networks": {"infra": {}, svc.APPS_NETWORK: {}}}})

        def image(tag):
            if tag not in pulled:
                raise docker.errors.ImageNotFound(tag)
            return NS(id=pulled[tag])
        self.docker = NS(containers=NS(get=get), images=NS(get=image))
        self.conn = NS(sftp=lambda: None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read_json(self, path):
        return self.record if path == records.RELEASE else None

    def run(self, command, warn=False):
        self.commands.append(command)
        assert command.startswith(("if [ -d ", "cat ")), f"plan ran {command!r}, which may write"
        return NS(stdout="", ok=False)


@pytest.fixture
def planned(project, monkeypatch):
    """plan(project) against a Master made of (current release's images, containers, registry)."""
    env = project.env
    images = {s.image: NS(id=f"sha256:{s.image}") for s in svc.services(env)}
    monkeypatch.setattr(promote, "release_id", lambda root: "r2")
    monkeypatch.setattr(promote, "built_images", lambda p: images)
    monkeypatch.setattr(promote, "config_files", lambda p: {})
    monkeypatch.setattr(promote, "seed_images", lambda p: {})
    monkeypatch.setattr(promote, "pending_secrets", lambda p, key=None: {})
    monkeypatch.setattr(phases, "uploaded_folders", lambda *a: {})
    monkeypatch.setattr(promote, "release_record", lambda p, release, imgs, files, pending=None: records.new_release(
        release, {name: image.id for name, image in imgs.items()}, {s.name: "c" for s in svc.services(env)}))
    monkeypatch.setattr(promote, "check_gate", lambda p, release, imgs: None)
    monkeypatch.setattr(gitpush, "read", lambda s, p: GitFacts(HEAD, up=True, branch=HEAD, tagged=True))   # holds it
    monkeypatch.setattr(facts, "registry_has", lambda s, repository: repository in s.registry)
    monkeypatch.setattr(Nodes, "dynamic_records", lambda self: {"worker1.node.internal": "172.28.10.130"})
    monkeypatch.setattr(ddns, "transfer", lambda p, zone, timeout: {n: [a] for n, a in ddns.node_names(p).items()})
    ca = hashlib.sha256(swarm.registry_ca(project)).hexdigest()     # the swarm as it should be (test_swarm.py: others)
    monkeypatch.setattr(swarm, "read", lambda p, manager: facts.SwarmFacts(
        facts.SwarmNode(env.master.name, "manager"), tuple(facts.SwarmNode(w.name, "worker", ca=ca) for w in env.workers),
        apps_network=True))
    wanted = {s.container: svc.run_kwargs(s, "", env, "c", images[s.image].id)["labels"][svc.SPEC_LABEL]
              for s in svc.services(env)}

    pulled = {f"{Master.registry_host}/infra/r2/{name}:latest": image.id for name, image in images.items()}

    def plan(current: dict[str, str], containers: dict[str, tuple], registry: set[str]) -> dict:
        record = {"release": "r1", "images": {n: {"repository": r, "id": images[n].id} for n, r in current.items()}}
        monkeypatch.setattr(promote, "MasterSession", lambda p: Master(record, containers, registry, pulled))
        return promote.plan(project)
    plan.images, plan.wanted = images, wanted
    return plan


def actions(out: dict) -> list[str]:
    """What a plan would change: every image not in the registry, every container not kept, every file."""
    return ([f"image {n}: {v}" for n, v in out["images"].items() if v != "in registry"]
            + [f"container {n}: {v}" for n, v in out["containers"].items() if v != "keep"]
            + [f"file {rel}" for rel in out["config"]])


RECORD = {"action": "write release record", "release": "r2"}     # every deploy's: who deployed it, when


def test_plan_of_an_unchanged_deploy_has_no_action_but_its_record(planned):
    names = list(planned.images)
    out = planned({}, {c: ("running", label) for c, label in planned.wanted.items()}, {f"infra/r2/{n}" for n in names})
    assert actions(out) == [] and out["actions"] == [RECORD]
    assert out["summary"] == ["write the release record of r2 (/data/lapinfra/release.json)"]


def test_plan_tags_an_image_in_the_registry_only_when_the_registry_still_holds_it(planned):
    containers = {c: ("running", label) for c, label in planned.wanted.items()}
    kept = {f"infra/r2/{n}" for n in planned.images if n != "dns"}
    held = planned({"dns": "infra/r1/dns"}, containers, kept | {"infra/r1/dns"})
    assert actions(held) == ["image dns: tag in registry (same image as infra/r1/dns)"]
    assert held["actions"] == [{"action": "tag image", "name": "dns", "source": "infra/r1/dns",
                                "repository": "infra/r2/dns", "id": "sha256:dns"}, RECORD]
    lost = planned({"dns": "infra/r1/dns"}, containers, kept)
    assert actions(lost) == ["image dns: push"]          # as deploy: the registry lacks infra/r1/dns too


def test_plan_starts_a_stopped_container_of_the_wanted_spec_as_reconcile_does(planned):
    containers = {c: ("running", label) for c, label in planned.wanted.items()}
    containers["infra_trac"] = ("exited", planned.wanted["infra_trac"])
    containers["infra_git"] = ("running", "another spec")
    del containers["infra_cd"]
    out = planned({}, containers, {f"infra/r2/{n}" for n in planned.images})
    assert actions(out) == ["container infra_git: recreate", "container infra_trac: start", "container infra_cd: create"]
    assert out["summary"][1:] == ["recreate infra_git", "start infra_trac", "create infra_cd"]


def test_plan_lists_the_registry_before_the_images_and_the_other_containers_after_them(planned):
    out = planned({}, {}, set())
    kinds = [(a["action"], a.get("container")) for a in out["actions"]]
    assert kinds[0] == ("container", "infra_registry")
    pushes = [i for i, k in enumerate(kinds) if k[0] == "push image"]
    assert pushes == list(range(1, 1 + len(planned.images)))
    assert kinds[1 + len(pushes)] == ("write release record", None)
    # every container created; the proxy, once created, joins the applications' network
    containers = list(planned.wanted)                  # in start order: the registry, ..., the proxy, the backup
    assert containers[-2:] == ["infra_proxy", "infra_backup"]
    assert kinds[2 + len(pushes):] == [("container", c) for c in containers[1:-1]] + [
        ("join network", "infra_proxy"), ("container", "infra_backup")]


def test_plan_of_a_node_without_a_registry_pushes_everything(planned, monkeypatch):
    def unreachable(s, repository):
        raise ConnectionError("no registry yet")
    monkeypatch.setattr(facts, "registry_has", unreachable)
    out = planned({"dns": "infra/r1/dns"}, {}, set())
    assert set(out["images"].values()) == {"push"} and set(out["containers"].values()) == {"create"}


# ---- the git push -------------------------------------------------------------------------------

HEAD = "c0ffee" * 6 + "c0ff"


@pytest.mark.parametrize("git, force, late, expected", [
    pytest.param(GitFacts(HEAD, up=True, branch=HEAD, tagged=True), False, False, [], id="no-op: branch and tag hold it"),
    pytest.param(GitFacts(HEAD, up=True, branch=HEAD, tagged=True), False, True, [], id="no-op, late too"),
    pytest.param(GitFacts(HEAD, up=True, branch=None), False, False, [PushGit(HEAD, "master")], id="no branch yet"),
    pytest.param(GitFacts(HEAD, up=True, branch="a" * 40), False, False, [PushGit(HEAD, "master")], id="a fast-forward"),
    pytest.param(GitFacts(HEAD, up=True, branch=HEAD), False, False, [PushGit(HEAD, "master")], id="the tag missing"),
    pytest.param(GitFacts(HEAD), False, False, [], id="server not up: not before the containers"),
    pytest.param(GitFacts(HEAD), False, True, [PushGit(HEAD, "master")], id="server not up: once started"),
    pytest.param(GitFacts(HEAD, up=True, branch="b" * 40, drops=True), False, False, [PushGit(HEAD, "master")],
                 id="drops commits, not forced: a plain push (refused before)"),
    pytest.param(GitFacts(HEAD, up=True, branch="b" * 40, drops=True), True, False, [PushGit(HEAD, "master", "b" * 40)],
                 id="drops commits, forced: pushed over, named"),
])
def test_git_actions(git, force, late, expected):
    assert decisions.git_actions(git, "master", force, late) == expected


def test_after_a_push_the_branch_and_the_tag_hold_the_commit():
    node = NodeFacts(git=GitFacts(HEAD, up=False))
    pushed = decisions.after(node, [PushGit(HEAD, "master")])
    assert decisions.git_actions(pushed.git, "master", late=True) == []
    assert decisions.after(NodeFacts(), [PushGit(HEAD, "master")]).git is None     # not asked: stays unasked


# ---- a container's further networks -------------------------------------------------------------

@pytest.mark.parametrize("state, expected", [
    pytest.param(facts.ContainerState("running", "a", frozenset({"infra", "apps"})), [], id="no-op: on it already"),
    pytest.param(facts.ContainerState("running", "a", frozenset({"infra"})), [JoinNetwork("infra_proxy", "apps")], id="not on it"),
    pytest.param(None, [JoinNetwork("infra_proxy", "apps")], id="no container yet"),
])
def test_network_actions(state, expected):
    assert decisions.network_actions("infra_proxy", state, ("apps",)) == expected


def test_a_recreated_container_is_on_the_infra_network_only_and_a_started_one_keeps_its_networks():
    on_both = facts.ContainerState("exited", "a", frozenset({"infra", "apps"}))
    node = NodeFacts(containers={"infra_proxy": on_both})
    started = decisions.after(node, [ChangeContainer("infra_proxy", "start", "a")]).containers["infra_proxy"]
    assert started.networks == {"infra", "apps"}
    recreated = decisions.after(node, [ChangeContainer("infra_proxy", "recreate", "b")]).containers["infra_proxy"]
    assert recreated.networks == {svc.NETWORK}
    joined = decisions.after(node.with_(containers={"infra_proxy": recreated}), [JoinNetwork("infra_proxy", "apps")])
    assert joined.containers["infra_proxy"].networks == {svc.NETWORK, "apps"}


def test_the_registry_is_asked_for_the_running_image_of_each_name_a_push_would_mount():
    current = records.new_release("r1", {"dns": "sha256:old", "git": "sha256:g"}, {})
    asked = facts.candidates(IMAGES, "r2", current)
    assert asked == ["infra/r2/dns", "infra/r2/git", "infra/r2/trac", "infra/r1/git", "infra/r1/dns"]
    assert facts.candidates(IMAGES, "r2", None) == ["infra/r2/dns", "infra/r2/git", "infra/r2/trac"]
