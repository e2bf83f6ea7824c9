"""The registry's accounts by purpose: the rendered nginx.conf and config.yml under a
real docker-registry and nginx on the loopback.

Skipped where they are not installed (`apt-get install docker-registry nginx-light`).
Both run from a temporary folder on 127.0.0.1 and free ports; every request goes there.
"""
import hashlib
import json
import shutil
import socket
import subprocess
import time

import pytest
import requests

from lapinfra import render, services

pytestmark = pytest.mark.skipif(not (shutil.which("docker-registry") and shutil.which("nginx")),
                                reason="docker-registry or nginx is not installed")

MANIFEST_V2 = "application/vnd.docker.distribution.manifest.v2+json"


def _free_port() -> int:
    with socket.create_server(("127.0.0.1", 0)) as s:
        return s.getsockname()[1]


def _wait(url, proc, what, **kw):
    deadline = time.monotonic() + 20
    while True:
        try:
            return requests.get(url, timeout=1, **kw)
        except requests.RequestException:
            if proc.poll() is not None or time.monotonic() > deadline:
                proc.kill()
                pytest.fail(f"{what} did not start:\n{proc.stdout.read()}")
            time.sleep(0.2)


@pytest.fixture(scope="module")
def registry(tmp_path_factory):
    """(url, ca, push account, pull account) of the rendered registry and its nginx."""
    from tests.conftest import copy_tree, test_project

    project = test_project(copy_tree(tmp_path_factory.mktemp("tree")))
    files = render.render_all(project).files
    rendered = project.build_dir / "rendered" / "registry"
    run = tmp_path_factory.mktemp("registry")
    (run / "secrets").mkdir()
    (run / "accounts").mkdir()
    (run / "data").mkdir()
    for dest, src in services.by_name(project.env, "registry").secrets.items():
        shutil.copy(project.secrets.path(src), run / "secrets" / dest)
    # what the entrypoint writes
    (run / "accounts/readers.htpasswd").write_text((run / "secrets/htpasswd").read_text() + (run / "secrets/pull.htpasswd").read_text())
    shutil.copy(run / "secrets/htpasswd", run / "accounts/writers.htpasswd")

    backend, front = _free_port(), _free_port()
    config = files[rendered / "config.yml"].replace("rootdirectory: /data", f"rootdirectory: {run}/data")
    (run / "config.yml").write_text(config.replace("addr: 127.0.0.1:5001", f"addr: 127.0.0.1:{backend}"))
    nginx = files[rendered / "nginx.conf"].replace("user www-data;", "user root;").replace("pid /run/nginx.pid;", f"pid {run}/nginx.pid;")
    nginx = nginx.replace("listen 5000 ssl;", f"listen 127.0.0.1:{front} ssl;").replace("server 127.0.0.1:5001;", f"server 127.0.0.1:{backend};")
    nginx = nginx.replace("/run/secrets/", f"{run}/secrets/").replace("/run/registry/", f"{run}/accounts/")
    nginx = nginx.replace("http {", f"http {{\n    client_body_temp_path {run}/body;\n    proxy_temp_path {run}/proxy;", 1)
    (run / "nginx.conf").write_text(nginx)

    procs = [subprocess.Popen(["docker-registry", "serve", str(run / "config.yml")], stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)]
    try:
        _wait(f"http://127.0.0.1:{backend}/v2/", procs[0], "docker-registry")
        procs.append(subprocess.Popen(["nginx", "-p", str(run), "-c", str(run / "nginx.conf"), "-g", "daemon off;"],
                                      stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True))
        url = f"https://127.0.0.1:{front}"
        ca = str(project.secrets.path("ca.crt"))
        _wait(f"{url}/v2/", procs[1], "nginx", verify=ca)
        push = (project.env.registry.user, project.secrets.registry_password.reveal())
        pull = (project.secrets.registry_pull_user, project.secrets.registry_pull_password.reveal())
        yield {"url": url, "ca": ca, "push": push, "pull": pull}
    finally:
        for proc in procs:
            proc.terminate()
            proc.wait(timeout=10)


def _call(registry, method, path, account=None, **kw):
    return requests.request(method, f"{registry['url']}/v2/{path}", auth=registry[account] if account else None,
                            verify=registry["ca"], timeout=10, **kw)


def _push_blob(registry, repository, data: bytes, account="push"):
    """POST an upload, then PUT the data with its digest; the response that ended it."""
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    start = _call(registry, "POST", f"{repository}/blobs/uploads/", account)
    if start.status_code != 202:
        return start, digest
    done = requests.put(f"{registry['url']}{start.headers['Location']}", params={"digest": digest}, data=data,
                        auth=registry[account], verify=registry["ca"], timeout=10,
                        headers={"Content-Type": "application/octet-stream"})
    return done, digest


