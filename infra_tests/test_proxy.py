"""The proxy (ports 80 and 443): name-based virtual hosts, 404 for every other Host header.

Requests go to the master's port 80, or 443 with the certificate checked against the
environment's CA, with the name in the Host header (the workstation does not resolve
*.internal). The proxy's own 404 carries "X-Proxy: no-vhost", which tells it apart from
a backend's 404. Over port 80 no request that carries a password reaches a backend.
"""
import uuid

import pytest
import requests

from lapinfra import services

TIMEOUT = 10


def _get(master_ip, host, ca=None, **kw):
    """GET / with that Host header: over HTTPS verified with ``ca``, else over plain HTTP."""
    url = f"https://{master_ip}:443/" if ca else f"http://{master_ip}:80/"
    return requests.get(url, headers={"Host": host}, timeout=TIMEOUT, allow_redirects=False, verify=ca or True, **kw)


def test_unknown_host_gets_404(master_ip, env):
    response = _get(master_ip, f"no-such-vhost-{uuid.uuid4().hex[:8]}.{env.domain}")
    assert response.status_code == 404
    assert response.headers.get("X-Proxy") == "no-vhost"


def test_bare_address_gets_404(master_ip):
    response = requests.get(f"http://{master_ip}:80/", timeout=TIMEOUT)
    assert response.status_code == 404
    assert response.headers.get("X-Proxy") == "no-vhost"


@pytest.mark.parametrize("scheme", ["http", "https"])
def test_every_vhost_reaches_its_service(master_ip, env, project, scheme):
    """Each HTTP service behind the proxy answers under its name (not the proxy's 404, not 502-504),
    on both ports."""
    ca = str(project.secrets.path("ca.crt")) if scheme == "https" else None
    failed = []
    for vhost in services.vhosts(env):
        try:
            response = _get(master_ip, vhost["name"], ca)
        except requests.RequestException as exc:
            failed.append(f"{vhost['name']}: {exc}")
            continue
        if response.headers.get("X-Proxy") == "no-vhost":
            failed.append(f"{vhost['name']}: not configured on the proxy")
        elif response.status_code in (502, 503, 504):
            failed.append(f"{vhost['name']} -> {vhost['upstream']}: {response.status_code}")
    assert failed == []


def test_unknown_host_gets_404_over_https_too(master_ip, env, project):
    response = _get(master_ip, f"no-such-vhost-{uuid.uuid4().hex[:8]}.{env.domain}", str(project.secrets.path("ca.crt")))
    assert response.status_code == 404
    assert response.headers.get("X-Proxy") == "no-vhost"


def test_no_vhost_takes_a_password_over_port_80(master_ip, env):
    """Basic auth over plain HTTP is refused by the proxy itself (403, pointing to https://),
    whatever the service; the password is never forwarded."""
    names = [v["name"] for v in services.vhosts(env)] + [services.load_balancer(env)["name"]]
    accepted = []
    for name in names:
        response = _get(master_ip, name, auth=("deploy", "a-password-over-plain-http"))
        if response.status_code != 403 or "https://" not in response.text:
            accepted.append(f"{name}: HTTP {response.status_code}")
    assert accepted == []
