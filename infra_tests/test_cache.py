"""The apt cache (apt-cacher-ng behind the proxy's port 3124): apt-get through it works,
a repeated update is served from the cache, it relays nothing but the archives, and its
password (the report page's) is taken over HTTPS only.

apt-get runs in a throwaway container of the workstation's docker engine, on the
environment's docker network, with the cache as its HTTP proxy: the way a Debian
or Ubuntu machine of the LAN uses ``ubuntu.cache.<domain>:3124``. That the second
update was served from the cache is read from apt-cacher-ng's own statistics (the
report page's log analysis, ``https://ubuntu.cache.<domain>/acng-report.html?doCount``).
"""
from __future__ import annotations

import re
import socket
import uuid

import pytest
import requests

from lapinfra import services

PORT = services.APT_PORT
ADMIN_SECRET = "cache.password"  # mounted as /run/secrets/admin.password; optional
# One row of the report page's "Log analysis" table: period, then request hits and misses.
_ROW = re.compile(
    r'<td class="colcont">([^<]*)</td><td class="coltitle">.*?</td>'
    r'<td class="colcont">(\d+) \([^)]*\)</td><td class="colcont">(\d+) \([^)]*\)</td>'
)


@pytest.fixture(scope="module")
def proxy(master_ip) -> str:
    return f"http://{master_ip}:{PORT}"


class Report:
    """The report page over HTTPS (the master's port 443, the name in the Host header,
    the certificate checked against the environment's CA)."""

    def __init__(self, master_ip: str, name: str, ca: str):
        self.url, self.name, self.ca = f"https://{master_ip}:443{services.APT_REPORT}", name, ca

    def get(self, auth=None, **params) -> requests.Response:
        return requests.get(self.url, params=params, auth=auth, headers={"Host": self.name}, verify=self.ca, timeout=60)


@pytest.fixture(scope="module")
def report(project, env, master_ip) -> Report:
    cache = services.by_name(env, "cache")
    return Report(master_ip, f"{cache.vhost}.{env.domain}", str(project.secrets.path("ca.crt")))


@pytest.fixture(scope="module")
def admin_auth(project):
    """Credentials of the report page when the environment protects it (AdminAuth)."""
    path = project.secrets.path(ADMIN_SECRET)
    return ("admin", path.read_text().strip()) if path.exists() else None


def _request_counts(report: Report, auth) -> tuple[int, int]:
    """(hits, misses) of requests, summed over the report page's log analysis rows."""
    r = report.get(auth, doCount="Count Data")
    assert r.status_code == 200, f"report page: HTTP {r.status_code}"
    rows = _ROW.findall(r.text)
    return sum(int(hits) for _, hits, _ in rows), sum(int(misses) for _, _, misses in rows)


@pytest.fixture
def apt_client(env):
    """A throwaway infra/base container on the environment's network; always removed."""
    import docker

    client = docker.from_env()
    network = env.network.name if getattr(env, "network", None) else None
    image = client.images.get(env.base_image.tag)  # never pulled: `invoke images.base` makes it
    container = client.containers.run(
        image.id, ["sleep", "900"], detach=True, network=network,
        name=f"lapinfra-test-apt-{uuid.uuid4().hex[:8]}", labels={"lapinfra.purpose": "infra_tests cache check"},
    )
    try:
        yield container
    finally:
        container.remove(force=True)
        client.close()


def _apt_get_update(container, proxy: str) -> str:
    """apt-get update from scratch (no index files left), through the cache only."""
    script = (
        "rm -rf /var/lib/apt/lists/* && "
        f"apt-get -o Acquire::http::Proxy={proxy} -o Acquire::Retries=0 update 2>&1"
    )
    code, output = container.exec_run(["sh", "-c", script])
    text = output.decode(errors="replace")
    assert code == 0, f"apt-get update through {proxy} failed ({code}):\n{text}"
    assert not re.search(r"^(Err:|W:|E:)", text, re.M), f"apt-get update reported problems:\n{text}"
    assert "Get:" in text, text
    return text


def test_report_page_answers_over_https(report, admin_auth):
    r = report.get(admin_auth)
    assert r.status_code == 200
    assert "Apt-Cacher NG" in r.text


@pytest.mark.slow
def test_second_apt_get_update_is_served_from_the_cache(proxy, report, admin_auth, apt_client):
    """An update from scratch is answered from the cache (hits rise in its statistics). On a
    cache that an earlier update (an earlier run, a machine of the LAN) filled, the first
    update shows it; on a cold one, the second."""
    hits_before, misses_before = _request_counts(report, admin_auth)
    _apt_get_update(apt_client, proxy)
    hits_first, misses_first = _request_counts(report, admin_auth)
    assert (hits_first + misses_first) > (hits_before + misses_before), \
        "the update left no trace in the cache's statistics"
    if hits_first > hits_before:
        return
    _apt_get_update(apt_client, proxy)
    hits_second, _ = _request_counts(report, admin_auth)
    # The index files (Packages, Translation; fetched by hash) are cached now.
    assert hits_second > hits_first, f"no cache hits from the second update (hits {hits_first} -> {hits_second})"


def test_statistics_need_the_admin_password(report, admin_auth):
    assert admin_auth is not None, f"no secret {ADMIN_SECRET}: the report page would be open to anyone"
    assert report.get(doCount="Count Data").status_code == 401
    assert report.get(("admin", "wrong"), doCount="Count Data").status_code == 401


def test_over_plain_http_the_password_is_never_taken(proxy, report, admin_auth, master_ip):
    """Neither on apt's port nor on port 80 does the right password reach the report page:
    it is refused there (403), and an anonymous visit is sent to https."""
    for url in (f"{proxy}{services.APT_REPORT}", f"http://{master_ip}:80{services.APT_REPORT}"):
        r = requests.get(url, params={"doCount": "Count Data"}, auth=admin_auth, headers={"Host": report.name},
                         allow_redirects=False, timeout=10)
        assert r.status_code == 403 and "https://" in r.text, (url, r.status_code, r.text[:200])
        assert "Apt-Cacher NG" not in r.text
    r = requests.get(f"{proxy}{services.APT_REPORT}", allow_redirects=False, timeout=10)
    assert r.status_code == 403 and report.name in r.text, "apt's port shows the report page"
    r = requests.get(f"http://{master_ip}:80{services.APT_REPORT}", headers={"Host": report.name}, allow_redirects=False, timeout=10)
    assert r.status_code == 308 and r.headers["Location"] == f"https://{report.name}{services.APT_REPORT}"


@pytest.mark.parametrize("url", [
    "http://example.invalid/pool/main/x/x/x_1.0_all.deb",   # package-like file of a foreign host
    "http://example.invalid/index.html",                     # any file of a foreign host
])
def test_foreign_hosts_are_not_relayed(proxy, url):
    """ForceManaged: only the Debian/Ubuntu archives are fetched; refused before any lookup."""
    r = requests.get(url, proxies={"http": proxy}, timeout=10)
    assert r.status_code == 403


def test_https_tunnels_are_refused(master_ip):
    """CONNECT is refused (the proxy in front answers 400 to it, before any lookup)."""
    with socket.create_connection((master_ip, PORT), timeout=5) as s:
        s.sendall(b"CONNECT bugs.debian.org:443 HTTP/1.1\r\nHost: bugs.debian.org:443\r\n\r\n")
        status = s.recv(200).split(b"\r\n", 1)[0].decode(errors="replace")
    assert status.split()[1] in ("400", "403", "405"), status
