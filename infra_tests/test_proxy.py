"""The port-80 proxy: name-based virtual hosts, 404 for every other Host header.

Requests go to the master's port 80 with the name in the Host header (the
workstation does not resolve *.internal). The proxy's own 404 carries
"X-Proxy: no-vhost", which tells it apart from a backend's 404.
"""
import uuid

import requests

from lapinfra import services

TIMEOUT = 10


def _get(master_ip, host):
    return requests.get(f"http://{master_ip}:80/", headers={"Host": host}, timeout=TIMEOUT, allow_redirects=False)


def test_unknown_host_gets_404(master_ip, env):
    response = _get(master_ip, f"no-such-vhost-{uuid.uuid4().hex[:8]}.{env.domain}")
    assert response.status_code == 404
    assert response.headers.get("X-Proxy") == "no-vhost"


def test_bare_address_gets_404(master_ip):
    response = requests.get(f"http://{master_ip}:80/", timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.headers.get("X-Proxy") == "no-vhost"


def test_every_vhost_reaches_its_service(master_ip, env):
    """Each HTTP service behind the proxy answers under its name (not the proxy's 404, not 502-504)."""
    failed = []
    for vhost in services.vhosts(env):
        try:
            response = _get(master_ip, vhost["name"])
        except requests.RequestException as exc:
            failed.append(f"{vhost['name']}: {exc}")
            continue
        if response.headers.get("X-Proxy") == "no-vhost":
            failed.append(f"{vhost['name']}: not configured on the proxy")
        elif response.status_code in (502, 503, 504):
            failed.append(f"{vhost['name']} -> {vhost['upstream']}: {response.status_code}")
    assert failed == []
