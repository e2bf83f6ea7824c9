"""The master node: every infra_* container runs, every service port answers."""
import socket

from lapinfra import services


def test_container_is_running(node, service):
    container = node.docker(f"infra_{service}")
    assert container.is_running, f"infra_{service} is not running"


def test_no_unexpected_infra_container_is_stopped(node):
    stopped = [c.name for c in node.docker.get_containers() if c.name.startswith("infra_") and not c.is_running]
    assert stopped == []


def _published_tcp_ports(env):
    for service in services.services(env):
        for spec, binding in service.ports.items():
            if spec.endswith("/tcp"):
                port = binding[1] if isinstance(binding, tuple) else binding
                yield f"{service.name}:{port}", port


def test_every_published_tcp_port_answers(master_ip, env):
    refused = []
    for label, port in _published_tcp_ports(env):
        try:
            with socket.create_connection((master_ip, port), timeout=3):
                pass
        except OSError as exc:
            refused.append(f"{label} ({exc})")
    assert refused == []
