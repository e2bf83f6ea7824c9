"""Fixtures of the verification suite: what was deployed, and ways to reach it.

Every check probes the environment from the workstation over the node's network,
the way a user would: DNS queries to the master's bind9, HTTPS to the registry,
and SSH (testinfra) only to look at the node's containers.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from lapinfra import services
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
def node(project):
    """testinfra host for the master node, over SSH with the pinned host key."""
    import testinfra

    nodes = Nodes(project)
    nodes.write_ssh_config()
    return testinfra.get_host(f"ssh://{project.env.master.name}", ssh_config=str(nodes.ssh_config))


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
