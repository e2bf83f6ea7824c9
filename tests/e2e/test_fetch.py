"""snapshot.fetch: prepare test from a snapshot of staging (production's stand-in), as the seed's
development process asks (fetch, then restore), keeping test's own secrets, config and release."""
import json
import os
import uuid

import pytest
import requests

from lapinfra import config
from tests.conftest import ROOT
from tests.e2e.conftest import ENV, TARGET, invoke, node_sh

pytestmark = pytest.mark.e2e

# what a fetch must leave exactly as it is on the target
OWN = "cd /data && find secrets environment lapinfra/release.json -type f -print0 | sort -z | xargs -0 sha256sum"


def running(env=ENV):
    return node_sh("docker ps -q --filter name=infra_ | sort", env=env).stdout


def _maven(env_name, method, path, data=None):
    env = config.load(ROOT, env_name)
    password = (ROOT / "secrets" / env_name / "maven.password").read_text().strip()
    return requests.request(method, f"http://{env.master.ip}/{path}", data=data, auth=("deploy", password),
                            headers={"Host": f"maven.{env.domain}"}, timeout=30)


def test_fetch_brings_stagings_data_to_test_and_keeps_tests_own_state(infra, target):
    artifact, payload = f"com/example/fetched-{uuid.uuid4().hex[:8]}/1.0/f.jar", os.urandom(65536)
    assert _maven(TARGET, "PUT", artifact, payload).status_code in (200, 201, 204)
    assert _maven(ENV, "GET", artifact).status_code == 404
    invoke("snapshot.create", f"--env={TARGET}", "--label", "for-test")
    own_before = node_sh(OWN).stdout
    assert len(own_before.splitlines()) > 10

    run = invoke("snapshot.fetch", f"--from={TARGET}", f"--to={ENV}")
    assert f"of {TARGET} is" in run.stderr and f"restored on {ENV}" in run.stderr

    assert node_sh(OWN).stdout == own_before, "test's secrets, config or release record changed"
    got = _maven(ENV, "GET", artifact)
    assert got.status_code == 200 and got.content == payload
    invoke("test", f"--env={ENV}")

    # the copy holds staging's data: a plain restore of it is refused, pointing at fetch
    snaps = json.loads(invoke("snapshot.list", f"--env={ENV}", "--json").stdout)
    copied = [s for s in snaps if f"env={TARGET}" in s.get("tags", [])]
    assert copied, snaps
    before = running()
    refused = invoke("restore", f"--env={ENV}", "--snapshot", copied[-1]["id"], check=False)
    assert refused.returncode == 1 and f"snapshot.fetch --from={TARGET}" in refused.stderr
    assert running() == before


def test_fetch_of_an_unknown_snapshot_changes_nothing(infra, target):
    before, own = running(), node_sh(OWN).stdout
    run = invoke("snapshot.fetch", f"--from={TARGET}", f"--to={ENV}", "--snapshot", "deadbeef", check=False)
    assert run.returncode == 1 and "no snapshot 'deadbeef'" in run.stderr
    assert running() == before and node_sh(OWN).stdout == own
