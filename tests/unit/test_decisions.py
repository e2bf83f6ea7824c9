"""The decisions of a deploy, facts in and actions out, and `invoke plan` taking the same ones.

deploy.container_action (what reconcile does to a container) and deploy.push_decisions (what
getting an image into the node's registry takes) are pure functions over facts gathered first;
promote.plan shows exactly their decisions. Two disagreements plan had are pinned here: an image
whose id the current release holds is tagged in the registry only when the registry still holds
it, and a stopped container of the wanted spec is started, not kept."""
from __future__ import annotations

from types import SimpleNamespace as NS

import docker.errors
import pytest

from lapinfra import deploy, promote, records, services as svc
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
    assert deploy.container_action(*facts) == action


class Engine:
    """A stand-in Docker client with at most one container, and what was done to it."""

    def __init__(self, status, label):
        self.done = []
        container = None if status is None else NS(
            status=status, labels={svc.SPEC_LABEL: label} if label else {},
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
    assert deploy.reconcile(engine, {"name": "infra_dns", "labels": {svc.SPEC_LABEL: wanted}}, Recorder()) == PAST[action]
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
    assert deploy.push_decisions(IMAGES, "r2", present, registry.__contains__) == decisions


def test_present_images_of_a_release_record():
    record = records.Release.from_dict({"release": "r1", "images": {"dns": {"repository": "infra/r1/dns", "id": "sha256:d"}}})
    assert deploy.present_images(record) == {"sha256:d": "infra/r1/dns"}
    assert deploy.present_images(None) == {}


# ---- plan: the same decisions, on the node's facts ----------------------------------------

class Master:
    """A stand-in MasterSession for plan: the release record, the containers, the registry."""

    def __init__(self, record, containers, registry):
        self.record, self.registry = record, registry
        self.containers = containers

        def get(name):
            if name not in containers:
                raise docker.errors.NotFound(name)
            status, label = containers[name]
            return NS(status=status, labels={svc.SPEC_LABEL: label})
        self.docker = NS(containers=NS(get=get))
        self.conn = NS(sftp=lambda: None)

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False

    def read_json(self, path):
        return self.record if path == records.RELEASE else None

    def remote_hashes(self, folder):
        return {}


@pytest.fixture
def planned(project, monkeypatch):
    """plan(project) against a Master made of (current release's images, containers, registry)."""
    env = project.env
    images = {s.image: NS(id=f"sha256:{s.image}") for s in svc.services(env)}
    monkeypatch.setattr(promote, "release_id", lambda root: "r2")
    monkeypatch.setattr(promote, "built_images", lambda p: images)
    monkeypatch.setattr(promote, "config_files", lambda p: {})
    monkeypatch.setattr(promote, "release_record", lambda p, release, imgs, files: records.Release(release, config={s.name: "c" for s in svc.services(env)}))
    monkeypatch.setattr(promote, "check_gate", lambda p, release, imgs: None)
    monkeypatch.setattr(promote, "registry_has", lambda s, repository: repository in s.registry)
    wanted = {s.container: svc.run_kwargs(s, "", env, "c", images[s.image].id)["labels"][svc.SPEC_LABEL]
              for s in svc.services(env)}

    def plan(current: dict[str, str], containers: dict[str, tuple], registry: set[str]) -> dict:
        record = {"release": "r1", "images": {n: {"repository": r, "id": images[n].id} for n, r in current.items()}}
        monkeypatch.setattr(promote, "MasterSession", lambda p: Master(record, containers, registry))
        return promote.plan(project)
    plan.images, plan.wanted = images, wanted
    return plan


def actions(out: dict) -> list[str]:
    """What a plan would change: every image not in the registry, every container not kept, every file."""
    return ([f"image {n}: {v}" for n, v in out["images"].items() if v != "in registry"]
            + [f"container {n}: {v}" for n, v in out["containers"].items() if v != "keep"]
            + [f"file {rel}" for rel in out["config"]])


def test_plan_of_an_unchanged_deploy_has_no_action(planned):
    names = list(planned.images)
    out = planned({}, {c: ("running", label) for c, label in planned.wanted.items()}, {f"infra/r2/{n}" for n in names})
    assert actions(out) == []


def test_plan_tags_an_image_in_the_registry_only_when_the_registry_still_holds_it(planned):
    containers = {c: ("running", label) for c, label in planned.wanted.items()}
    kept = {f"infra/r2/{n}" for n in planned.images if n != "dns"}
    held = planned({"dns": "infra/r1/dns"}, containers, kept | {"infra/r1/dns"})
    assert actions(held) == ["image dns: tag in registry (same image as infra/r1/dns)"]
    lost = planned({"dns": "infra/r1/dns"}, containers, kept)
    assert actions(lost) == ["image dns: push"]          # as deploy: the registry lacks infra/r1/dns too


def test_plan_starts_a_stopped_container_of_the_wanted_spec_as_reconcile_does(planned):
    containers = {c: ("running", label) for c, label in planned.wanted.items()}
    containers["infra_trac"] = ("exited", planned.wanted["infra_trac"])
    containers["infra_git"] = ("running", "another spec")
    del containers["infra_cd"]
    out = planned({}, containers, {f"infra/r2/{n}" for n in planned.images})
    assert actions(out) == ["container infra_git: recreate", "container infra_trac: start", "container infra_cd: create"]


def test_plan_of_a_node_without_a_registry_pushes_everything(planned, monkeypatch):
    def unreachable(s, repository):
        raise ConnectionError("no registry yet")
    monkeypatch.setattr(promote, "registry_has", unreachable)
    out = planned({"dns": "infra/r1/dns"}, {}, set())
    assert set(out["images"].values()) == {"push"} and set(out["containers"].values()) == {"create"}
