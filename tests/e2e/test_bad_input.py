"""Bad configuration: one clear error naming file and key, non-zero exit, nothing started."""
import shutil

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import invoke

pytestmark = pytest.mark.e2e


def docker_state():
    import docker

    client = docker.from_env()
    return (sorted(c.name for c in client.containers.list(all=True)), sorted(n.name for n in client.networks.list()))


@pytest.fixture
def checkout(tmp_path):
    for name in ("tasks.py", "invoke.yaml"):
        shutil.copy(ROOT / name, tmp_path / name)
    for folder in ("tasks", "environments", "nodes", "images"):
        shutil.copytree(ROOT / folder, tmp_path / folder, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


@pytest.mark.parametrize("breakage, where", [
    (("nodes/test.yml", "172.28.10.20", "172.28.10.999"), "nodes/test.yml: nodes[1].ip"),
    (("environments/test/env.yml", "provider: docker", "provider: docker\nregistry: {prot: 1}"), "environments/test/env.yml: registry.prot: unknown key"),
    (("environments/test/env.yml", "network:", "network: [oops"), "environments/test/env.yml: line"),
])
def test_broken_config_stops_up_before_anything_starts(checkout, breakage, where):
    path, old, new = breakage
    text = (checkout / path).read_text()
    assert old in text
    (checkout / path).write_text(text.replace(old, new))
    before = docker_state()
    run = invoke("up", "--env=test", check=False, cwd=checkout)
    assert run.returncode == 1
    assert where in run.stderr
    assert "Traceback" not in run.stderr
    assert docker_state() == before
    assert not (checkout / "build").exists()


def test_unknown_environment_starts_nothing(checkout):
    before = docker_state()
    run = invoke("up", "--env=qa", check=False, cwd=checkout)
    assert run.returncode == 1 and "unknown environment 'qa'" in run.stderr
    assert docker_state() == before
