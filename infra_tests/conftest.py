"""Fixtures of the verification suite: what was deployed, and ways to reach it.

Every check probes the environment from the workstation over the node's network,
the way a user would: DNS queries to the master's bind9, HTTPS to the registry,
and SSH (testinfra) only to look at the node's files.

Speed: `invoke test` runs the checks in several processes at once (pytest-xdist).
Each process opens one SSH connection to the master (pinned host key) that
every testinfra call reuses, and reads the state of every container in one
Docker API call. Checks marked ``disruptive`` (they stop a service for a moment)
run only where ``verify.disruptive`` allows it (not on a protected environment),
and never while a check they would disturb runs (a lock file shared by the
processes: ``undisturbed`` / ``disrupting``).
"""
from __future__ import annotations

import contextlib
import fcntl
import json
from pathlib import Path

import pytest

from lapinfra import services, verify
from lapinfra.nodes import Nodes
from lapinfra.project import Project
from lapinfra.report import Reporter


def pytest_addoption(parser):
    parser.addoption("--lapinfra-env", default=None, help="environment to verify (default: test or $LAPINFRA_ENV)")
    parser.addoption("--lapinfra-root", default=str(Path(__file__).resolve().parent.parent), help="project checkout")


def _project(config) -> Project:
    if not hasattr(config, "_lapinfra_project"):
        config._lapinfra_project = Project(
            config.getoption("--lapinfra-env"), root=Path(config.getoption("--lapinfra-root")), reporter=Reporter(quiet=True))
    return config._lapinfra_project


def pytest_generate_tests(metafunc):
    env = _project(metafunc.config).env
    if "record" in metafunc.fixturenames:
        metafunc.parametrize("record", sorted(env.dns_records.items()), ids=lambda r: r[0] if isinstance(r, str) else None)
    if "service" in metafunc.fixturenames:
        names = [s.name for s in services.services(env)]
        metafunc.parametrize("service", names)
    if "app" in metafunc.fixturenames:
        metafunc.parametrize("app", sorted(env.routed_apps))


# Modules whose checks a disruptive check would turn red: they wait for it (``undisturbed``),
# so they come last, when it is over.
DISTURBED_MODULES = ("test_node.py", "test_lb.py")


def pytest_configure_node(node):
    """xdist's controller, for each process: the checks' seconds, read once for all of them
    (every process must order the checks alike)."""
    node.workerinput["lapinfra_check_seconds"] = verify.check_seconds(_project(node.config))


def _seconds(config) -> dict[str, float]:
    worker = getattr(config, "workerinput", None)
    return worker["lapinfra_check_seconds"] if worker else verify.check_seconds(_project(config))


@pytest.hookimpl(tryfirst=True)
def pytest_collection_modifyitems(config, items):
    """Disruptive checks only where verify.disruptive allows them. Order: the disruptive and the
    slow checks first (the processes then finish together), the checks they disturb last."""
    env = _project(config).env
    disruptive = [item for item in items if item.get_closest_marker("disruptive")]
    if disruptive and not env.disruptive_checks:
        config.hook.pytest_deselected(items=disruptive)
        items[:] = [item for item in items if item not in disruptive]
        disruptive = []

    seconds = _seconds(config)
    marked = {item for item in items if item in disruptive or item.get_closest_marker("slow")}
    items[:] = verify.start_order(
        items,
        seconds=lambda item: seconds.get(f"{item.path.stem}::{item.name}"),
        marked_slow=marked.__contains__,
        disturbed=lambda item: item.path.name in DISTURBED_MODULES and item not in marked)


@contextlib.contextmanager
def _flock(project, name: str, exclusive: bool):
    """An advisory lock shared by the suite's processes (and by two runs on one checkout)."""
    folder = project.build_dir / "verify-locks"
    folder.mkdir(parents=True, exist_ok=True)
    with open(folder / f"{name}.lock", "a") as f:
        fcntl.flock(f, fcntl.LOCK_EX if exclusive else fcntl.LOCK_SH)
        try:
            yield
        finally:
            fcntl.flock(f, fcntl.LOCK_UN)


@pytest.fixture
def undisturbed(project):
    """Held by a check that a disruptive check would turn red: the two never overlap."""
    with _flock(project, "disruption", exclusive=False):
        yield


@pytest.fixture
def disrupting(project):
    """Held by a disruptive check for as long as it has something stopped or broken."""
    with _flock(project, "disruption", exclusive=True):
        yield


def pytest_report_header(config):
    env = _project(config).env
    return f"lapinfra: verifying {env.name} (disruptive checks: {'yes' if env.disruptive_checks else 'no, verify.disruptive is off'})"


def pytest_ignore_collect(collection_path, config):
    """The swarm's checks belong to environments with worker nodes only."""
    if collection_path.name == "test_swarm.py":
        return not _project(config).env.workers
    return None


@pytest.fixture(scope="session")
def project(request) -> Project:
    return _project(request.config)


@pytest.fixture(scope="session")
def env(project):
    return project.env


@pytest.fixture(scope="session")
def master_ip(env) -> str:
    return str(env.master.ip)


@pytest.fixture(scope="session")
def connection(project):
    """One SSH connection to the master (only the pinned host key is trusted), reused."""
    conn = Nodes(project).connect()
    conn.open()
    yield conn
    conn.close()


@pytest.fixture(scope="session")
def node(project, connection):
    """testinfra host for the master node, over that one SSH connection."""
    import testinfra.host
    from testinfra.backend.paramiko import ParamikoBackend

    backend = ParamikoBackend(f"paramiko://{project.env.master.name}")
    backend.client = connection.client   # testinfra's own client would accept any host key
    return testinfra.host.Host(backend)


@pytest.fixture(scope="session")
def engine(project):
    """The master's Docker API (through an SSH tunnel)."""
    from lapinfra import swarm

    with swarm.engine(project, project.env.master) as client:
        yield client


@pytest.fixture(scope="session")
def containers(engine, project) -> dict[str, dict]:
    """Every container on the master (name -> the engine's summary: State, Status), in one API
    call, never while a disruptive check has something stopped."""
    with _flock(project, "disruption", exclusive=False):
        return {c["Names"][0].lstrip("/"): c for c in engine.api.containers(all=True)}


@pytest.fixture(scope="session")
def release(node) -> dict:
    """The release record written by the last deploy."""
    return json.loads(node.file(f"{services.STATE_DIR}/release.json").content_string)


@pytest.fixture(scope="session")
def registry(project, master_ip):
    """Base URL, CA bundle and credentials of the environment's registry."""
    return {
        "url": f"https://{master_ip}:{project.env.registry.port}",
        "ca": str(project.secrets.path("ca.crt")),
        "auth": (project.env.registry.user, project.secrets.registry_password.reveal()),
    }
