"""Maven and artifact repositories (nginx WebDAV behind the master's proxy):
uploads need the deploy password, downloads are anonymous and return the same bytes.

HTTPS to the master's port 443, the certificate checked against the environment's CA
(secrets/<env>/ca.crt), with the virtual host's name in the Host header, as Maven
(wagon-http: PUT with basic auth, GET) or curl would do it. Over plain HTTP (port 80)
the password is never accepted and nothing is written; anonymous reads still work.
"""
from __future__ import annotations

import os
import uuid

import pytest
import requests

from lapinfra import services

USER = "deploy"
REPOSITORIES = ["maven", "artifact"]


class Repo:
    def __init__(self, name: str, master_ip: str, domain: str, password: str, ca: str):
        self.name = name
        self.base = f"https://{master_ip}:443"
        self.plain = f"http://{master_ip}:80"
        self.headers = {"Host": f"{name}.{domain}"}
        self.auth = (USER, password)
        self.ca = ca

    def url(self, path: str, base: str = "") -> str:
        return f"{base or self.base}/{path.lstrip('/')}"

    def request(self, method: str, path: str, auth=None, **kwargs) -> requests.Response:
        """Over HTTPS, verified with the environment's CA."""
        return requests.request(method, self.url(path), headers=self.headers, auth=auth, verify=self.ca, timeout=30, **kwargs)

    def plain_request(self, method: str, path: str, auth=None, **kwargs) -> requests.Response:
        """Over plain HTTP (port 80); redirects are not followed."""
        return requests.request(method, self.url(path, self.plain), headers=self.headers, auth=auth, timeout=30,
                                allow_redirects=False, **kwargs)


@pytest.fixture(params=REPOSITORIES)
def repo(request, project, env, master_ip):
    password = project.secrets.path(f"{request.param}.password").read_text().strip()
    return Repo(request.param, master_ip, env.domain, password, str(project.secrets.path("ca.crt")))


@pytest.fixture
def unique() -> str:
    """A collection of the suite's own (services.SUITE_PLACE), removed at the end."""
    return f"{services.SUITE_PLACE}-{uuid.uuid4().hex[:12]}"


@pytest.fixture
def cleanup(repo):
    """Collections/files to DELETE (with the password) at the end, whatever happened."""
    paths: list[str] = []
    yield paths
    for path in reversed(paths):
        repo.request("DELETE", path, auth=repo.auth)


def _paths(repo: Repo, unique: str) -> tuple[str, str]:
    """(file to upload, top collection to remove afterwards)."""
    if repo.name == "maven":
        return f"{unique}/probe/1.0/probe-1.0.jar", f"{unique}/"
    return f"{unique}/some/nested dir/{unique}.tar.gz", f"{unique}/"


def test_upload_with_password_then_anonymous_download(repo, unique, cleanup):
    path, top = _paths(repo, unique)
    cleanup.append(top)
    content = os.urandom(200_000)
    r = repo.request("PUT", path, auth=repo.auth, data=content)
    assert r.status_code in (201, 204), f"PUT {path}: HTTP {r.status_code}"

    r = repo.request("GET", path)  # anonymous
    assert r.status_code == 200
    assert r.content == content

    r = repo.request("HEAD", path)
    assert r.status_code == 200
    assert int(r.headers["Content-Length"]) == len(content)

    r = repo.request("DELETE", top, auth=repo.auth)
    assert r.status_code == 204
    assert repo.request("GET", path).status_code == 404


def test_upload_without_password_is_refused_and_stores_nothing(repo, unique, cleanup):
    path, top = _paths(repo, unique)
    cleanup.append(top)
    r = repo.request("PUT", path, data=os.urandom(1000))
    assert r.status_code == 401
    assert repo.request("GET", path).status_code == 404


def test_upload_with_wrong_password_is_refused(repo, unique, cleanup):
    path, top = _paths(repo, unique)
    cleanup.append(top)
    r = repo.request("PUT", path, auth=(USER, "wrong-password"), data=os.urandom(1000))
    assert r.status_code == 401
    assert repo.request("GET", path).status_code == 404


def test_delete_without_password_is_refused(repo, unique, cleanup):
    path, top = _paths(repo, unique)
    cleanup.append(top)
    content = os.urandom(1000)
    assert repo.request("PUT", path, auth=repo.auth, data=content).status_code in (201, 204)
    assert repo.request("DELETE", path).status_code == 401
    r = repo.request("GET", path)
    assert r.status_code == 200 and r.content == content


def test_directory_listing_is_anonymous(repo, unique, cleanup):
    path, top = _paths(repo, unique)
    cleanup.append(top)
    assert repo.request("PUT", path, auth=repo.auth, data=b"listed").status_code in (201, 204)
    folder = path.rsplit("/", 1)[0] + "/"
    r = repo.request("GET", folder)
    assert r.status_code == 200
    assert f'href="{path.rsplit("/", 1)[1]}"' in r.text


# ---- plain HTTP: reads only, the password never accepted ----------------------------------------------

def test_over_plain_http_the_right_password_is_not_accepted_and_nothing_is_written(repo, unique, cleanup):
    path, top = _paths(repo, unique)
    cleanup.append(top)
    r = repo.plain_request("PUT", path, auth=repo.auth, data=os.urandom(1000))
    assert r.status_code == 403, f"PUT over http with the password: HTTP {r.status_code}"
    assert "https://" in r.text
    assert repo.request("GET", path).status_code == 404


def test_over_plain_http_a_write_is_sent_to_https(repo, unique, cleanup):
    path, top = _paths(repo, unique)
    cleanup.append(top)
    r = repo.plain_request("PUT", path, data=os.urandom(1000))
    assert r.status_code == 308, f"PUT over http: HTTP {r.status_code}"
    assert r.headers["Location"].startswith(f"https://{repo.headers['Host']}/")
    assert repo.request("GET", path).status_code == 404


def test_over_plain_http_a_delete_with_the_password_is_refused(repo, unique, cleanup):
    path, top = _paths(repo, unique)
    cleanup.append(top)
    content = os.urandom(1000)
    assert repo.request("PUT", path, auth=repo.auth, data=content).status_code in (201, 204)
    assert repo.plain_request("DELETE", path, auth=repo.auth).status_code == 403
    r = repo.request("GET", path)
    assert r.status_code == 200 and r.content == content


def test_anonymous_download_over_plain_http_still_works(repo, unique, cleanup):
    path, top = _paths(repo, unique)
    cleanup.append(top)
    content = os.urandom(5000)
    assert repo.request("PUT", path, auth=repo.auth, data=content).status_code in (201, 204)
    r = repo.plain_request("GET", path)
    assert r.status_code == 200 and r.content == content
    assert repo.plain_request("HEAD", path).status_code == 200
