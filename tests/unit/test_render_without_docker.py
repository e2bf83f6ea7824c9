"""`invoke render` needs nothing but the configuration: no Docker engine, no image.

The command runs for real (python -m invoke, in a copy of the project) with
DOCKER_HOST pointing at a unix socket path nobody listens on."""
import os
import shutil
import subprocess
import sys

import pytest

from lapinfra import render
from lapinfra.errors import LapinfraError
from tests.conftest import ROOT


@pytest.fixture
def checkout(tree):
    for name in ("tasks.py", "invoke.yaml", "pyproject.toml"):
        shutil.copy(ROOT / name, tree / name)
    shutil.copytree(ROOT / "tasks", tree / "tasks", ignore=shutil.ignore_patterns("__pycache__"))
    return tree


def _no_engine(tmp_path):
    env = {k: v for k, v in os.environ.items() if not k.startswith(("DOCKER_", "LAPINFRA_"))}
    env["DOCKER_HOST"] = f"unix://{tmp_path}/closed.sock"      # nothing listens there
    env["PYTHONPATH"] = str(ROOT)
    return env


def _invoke(checkout, tmp_path, *args):
    return subprocess.run([sys.executable, "-m", "invoke", *args], cwd=checkout, env=_no_engine(tmp_path),
                          capture_output=True, text=True, timeout=120)


def test_render_writes_every_file_with_no_docker_engine(checkout, tmp_path):
    run = _invoke(checkout, tmp_path, "render", "--env=test")
    assert run.returncode == 0, run.stderr
    zone = checkout / "build/test/rendered/dns/db.zone"
    assert zone.is_file() and "SOA" in zone.read_text()
    assert (checkout / "build/test/Vagrantfile").is_file()
    assert "checked: zone records and delegations" in run.stderr      # the pure checks still run
    assert "not checked: named-checkconf, named-checkzone" in run.stderr
    assert "no Docker engine answers" in run.stderr
    assert "building" not in run.stderr.lower() and "base image" not in run.stderr.lower()


def test_render_no_check_says_nothing_was_checked(checkout, tmp_path):
    run = _invoke(checkout, tmp_path, "render", "--env=staging", "--no-check")
    assert run.returncode == 0, run.stderr
    assert (checkout / "build/staging/rendered/dns/db.zone").is_file()
    assert "not checked (--no-check)" in run.stderr and "checked: zone" not in run.stderr


def test_a_broken_zone_still_fails_render_without_docker(checkout, tmp_path):
    tpl = checkout / "images/dns/templates/db.zone.j2"
    tpl.write_text(tpl.read_text().replace("in zone_records", "in {}"))
    run = _invoke(checkout, tmp_path, "render", "--env=test")
    assert run.returncode == 1
    assert "lacks or misstates" in run.stderr


class _Images:
    def __init__(self, present):
        self.present = present

    def get(self, name):
        import docker.errors

        if name not in self.present:
            raise docker.errors.ImageNotFound(f"No such image: {name}")
        return object()


class _Engine:
    def __init__(self, present=()):
        self.images = _Images(set(present))
        self.runs = []
        self.containers = self

    def run(self, image, command, **kw):
        self.runs.append((image, command))


def _with_engine(project, engine):
    project.__dict__["docker"] = engine     # cached_property: the stand-in replaces the real client
    return project


def test_named_checks_are_skipped_when_the_image_is_missing(project):
    engine = _Engine(present=())
    out = render.validate(_with_engine(project, engine), render.render_all(project), need_image=False)
    assert engine.runs == []
    assert any("infra/dns is not built" in s for s in out.skipped)


def test_named_checks_run_when_the_image_is_there(project):
    engine = _Engine(present=("infra/dns",))
    out = render.validate(_with_engine(project, engine), render.render_all(project), need_image=False)
    assert [image for image, _ in engine.runs] == ["infra/dns"]
    assert render.NAMED_CHECKS in out.checked and not any("named" in s for s in out.skipped)


def test_a_deploy_needs_the_named_checks(project, tmp_path, monkeypatch):
    """After `build` (deploy, up, node.up): no engine is an error, not a skip."""
    monkeypatch.setenv("DOCKER_HOST", f"unix://{tmp_path}/closed.sock")
    with pytest.raises(LapinfraError, match="Docker engine"):
        render.validate(project, render.render_all(project), need_image=True)
