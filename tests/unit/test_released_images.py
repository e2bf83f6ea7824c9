"""What runs is what was released (lapinfra/startstop.py start_services): the master's engine pulls
an image of the release from the node's registry by tag, so whoever can push there could swap
``infra/<release>/<name>:latest``. Against a stand-in engine and registry (ids by reference):
an image whose id is not the release record's is refused, naming it and both ids, and nothing of
it starts; the images the release names start as before."""
from types import SimpleNamespace

import docker
import docker.errors
import pytest

from lapinfra import ddns, phases, records, services as svc, startstop, swarm
from lapinfra.errors import LapinfraError

REGISTRY_HOST = "docker.internal:5000"


class Engine:
    """The master's engine: its images by reference, pulls from a stand-in registry (reference -> id)."""

    def __init__(self, local: dict, registry: dict):
        self.local, self.registry, self.pulls = dict(local), registry, []
        self.images = SimpleNamespace(get=self._get, pull=self._pull)

    def _get(self, ref):
        if ref not in self.local:
            raise docker.errors.ImageNotFound(ref)
        return SimpleNamespace(id=self.local[ref])

    def _pull(self, repo, tag, auth_config):
        ref = f"{repo}:{tag}"
        self.pulls.append((ref, auth_config["username"]))
        self.local[ref] = self.registry[ref]

    def close(self):
        pass


def _release(project):
    names = sorted({s.image for s in svc.services(project.env)})
    return records.new_release("r2", {n: f"sha256:{n}" for n in names}, {})


def _ref(name):
    return f"{REGISTRY_HOST}/infra/r2/{name}:latest"


@pytest.fixture
def master(project, monkeypatch):
    """start_services against an Engine: the names of the containers it would create, in order."""
    started = []
    monkeypatch.setattr(startstop, "ensure_infra_network", lambda client: None)
    monkeypatch.setattr(phases, "wait_registry", lambda s: None)
    monkeypatch.setattr(phases, "wait_healthy", lambda *a, **kw: None)
    monkeypatch.setattr(phases, "reconcile", lambda client, kwargs, reporter, executor=None: started.append(kwargs["name"]) or "created")
    monkeypatch.setattr(phases.Swarm, "apply", lambda *a: None)       # the swarm's phase: tests/unit/test_swarm.py
    monkeypatch.setattr(phases.Apps, "apply", lambda *a: None)        # the apps' phase: tests/unit/test_plan_is_deploy.py
    monkeypatch.setattr(ddns, "register_nodes", lambda p: [])          # the names' phase: tests/unit/test_ddns.py
    monkeypatch.setattr(phases.decisions, "network_actions", lambda *a: [])   # the proxy's network: test_plan_is_deploy.py
    monkeypatch.setattr(phases.Container, "read", lambda self, s, target: phases.facts.NodeFacts())

    def make(local: dict, registry: dict):
        engine = Engine(local, registry)
        monkeypatch.setattr(docker, "DockerClient", lambda **kw: engine)    # the pulls' own clients
        s = SimpleNamespace(p=project, env=project.env, docker=engine, registry_host=REGISTRY_HOST, api_url="unix:///x")
        s.auth = lambda: phases.MasterSession.auth(s)              # the session's own accounts
        s.pull_auth = lambda: phases.MasterSession.pull_auth(s)
        return s, engine, started
    return make


def _as_released(project):
    """The registry and the master's engine as a deploy of r2 leaves them."""
    release = _release(project)
    registry = {_ref(n): img.id for n, img in release.images.items()}
    local = {f"infra/{s.image}": f"sha256:{s.image}" for s in svc.services(project.env) if s.local_image}
    return release, registry, local


def test_the_released_images_are_pulled_and_every_container_starts(project, master):
    release, registry, local = _as_released(project)
    s, engine, started = master(local, registry)
    startstop.start_services(s, release, project.reporter)
    assert started == [service.container for service in svc.services(project.env)]
    refs = phases.release_refs(phases.Target(project, release, REGISTRY_HOST))
    assert sorted(ref for ref, _ in engine.pulls) == sorted(refs.values())


def test_the_masters_engine_pulls_with_the_pull_account_not_the_push_account(project, master):
    release, registry, local = _as_released(project)
    s, engine, started = master(local, registry)
    startstop.start_services(s, release, project.reporter)              # the pulls beside the registry
    assert engine.pulls and {user for _, user in engine.pulls} == {project.secrets.registry_pull_user} == {"infra-pull"}
    assert phases.MasterSession.pull_auth(s)["password"] == project.secrets.registry_pull_password.reveal()


def test_an_image_replaced_in_the_registry_is_refused_naming_it_and_both_ids_and_nothing_else_starts(project, master):
    release, registry, local = _as_released(project)
    registry[_ref("trac")] = "sha256:swapped"
    s, engine, started = master(local, registry)
    with pytest.raises(LapinfraError) as refused:
        startstop.start_services(s, release, project.reporter)
    message = str(refused.value)
    assert f"{_ref('trac')} is image sha256:swapped, release r2 recorded sha256:trac" in message
    assert message.count(" is image ") == 1                  # the others are what the release recorded
    assert started == ["infra_registry"]                       # refused before anything pulled started


def test_each_service_is_checked_again_right_before_its_container_starts(project, master, monkeypatch):
    """A tag that moved on the master after the pulls beside the registry is refused right before
    its container would start: that container does not start, nor any after it."""
    release, registry, local = _as_released(project)
    s, engine, started = master(local, registry)
    pulls = phases.Pulls.apply

    def pulled_then_moved(self, s, target, executor):
        pulls(self, s, target, executor)
        engine.local[_ref("status")] = "sha256:swapped"

    monkeypatch.setattr(phases.Pulls, "apply", pulled_then_moved)
    with pytest.raises(LapinfraError, match=r"status:latest is image sha256:swapped, release r2 recorded sha256:status"):
        startstop.start_services(s, release, project.reporter)
    assert "infra_trac" in started and "infra_status" not in started and "infra_proxy" not in started


def test_a_release_image_the_master_holds_already_starts_without_a_pull(project, master):
    """The master's own copy is the released one: the registry's replaced tag is never pulled."""
    release, registry, local = _as_released(project)
    local.update({ref: registry[ref] for ref in registry})
    registry[_ref("trac")] = "sha256:swapped"
    s, engine, started = master(local, registry)
    startstop.start_services(s, release, project.reporter)
    assert engine.pulls == [] and "infra_trac" in started
