"""CD server (Buildbot): web UI and REST API behind the proxy, as cd.<domain>.

The workstation does not resolve *.internal names: every request goes to the
master's address with the Host header the proxy routes on. Reading is anonymous
and works over plain HTTP; the login is over HTTPS only (infra_tests/test_hardening.py).
"""
import pytest
import requests


@pytest.fixture(scope="module")
def cd(master_ip, env):
    """GET a path of the CD server through the proxy, as http://cd.<domain>/<path>."""
    session = requests.Session()
    session.headers["Host"] = f"cd.{env.domain}"

    def get(path):
        r = session.get(f"http://{master_ip}:80/{path}", timeout=10)
        assert r.status_code == 200, f"/{path}: HTTP {r.status_code}"
        return r

    return get


def test_web_ui_answers(cd):
    r = cd("")
    assert "text/html" in r.headers["content-type"]
    assert "Buildbot" in r.text


def test_web_ui_knows_its_public_url(cd, env):
    config = cd("config").json()
    assert config["buildbotURL"] == f"https://cd.{env.domain}/"


def test_the_login_over_plain_http_goes_to_https(master_ip, env):
    r = requests.get(f"http://{master_ip}:80/auth/login", headers={"Host": f"cd.{env.domain}"}, allow_redirects=False, timeout=10)
    assert r.status_code == 308 and r.headers["Location"] == f"https://cd.{env.domain}/auth/login"


def test_builder_infra_is_configured(cd):
    builders = cd("api/v2/builders").json()["builders"]
    assert "infra" in [b["name"] for b in builders]


def test_git_poller_watches_the_repository(cd, env):
    url = f"ssh://git@infra_git:22/{env.cd.repository}"
    sources = cd("api/v2/changesources").json()["changesources"]
    pollers = [s for s in sources if "GitPoller" in s["name"] and s["name"].endswith(url)]
    assert pollers, f"no GitPoller for {url} in {[s['name'] for s in sources]}"
    # claimed (running) by an active master
    assert all(p["master"] and p["master"]["active"] for p in pollers)


def test_worker_is_connected_to_the_infra_builder(cd):
    builder_id = next(b["builderid"] for b in cd("api/v2/builders").json()["builders"] if b["name"] == "infra")
    workers = cd("api/v2/workers").json()["workers"]
    ready = [w for w in workers if w["connected_to"] and any(c["builderid"] == builder_id for c in w["configured_on"])]
    assert ready, f"no connected worker for builder infra: {workers}"
