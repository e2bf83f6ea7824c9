"""The no-op build's stamp: any input change, a missing image, --force and --only take the full path."""
import json
import os
import shutil
import socket
import tempfile
import threading
from pathlib import Path
from types import SimpleNamespace

import pytest

from lapinfra import buildstamp, config, images
from lapinfra.project import Project
from lapinfra.report import Recorder

BASE_ID = "sha256:" + "b" * 64


class FakeEngine:
    """A Docker engine on a unix socket that answers every GET with an image list."""

    def __init__(self, path: str, listing: list[dict]):
        self.listing, self.requests = listing, []
        self.server = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.server.bind(path)
        self.server.listen()
        threading.Thread(target=self._serve, daemon=True).start()

    def _serve(self):
        while True:
            try:
                conn, _ = self.server.accept()
            except OSError:
                return
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(4096)
                self.requests.append(data.split(b"\r\n", 1)[0].decode())
                body = json.dumps(self.listing).encode()
                conn.sendall(b"HTTP/1.0 200 OK\r\nContent-Type: application/json\r\n\r\n" + body)


@pytest.fixture(autouse=True)
def _fresh_verdicts():
    buildstamp.forget()
    yield
    buildstamp.forget()


@pytest.fixture
def stamped(tree, monkeypatch):
    """A project tree with a stamp written after a (pretend) full build, and an engine that agrees."""
    ca = tree / "ca.pem"
    ca.write_text("-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n")
    base_yml = tree / "environments" / "base.yml"
    base_yml.write_text(base_yml.read_text().replace("extra_ca_certs: [/etc/ssl/certs/ca-certificates.crt]", f"extra_ca_certs: [{ca}]"))
    code = tree / "code" / "images.py"  # stands in for lapinfra's own source files
    code.parent.mkdir()
    code.write_text("# hashing code\n")
    monkeypatch.setattr(buildstamp, "CODE", (code,))
    monkeypatch.setattr(buildstamp, "RACY_NS", -10**15)  # every file of the tree was written just now

    p = Project("test", root=tree, reporter=Recorder())
    order = [n for level in p.graph.order() for n in level]
    results = [images.BuildResult(n, p.graph.specs[n].tag, p.graph.hash(n, BASE_ID), False) for n in order]
    listing = [{"Id": BASE_ID, "RepoTags": ["infra/base:latest"], "Labels": None}]
    listing += [{"Id": f"sha256:{r.name}", "RepoTags": [f"{r.tag}:latest"], "Labels": {images.HASH_LABEL: r.hash}} for r in results]
    asked = []

    def api_images(filters):
        asked.append(filters)
        return listing

    p.__dict__["docker"] = SimpleNamespace(api=SimpleNamespace(images=api_images))
    assert buildstamp.record(p, SimpleNamespace(base_image_id=BASE_ID), results)
    assert "infra/base:latest" in asked[0]["reference"]

    sock_dir = tempfile.mkdtemp(prefix="lapst-", dir="/tmp")  # unix socket paths are short
    engine = FakeEngine(f"{sock_dir}/docker.sock", listing)
    monkeypatch.setenv("DOCKER_HOST", f"unix://{sock_dir}/docker.sock")
    monkeypatch.delenv("LAPINFRA_ENV", raising=False)
    yield SimpleNamespace(root=tree, engine=engine, listing=listing, results=results, ca=ca, code=code)
    engine.server.close()
    shutil.rmtree(sock_dir, ignore_errors=True)


def test_unchanged_inputs_and_images_take_the_fast_path_with_one_request(stamped):
    seen = buildstamp.check(stamped.root, None)
    assert seen is not None and seen.up_to_date and seen.base_present
    assert seen.tags == tuple(r.tag for r in stamped.results) and "lapinfra/node" in seen.tags
    assert buildstamp.check(stamped.root, "test") is seen  # images.base and build share it
    assert len(stamped.engine.requests) == 1 and stamped.engine.requests[0].startswith("GET /images/json?filters=")


def _append(path: Path, text: str = "# changed\n") -> None:
    path.write_text(path.read_text() + text)


CHANGES = {
    "a file's content": lambda r: _append(r / "images" / "dns" / "entrypoint.sh"),
    "only its mtime (touch)": lambda r: os.utime(r / "images" / "dns" / "entrypoint.sh", ns=(0, os.stat(r / "images" / "dns" / "entrypoint.sh").st_mtime_ns + 10**9)),
    "its mode": lambda r: os.chmod(r / "images" / "dns" / "healthcheck.sh", 0o700),
    "a new file": lambda r: (r / "images" / "dns" / "new.conf").write_text("x"),
    "a new file in a new folder": lambda r: (r / "images" / "dns" / "sub").mkdir() or (r / "images" / "dns" / "sub" / "x").write_text("x"),
    "a removed file": lambda r: (r / "images" / "dns" / "healthcheck.sh").unlink(),
    "a new image folder": lambda r: (r / "images" / "zzz").mkdir() or (r / "images" / "zzz" / "Dockerfile").write_text("FROM infra/base\n"),
    "a template": lambda r: _append(next((r / "images").glob("*/templates/*"))),
    "the node image": lambda r: _append(r / "nodes" / "image" / "Dockerfile"),
    "environments/base.yml": lambda r: _append(r / "environments" / "base.yml"),
    "environments/test/env.yml": lambda r: _append(r / "environments" / "test" / "env.yml"),
    "nodes/test.yml": lambda r: _append(r / "nodes" / "test.yml"),
    "the extra CA bundle": lambda r: _append(r / "ca.pem", "more\n"),
    "lapinfra's hashing code": lambda r: _append(r / "code" / "images.py"),
}


