"""The master node: every infra_* container runs, every service port answers."""
import socket

import pytest


def test_container_is_running(node, service):
    container = node.docker(f"infra_{service}")
    assert container.is_running, f"infra_{service} is not running"


def test_no_unexpected_infra_container_is_stopped(node):
    stopped = [c.name for c in node.docker.get_containers() if c.name.startswith("infra_") and not c.is_running]
    assert stopped == []


@pytest.mark.parametrize("what", ["dns/tcp 53", "registry/tcp"])
def test_service_port_answers(master_ip, env, what):
    port = 53 if what.startswith("dns") else env.registry.port
    with socket.create_connection((master_ip, port), timeout=3):
        pass

