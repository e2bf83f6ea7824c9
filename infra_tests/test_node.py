"""The master node: every infra_* container runs, every service port answers."""
import socket

from lapinfra import services


# "paused": a snapshot holds it for a moment; the service's own checks tell whether it answers
RUNNING = ("running", "paused")


def test_container_is_running(containers, service):
    container = containers.get(f"infra_{service}")
    assert container, f"infra_{service} does not exist on the master"
    assert container["State"] in RUNNING, f"infra_{service} is {container['State']} ({container['Status']})"


def test_no_unexpected_infra_container_is_stopped(containers):
    stopped = sorted(f"{name} ({c['Status']})" for name, c in containers.items()
                     if name.startswith("infra_") and c["State"] not in RUNNING)
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


def test_every_published_tcp_port_listens_on_the_masters_address_only(node, env, master_ip):
    """The services' ports (the registry's too) are bound to the master's address, not to all of
    its addresses: nothing of them on the node's loopback or any other interface."""
    ports = {port for _, port in _published_tcp_ports(env)}
    wide = []
    for line in node.check_output("ss -Hltn").splitlines():
        local = line.split()[3]
        address, port = local.rsplit(":", 1)
        if int(port) in ports and address != master_ip:
            wide.append(local)
    assert wide == [], f"published on more than {master_ip}: {wide}"
