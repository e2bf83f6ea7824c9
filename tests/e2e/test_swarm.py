"""Worker nodes and applications on the running test environment: the swarm as
`invoke node.status` shows it, `invoke app.deploy hello` with three replicas over
both workers behind the load balancer (sticky sessions), a worker that stops while
the application keeps answering, and a rolling update to a broken image that the
swarm rolls back by itself.

Every request goes to the master's port 80 with hello.internal as the Host header,
as a user's browser does once the name resolves; each replica names itself
("backend=<node>-<slot>")."""
import io
import json
import time

import docker
import pytest
import requests

from lapinfra import config
from tests.conftest import ROOT
from tests.e2e.conftest import ENV, invoke

pytestmark = pytest.mark.e2e

APP = "hello"
BROKEN = "lapinfra-e2e/hello-broken"


@pytest.fixture(scope="module")
def env(infra):
    return config.load(ROOT, ENV)


@pytest.fixture(scope="module")
def get(env):
    url, host = f"http://{env.master.ip}/", f"{APP}.{env.domain}"

    def _get(client, timeout=15):
        return client.get(url, headers={"Host": host}, timeout=timeout)

    return _get


@pytest.fixture(scope="module")
def deployed(env):
    run = invoke("app.deploy", APP, f"--env={ENV}")
    assert f"served as {APP}.{env.domain}" in run.stderr, run.stderr[-2000:]
    return run


def status():
    return {r["app"]: r for r in json.loads(invoke("app.status", f"--env={ENV}", "--json").stdout)}


def backend_of(response) -> str:
    assert response.status_code == 200, f"{response.status_code}: {response.text[:200]}"
    return response.headers["X-Backend"]


def client_on(get, node: str, attempts=100):
    """A new client (own cookie jar) that the load balancer placed on a replica of node."""
    for _ in range(attempts):
        client = requests.Session()
        if backend_of(get(client)).startswith(f"{node}-"):
            return client
        client.close()
    pytest.fail(f"no new client was placed on a replica of {node} in {attempts} attempts")


def wait_for(what, check, timeout):
    deadline = time.monotonic() + timeout
    last = None
    while time.monotonic() < deadline:
        last = check()
        if last:
            return last
        time.sleep(2)
    pytest.fail(f"{what} not within {timeout}s (last: {last!r})")


def wait_for_spread(get, replicas=3, timeout=30):
    """Until new clients reach every replica: the proxy lists a replica once it passed its health
    check (read every 2 s by images/proxy/upstreams) and answers 502 before it lists any."""
    def new_client():
        with requests.Session() as client:
            response = get(client)
            return response.headers.get("X-Backend") if response.status_code == 200 else None
    wait_for(f"new clients spread over the {replicas} replicas",
             lambda: len({new_client() for _ in range(12)} - {None}) == replicas, timeout)


def test_node_status_shows_the_swarm(env):
    out = invoke("node.status", f"--env={ENV}").stdout
    lines = {line.split()[0]: line for line in out.split("swarm (from the manager")[1].splitlines()[1:] if line.strip()}
    assert lines["master"].split()[1:5] == ["manager", "ready", "availability:", "active"] and "leader" in lines["master"]
    for worker in ("worker1", "worker2"):
        assert lines[worker].split()[1:5] == ["worker", "ready", "availability:", "active"], out
    worker1 = next(line for line in out.splitlines() if line.startswith("worker1 "))
    assert worker1.split()[2] in [str(a) for a in env.network.dynamic_range.hosts()], worker1   # a dynamic address


def test_deployed_app_spreads_over_both_workers_and_sessions_stick(env, deployed, get):
    row = status()[APP]
    assert (row["running"], row["replicas"]) == (3, 3) and set(row["nodes"]) == {"worker1", "worker2"}, row
    # the proxy lists a replica once it passed its health check (tasks.<app> in the swarm's DNS,
    # read every 2 s by images/proxy/upstreams): new clients reach all three within seconds
    wait_for_spread(get)
    seen = set()
    for _ in range(30):
        with requests.Session() as client:
            backend = backend_of(get(client))
            assert [backend_of(get(client)) for _ in range(3)] == [backend] * 3
            seen.add(backend)
    assert {b.rsplit("-", 1)[0] for b in seen} == {"worker1", "worker2"}, seen
    assert len(seen) == 3, seen
    # the suite's own checks of the swarm and the app ran and passed (none skipped)
    suite = invoke("test", f"--env={ENV}", "-k", "swarm")
    assert "FAILED" not in suite.stderr
    junit = (ROOT / "build" / ENV / "junit.xml").read_text()
    assert 'skipped="0"' in junit and "test_app_answers_through_the_load_balancer" in junit


def test_the_app_keeps_answering_when_a_worker_stops(env, deployed, get):
    client = client_on(get, "worker2")
    node = docker.from_env().containers.get(f"lapinfra-{ENV}-worker2")
    answers = []
    try:
        node.stop(timeout=0)    # a power loss of the worker
        started = time.monotonic()
        while time.monotonic() - started < 30:
            answers.append(backend_of(get(client)))
            if answers[-1].startswith("worker1-"):
                break
            time.sleep(0.5)
        assert answers[-1].startswith("worker1-"), f"the session did not move to worker1 within 30s: {answers}"
        # and stays there
        assert [backend_of(get(client)) for _ in range(5)] == [answers[-1]] * 5
        # the swarm starts the lost replicas again on the worker that is left
        wait_for("3 replicas on worker1", lambda: status()[APP]["nodes"] == ["worker1"] * 3 and status()[APP], 120)
        # the proxy lists the new replicas once they pass their health check (read every 2 s)
        wait_for_spread(get)
        seen = {backend_of(get(requests.Session())) for _ in range(30)}
        assert len(seen) == 3 and all(b.startswith("worker1-") for b in seen), seen
    finally:
        client.close()
        invoke("node.up", f"--env={ENV}", "--node", "worker2")
    out = invoke("node.status", f"--env={ENV}").stdout
    assert any(line.split()[:3] == ["worker2", "worker", "ready"] for line in out.splitlines()), out


@pytest.fixture
def broken_image():
    """The app's image with a server that never starts: its health check fails."""
    client = docker.from_env()
    dockerfile = b'FROM infra/sampleapp\nENTRYPOINT ["sleep", "3600"]\n'
    client.images.build(fileobj=io.BytesIO(dockerfile), tag=BROKEN, rm=True)
    yield BROKEN
    client.images.remove(BROKEN, force=True)


def test_a_rolling_update_to_a_broken_image_rolls_back_by_itself(env, deployed, get, broken_image):
    before = status()[APP]
    run = invoke("app.deploy", APP, f"--env={ENV}", "--image", broken_image, check=False)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "rolled it back" in run.stderr, run.stderr[-2000:]
    after = status()[APP]
    assert after["image"] == before["image"] and after["update"] == "rollback_completed", after
    wait_for("3 healthy replicas", lambda: status()[APP]["running"] == 3, 60)
    for _ in range(10):
        with requests.Session() as client:
            assert get(client).text.startswith("backend=")
    # what the record says runs is still the good release
    assert invoke("test", f"--env={ENV}", "-k", "swarm").returncode == 0
