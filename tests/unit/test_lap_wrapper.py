"""./lap prepares only what a command needs: the decision, through its dry `--lap-explain`.

The script runs with a PATH of stand-ins only: `docker` is a stub that answers
"no engine" (nothing reaches a real one), and which of dockerd, vagrant, ruby, ...
exist is up to each test. Nothing is installed or started: --lap-explain only prints."""
import json
import os
import re
import shutil
import subprocess
import sys

import pytest

from tests.conftest import ROOT

TOOLS = ("dirname", "sha256sum", "cut", "cat", "id")


@pytest.fixture
def bin_dir(tmp_path):
    folder = tmp_path / "bin"
    folder.mkdir()
    for tool in TOOLS:
        os.symlink(shutil.which(tool), folder / tool)
    os.symlink(sys.executable, folder / "python3")
    _stub(folder, "docker", "exit 1")          # no engine answers
    return folder


def _stub(folder, name, body="exit 0"):
    path = folder / name
    path.write_text(f"#!/bin/sh\n{body}\n")
    path.chmod(0o755)


def explain(bin_dir, *args):
    run = subprocess.run([shutil.which("bash"), str(ROOT / "lap"), "--lap-explain", *args],
                         env={"PATH": str(bin_dir), "HOME": str(bin_dir)}, capture_output=True, text=True, timeout=30)
    assert run.returncode == 0 and run.stderr == "", run.stderr
    return dict(line.split(": ", 1) for line in run.stdout.splitlines())


@pytest.mark.parametrize("args", [["--list"], ["-l"], ["config.check", "--env", "staging"], ["config.check", "--env=prod"],
                                  ["render", "--env=staging"], ["--help", "deploy"], ["deploy", "--help"],
                                  ["--print-completion-script", "bash"], [],
                                  ["config.check", "--env", ""], ["config.check", "*", "a]b"]])
def test_commands_that_need_no_docker_install_and_start_nothing_of_it(bin_dir, args):
    out = explain(bin_dir, *args)
    assert out["needs"] == "venv"
    assert out["packages to install"] == "none"
    assert out["docker engine"] == "not needed"


@pytest.mark.parametrize("args", [["up"], ["build", "deploy", "--env=staging"],
                                  ["config.check", "node.up"], ["dns.register", "office.host", "--ip", "10.0.0.9"]])
def test_up_pytest_and_node_commands_prepare_everything(bin_dir, args):
    out = explain(bin_dir, *args)
    assert out["needs"] == "all"
    assert out["packages to install"].split() == ["docker.io", "debootstrap", "vagrant", "ruby", "openssh-client", "bind9-dnsutils"]
    assert out["docker engine"] == "needed, would start it"


def test_the_projects_tests_also_get_the_browser_of_the_status_page_check(bin_dir):
    out = explain(bin_dir, "pytest", "-v", "--durations=15")
    assert out["needs"] == "tests"
    assert out["packages to install"].split() == ["docker.io", "debootstrap", "vagrant", "ruby", "openssh-client",
                                                  "bind9-dnsutils", "chromium"]
    assert explain(bin_dir, "up")["packages to install"].split()[-1] == "bind9-dnsutils"   # not for `up`


def test_image_builds_need_the_engine_but_not_vagrant(bin_dir):
    out = explain(bin_dir, "build", "--env=staging")
    assert out["needs"] == "docker"
    assert out["packages to install"].split() == ["docker.io", "debootstrap"]
    assert out["docker engine"] == "needed, would start it"


def test_only_missing_packages_are_installed(bin_dir):
    for present in ("dockerd", "debootstrap", "vagrant", "ruby", "ssh"):
        _stub(bin_dir, present)
    assert explain(bin_dir, "up")["packages to install"] == "bind9-dnsutils"


def test_a_running_engine_is_not_started_again(bin_dir):
    _stub(bin_dir, "docker", "exit 0")
    assert explain(bin_dir, "build")["docker engine"] == "needed, answers"


def test_an_unknown_command_gets_everything_as_before(bin_dir):
    assert explain(bin_dir, "some.new-task")["needs"] == "all"


def test_the_command_after_double_dash_is_not_read_as_ours(bin_dir):
    assert explain(bin_dir, "node.ssh", "--", "ls", "--help")["needs"] == "all"


def test_every_task_has_a_line_in_the_table():
    """A task missing from NEEDS would silently get "all"; a line for a task that is gone is stale."""
    listed = subprocess.run([sys.executable, "-m", "invoke", "--list", "--list-format=json"], cwd=ROOT,
                            env={**os.environ, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True, check=True).stdout
    tasks = set(_names(json.loads(listed)))
    table = set(re.findall(r"\[([a-z.\-]+)\]=(?:venv|docker|all|tests)", (ROOT / "lap").read_text()))
    assert tasks <= table, f"tasks without a NEEDS line in ./lap: {sorted(tasks - table)}"
    assert table - tasks == {"pytest"}, f"NEEDS lines for no task: {sorted(table - tasks - {'pytest'})}"


def _names(collection, prefix=""):
    for t in collection["tasks"]:
        yield prefix + t["name"]
        yield from (prefix + alias for alias in t["aliases"])
    for sub in collection["collections"]:
        yield from _names(sub, f"{prefix}{sub['name']}.")
