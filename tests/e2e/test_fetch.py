"""snapshot.fetch: prepare the test environment from a snapshot of production's stand-in (staging)."""
import json
import os
import re
import uuid

import pytest
import requests

from lapinfra import config
from tests.conftest import ROOT
from tests.e2e.conftest import ENV, TARGET, invoke, node_sh

pytestmark = pytest.mark.e2e

# The target's own state, which a fetched snapshot must not replace.
OWN = "cd /data && find secrets environment lapinfra/release.json -type f -print0 | sort -z | xargs -0 sha256sum"


def _maven(env_name, method, path, data=None, auth=True):
    env = config.load(ROOT, env_name)
    password = (ROOT / "secrets" / env_name / "maven.password").read_text().strip()
    return requests.request(method, f"http://{env.master.ip}/{path}", data=data, timeout=30,
                            auth=("deploy", password) if auth else None, headers={"Host": f"maven.{env.domain}"})


def test_fetch_brings_production_data_to_test_and_keeps_tests_own_config(infra, target):
    source = TARGET   # staging plays production here: test is prepared from it
    tag = uuid.uuid4().hex[:8]
    path, payload = f"com/example/fetched-{tag}/1.0/fetched-{tag}-1.0.jar", os.urandom(32768)
    assert _maven(source, "PUT", path, payload).status_code in (200, 201, 204)
    assert _maven(ENV, "GET", path, auth=False).status_code == 404
    invoke("snapshot.create", f"--env={source}", "--label", f"fetch-{tag}")
    snap = next(s for s in json.loads(invoke("snapshot.list", f"--env={source}", "--json").stdout) if s["label"] == f"fetch-{tag}")
    own_before = node_sh(OWN).stdout

    run = invoke("snapshot.fetch", f"--from={source}", f"--to={ENV}", "--snapshot", snap["id"])
    said = re.search(rf"snapshot {snap['id']} of {source} is (\w+) of {ENV}", run.stderr + run.stdout)
    assert said, run.stderr

    got = _maven(ENV, "GET", path, auth=False)
    assert got.status_code == 200 and got.content == payload, "the artifact written on the source is on test"
    assert node_sh(OWN).stdout == own_before, "test's secrets, config and release record are its own"
    invoke("test", f"--env={ENV}")

    # the copy is staging's data: a plain restore of it on test is refused, nothing stops
    running = node_sh("docker ps -q --filter name=infra_ | sort").stdout
    plain = invoke("restore", f"--env={ENV}", "--snapshot", said.group(1), check=False)
    assert plain.returncode == 1 and f"snapshot.fetch --from={source}" in plain.stderr, plain.stderr
    assert node_sh("docker ps -q --filter name=infra_ | sort").stdout == running


def test_fetch_of_an_unknown_snapshot_changes_nothing(infra, target):
    running = node_sh("docker ps -q --filter name=infra_ | sort").stdout
    run = invoke("snapshot.fetch", f"--from={TARGET}", f"--to={ENV}", "--snapshot", "deadbeef", check=False)
    assert run.returncode == 1 and "no snapshot 'deadbeef'" in run.stderr, run.stderr
    assert node_sh("docker ps -q --filter name=infra_ | sort").stdout == running