def _push_image(registry, repository, account="push"):
    """A one-layer image as `docker push` sends it: blobs, then the manifest. The last response."""
    layer = b"layer of " + repository.encode()
    config = json.dumps({"architecture": "amd64", "os": "linux", "rootfs": {"type": "layers", "diff_ids": []}}).encode()
    for data in (layer, config):
        r, _ = _push_blob(registry, repository, data, account)
        if r.status_code != 201:
            return r
    manifest = {"schemaVersion": 2, "mediaType": MANIFEST_V2,
                "config": {"mediaType": "application/vnd.docker.container.image.v1+json", "size": len(config),
                           "digest": "sha256:" + hashlib.sha256(config).hexdigest()},
                "layers": [{"mediaType": "application/vnd.docker.image.rootfs.diff.tar.gzip", "size": len(layer),
                            "digest": "sha256:" + hashlib.sha256(layer).hexdigest()}]}
    return _call(registry, "PUT", f"{repository}/manifests/latest", account, data=json.dumps(manifest),
                 headers={"Content-Type": MANIFEST_V2})


def test_anonymous_and_wrong_passwords_are_refused_as_docker_expects(registry):
    r = _call(registry, "GET", "")
    assert r.status_code == 401
    assert r.headers["WWW-Authenticate"].startswith("Basic")
    assert r.headers["Docker-Distribution-Api-Version"] == "registry/2.0"
    assert requests.get(f"{registry['url']}/v2/", auth=(registry["pull"][0], "wrong"), verify=registry["ca"], timeout=5).status_code == 401


def test_the_push_account_pushes_and_the_pull_account_pulls_it(registry):
    assert _push_image(registry, "apps/hello").status_code == 201
    assert _call(registry, "GET", "", "pull").status_code == 200
    got = _call(registry, "GET", "apps/hello/manifests/latest", "pull", headers={"Accept": MANIFEST_V2})
    assert got.status_code == 200 and got.json()["layers"]
    blob = got.json()["layers"][0]["digest"]
    assert _call(registry, "GET", f"apps/hello/blobs/{blob}", "pull").content == b"layer of apps/hello"
    assert _call(registry, "HEAD", "apps/hello/manifests/latest", "pull", headers={"Accept": MANIFEST_V2}).status_code == 200


def test_the_pull_accounts_push_is_refused_and_stores_nothing(registry):
    r = _push_image(registry, "apps/evil", account="pull")
    assert r.status_code == 401
    assert _call(registry, "GET", "apps/evil/tags/list", "push").status_code == 404
    catalog = _call(registry, "GET", "_catalog", "pull").json()["repositories"]
    assert "apps/evil" not in catalog


def test_the_pull_account_can_neither_replace_nor_delete_an_image(registry):
    assert _push_image(registry, "apps/kept").status_code == 201
    manifest = _call(registry, "GET", "apps/kept/manifests/latest", "pull", headers={"Accept": MANIFEST_V2})
    digest = manifest.headers["Docker-Content-Digest"]
    assert _call(registry, "DELETE", f"apps/kept/manifests/{digest}", "pull").status_code == 401
    assert _call(registry, "PUT", "apps/kept/manifests/latest", "pull", data=manifest.content,
                 headers={"Content-Type": MANIFEST_V2}).status_code == 401
    mount = _call(registry, "POST", "apps/other/blobs/uploads/", "pull", params={"mount": digest, "from": "apps/kept"})
    assert mount.status_code == 401
    assert _call(registry, "GET", "apps/kept/manifests/latest", "pull", headers={"Accept": MANIFEST_V2}).status_code == 200


def test_a_chunked_upload_goes_through_the_proxy(registry):
    """How the Docker engine uploads a layer: POST, PATCH the data, PUT with the digest."""
    data = b"x" * (3 * 1024 * 1024)
    start = _call(registry, "POST", "apps/big/blobs/uploads/", "push")
    assert start.status_code == 202
    location = start.headers["Location"]
    assert location.startswith("/v2/")            # relative: right behind the proxy and the tunnel
    patch = requests.patch(f"{registry['url']}{location}", data=data, auth=registry["push"], verify=registry["ca"], timeout=30,
                           headers={"Content-Type": "application/octet-stream"})
    assert patch.status_code == 202
    digest = "sha256:" + hashlib.sha256(data).hexdigest()
    done = requests.put(f"{registry['url']}{patch.headers['Location']}", params={"digest": digest}, auth=registry["push"],
                        verify=registry["ca"], timeout=30)
    assert done.status_code == 201
    assert _call(registry, "HEAD", f"apps/big/blobs/{digest}", "pull").headers["Content-Length"] == str(len(data))
