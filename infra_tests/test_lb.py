"""The load balancer: app.internal on the proxy's port 80, over the sampleapp backends.

Sticky sessions by cookie (open-source nginx: a hash of the session cookie over
the backends), new clients spread over every backend, and a client whose backend
stops is served by another one within seconds. Every request goes to the master's
port 80 with the load balancer's name in the Host header (the workstation does
not resolve *.internal); each backend names itself in the X-Backend header and
in the body's first line ("backend=app1").
"""
import time

import pytest
import requests

from lapinfra import services

TIMEOUT = 5          # seconds per request
FAILOVER_WITHIN = 10  # seconds until a stopped backend's client is served elsewhere
POLL = 0.2            # seconds between a waiting client's requests
CLIENTS = 20


@pytest.fixture(autouse=True)
def _not_while_disrupted(request):
    """Every check here but the disruptive one needs both backends up."""
    if request.node.get_closest_marker("disruptive"):
        yield
    else:
        request.getfixturevalue("undisturbed")
        yield


@pytest.fixture(scope="module")
def lb(env):
    apps = [s for s in services.services(env) if s.image == "sampleapp"]
    assert len(apps) >= 2, "the load balancer needs at least two backends"
    return {"host": services.load_balancer(env)["name"], "apps": {s.name: s.container for s in apps}}


@pytest.fixture(scope="module")
def url(master_ip):
    return f"http://{master_ip}:80/"


def _get(client, url, lb):
    return client.get(url, headers={"Host": lb["host"]}, timeout=TIMEOUT)


def _backend(response) -> str:
    """The backend that answered; fails unless the response is a backend's 200."""
    assert response.status_code == 200, f"{response.status_code}: {response.text[:200]}"
    backend = response.headers.get("X-Backend", "")
    assert response.text.startswith(f"backend={backend}\n"), response.text[:200]
    return backend


def _client_of(backend, url, lb, attempts=100):
    """A new client (own cookie jar) that the load balancer placed on backend."""
    for _ in range(attempts):
        client = requests.Session()
        if _backend(_get(client, url, lb)) == backend:
            return client
        client.close()
    pytest.fail(f"no new client was placed on {backend} in {attempts} attempts")


def test_new_client_gets_a_sticky_cookie_and_stays_on_its_backend(url, lb):
    with requests.Session() as client:
        first = _get(client, url, lb)
        backend = _backend(first)
        assert backend in lb["apps"]
        assert first.cookies, f"no sticky cookie set: {first.headers}"
        seen = []
        for _ in range(CLIENTS):
            response = _get(client, url, lb)
            seen.append(_backend(response))
            assert "Set-Cookie" not in response.headers, "a client with a cookie got a new one"
        assert set(seen) == {backend}, seen


def test_new_clients_are_spread_over_every_backend(url, lb):
    seen = []
    for _ in range(CLIENTS):
        with requests.Session() as client:
            seen.append(_backend(_get(client, url, lb)))
    assert set(seen) == set(lb["apps"]), f"backends seen by {CLIENTS} new clients: {seen}"


def test_backend_gets_host_header_and_forwarded_for(url, lb):
    with requests.Session() as client:
        lines = dict(line.split("=", 1) for line in _get(client, url, lb).text.splitlines() if "=" in line)
    assert lines["host"] == lb["host"]
    assert lines["x_forwarded_for"], "X-Forwarded-For not passed to the backend"


def test_large_upload_passes_the_proxy(url, lb):
    """Uploads are not cut by the proxy's body size limit (nginx's default is 1 MB)."""
    body = b"\0" * (20 * 1024 * 1024)
    with requests.Session() as client:
        response = client.post(url, data=body, headers={"Host": lb["host"]}, timeout=60)
    _backend(response)
    assert f"body_bytes={len(body)}\n" in response.text, response.text


@pytest.mark.disruptive
def test_client_of_a_stopped_backend_moves_to_another(disrupting, node, url, lb):
    name, container = sorted(lb["apps"].items())[0]
    assert node.docker(container).is_running, f"{container} is not running before the test"
    client = _client_of(name, url, lb)
    polled, moved_to, back = [], None, False
    try:
        node.run_test(f"docker stop {container}")
        start = time.monotonic()
        while time.monotonic() - start < FAILOVER_WITHIN:
            try:
                response = _get(client, url, lb)
                polled.append((round(time.monotonic() - start, 2), response.status_code, response.headers.get("X-Backend")))
                if response.status_code == 200 and response.headers.get("X-Backend") not in ("", None, name):
                    moved_to = _backend(response)
                    break
            except requests.RequestException as exc:
                polled.append((round(time.monotonic() - start, 2), type(exc).__name__, None))
            time.sleep(POLL)
        # Once moved, the client stays on its new backend while the old one is down.
        after = [_get(client, url, lb) for _ in range(5)] if moved_to else []
    finally:
        node.run(f"docker start {container}")
        # Give the backend back to its clients (nginx retries it after fail_timeout).
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline and not back:
            try:
                response = _get(client, url, lb)
                back = response.status_code == 200 and response.headers.get("X-Backend") == name
            except requests.RequestException:
                pass
            if not back:
                time.sleep(POLL)
        client.close()
    assert moved_to, f"client of {name} not served by another backend within {FAILOVER_WITHIN}s: {polled}"
    assert all(status == 200 for _, status, _ in polled), f"non-200 answers while {container} was stopped: {polled}"
    assert [(r.status_code, r.headers.get("X-Backend")) for r in after] == [(200, moved_to)] * 5
    assert back, f"{container} was started again but its client did not return to it within 30s"