@pytest.mark.parametrize("change", CHANGES)
def test_any_input_change_takes_the_full_path(stamped, change):
    CHANGES[change](stamped.root)
    assert buildstamp.check(stamped.root, "test") is None
    assert stamped.engine.requests == [], "a changed input is decided without asking the engine"


LISTING_CHANGES = {
    "an image removed": lambda ls: ls.pop(3),
    "a tag moved to another image": lambda ls: ls[3].update(Id="sha256:other"),
    "a hash label changed": lambda ls: ls[3].update(Labels={images.HASH_LABEL: "0" * 64}),
    "the base image replaced": lambda ls: ls[0].update(Id="sha256:newbase"),
}


@pytest.mark.parametrize("change", LISTING_CHANGES)
def test_an_image_not_as_recorded_takes_the_full_path(stamped, change):
    LISTING_CHANGES[change](stamped.listing)
    seen = buildstamp.check(stamped.root, "test")
    assert seen is not None and not seen.up_to_date
    assert seen.base_present


def test_a_missing_base_image_is_not_present(stamped):
    stamped.listing.pop(0)
    seen = buildstamp.check(stamped.root, "test")
    assert not seen.up_to_date and not seen.base_present


def test_no_stamp_another_checkout_or_no_unix_socket_take_the_full_path(stamped, tmp_path, monkeypatch):
    assert buildstamp.check(stamped.root, "prod") is None  # no stamp for that environment
    copy = tmp_path / "copy"
    shutil.copytree(stamped.root, copy, copy_function=shutil.copy2)
    assert buildstamp.check(copy, "test") is None  # the stamp names the checkout it was made in
    buildstamp.forget()
    monkeypatch.setenv("DOCKER_HOST", "tcp://127.0.0.1:2375")
    assert buildstamp.check(stamped.root, "test") is None
    buildstamp.forget()
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/nothere.sock")
    assert buildstamp.check(stamped.root, "test") is None


def test_inputs_changed_in_the_last_seconds_are_not_stamped(stamped, monkeypatch):
    monkeypatch.setattr(buildstamp, "RACY_NS", 2_000_000_000)
    p = Project("test", root=stamped.root, reporter=Recorder())
    p.extra_ca()
    assert p.inputs.racy(), "the tree was written a moment ago"
    buildstamp.invalidate(stamped.root, "test")
    assert not buildstamp.write(p.inputs, "infra/base", BASE_ID, [(r.tag, r.hash) for r in stamped.results], stamped.listing)
    assert not buildstamp.stamp_path(stamped.root, "test").exists()


def test_no_stamp_when_the_engine_does_not_show_what_was_built(stamped):
    p = Project("test", root=stamped.root, reporter=Recorder())
    built = [(r.tag, r.hash) for r in stamped.results]
    assert not buildstamp.write(p.inputs, "infra/base", BASE_ID, built, stamped.listing[:-1])
    assert not buildstamp.write(p.inputs, "infra/base", "sha256:otherbase", built, stamped.listing)
    assert buildstamp.write(p.inputs, "infra/base", BASE_ID, built, stamped.listing)


def test_the_stamp_covers_the_configuration_and_the_hashing_code():
    root = Path("/r")
    assert buildstamp.input_paths(root, "prod")[:3] == config.layer_files(root, "prod")
    assert buildstamp.HASH_LABEL == images.HASH_LABEL
    assert {"images.py", "config.py", "project.py", "buildstamp.py"} <= {p.name for p in buildstamp.CODE}


# ---- the tasks: --force and --only never take the fast path ----------------------

class FullPath(Exception):
    pass


@pytest.fixture
def build_task(monkeypatch, capsys):
    import tasks.images as t

    calls = []

    def fake_check(root, env):
        calls.append(env)
        return buildstamp.Verdict("infra/base", True, True, ("infra/a", "infra/b"))

    def full_path(c, env):
        raise FullPath(env)

    monkeypatch.setattr(buildstamp, "check", fake_check)
    monkeypatch.setattr(t, "project", full_path)
    return SimpleNamespace(build=t.build.body, base=t.base.body, calls=calls, capsys=capsys)


def test_an_up_to_date_verdict_skips_the_full_path(build_task):
    build_task.base(None, env="test")
    build_task.build(None, env="test")
    err = build_task.capsys.readouterr().err
    assert "infra/base: present" in err and "infra/b: up to date" in err
    assert "built 0 of 2 images (all up to date)" in err


@pytest.mark.parametrize("kwargs", [{"force": True}, {"only": "dns"}])
def test_force_and_only_take_the_full_path(build_task, kwargs):
    with pytest.raises(FullPath):
        build_task.build(None, env="test", **kwargs)
    assert build_task.calls == []


def test_force_on_the_base_image_takes_the_full_path(build_task):
    with pytest.raises(FullPath):
        build_task.base(None, env="test", force=True)


def test_a_stale_verdict_takes_the_full_path(build_task, monkeypatch):
    monkeypatch.setattr(buildstamp, "check", lambda root, env: buildstamp.Verdict("infra/base", True, False, ("infra/a",)))
    with pytest.raises(FullPath):
        build_task.build(None, env="test")
