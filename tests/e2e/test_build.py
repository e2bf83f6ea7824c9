"""Builds against the real engine: a failure names the image and shows its log's end."""
import docker
import pytest

from lapinfra.errors import BuildError
from lapinfra.images import Builder, ImageGraph
from lapinfra.report import Recorder

pytestmark = pytest.mark.e2e


def test_build_failure_names_the_image_and_shows_the_log_tail(infra, tmp_path):
    folder = tmp_path / "images" / "broken"
    folder.mkdir(parents=True)
    (folder / "Dockerfile").write_text("FROM infra/base\nRUN echo about-to-fail && exit 7\n")
    graph = ImageGraph.discover(tmp_path, "infra/base")
    with pytest.raises(BuildError) as err:
        Builder(docker.from_env(), graph, Recorder()).build()
    message = str(err.value)
    assert "infra/broken" in message and "images/broken/Dockerfile" in message
    assert "about-to-fail" in message


def test_node_status_shows_every_node_running_with_ssh(infra):
    from tests.e2e.conftest import ENV, invoke

    out = invoke("node.status", f"--env={ENV}").stdout.split("\nswarm")[0]   # the swarm's view: tests/e2e/test_swarm.py
    lines = {line.split()[0]: line for line in out.splitlines() if line.strip()}
    assert set(lines) == {"master", "backup", "worker1", "worker2"}
    for line in lines.values():
        assert "running" in line and "ssh: ok" in line
