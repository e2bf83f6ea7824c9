"""Infrastructure containers come back by themselves: after a crash, after a node restart."""
import time

import docker
import pytest

from tests.e2e.conftest import ENV, invoke, node_sh

pytestmark = pytest.mark.e2e


def _running(name):
    return node_sh(f"docker inspect -f '{{{{.State.Running}}}} {{{{.RestartCount}}}}' {name}").stdout.split()


def test_a_crashed_container_restarts_by_itself(infra):
    before = int(_running("infra_dns")[1])
    node_sh("kill -9 $(docker inspect -f '{{.State.Pid}}' infra_dns)")
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        running, count = _running("infra_dns")
        if running == "true" and int(count) > before:
            break
        time.sleep(1)
    else:
        pytest.fail("infra_dns did not restart within 30s after its process was killed")
    invoke("test", f"--env={ENV}", "-k", "dns")


def test_containers_come_back_after_the_node_restarts(infra):
    docker.from_env().containers.get(f"lapinfra-{ENV}-master").restart(timeout=30)
    deadline = time.monotonic() + 90
    while time.monotonic() < deadline:
        if invoke("test", f"--env={ENV}", check=False).returncode == 0:
            return
        time.sleep(5)
    pytest.fail("the verification suite was not green within 90s of the master node's restart")
