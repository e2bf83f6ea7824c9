"""snapshot.fetch: prepare test from a snapshot of staging (production's stand-in), as the seed's
development process asks (fetch, then restore), keeping test's own secrets, config and release."""
import json
import os
import re
import subprocess
import uuid

import pytest
import requests

from lapinfra import config
from tests.conftest import ROOT
from tests.e2e.conftest import ENV, TARGET, invoke, node_sh

pytestmark = pytest.mark.e2e

# what a fetch must leave exactly as it is on the target
# (git/ssh: the git server's host keys, which the target's CD server has pinned)
OWN = "cd /data && find secrets environment lapinfra/release.json git/ssh -type f -print0 | sort -z | xargs -0 sha256sum"


# Public by nature: never searched for (a CA certificate or a public key may be anywhere).
PUBLIC = re.compile(r"(\.pub|\.crt|known_hosts|authorized_keys\..*)$")
TOKEN = re.compile(rb"[A-Za-z0-9+/=_$.-]{20,}")

# Run on the target's backup node as root: the needles arrive on stdin (never on disk or in
# an argument); prints the names of what holds one: the snapshot's files (restic dump, a tar
# stream) and the repository's own files (inbox and vault).
SCAN = r"""
import json, os, subprocess, sys, tarfile
asked = json.load(sys.stdin)
needles = [n.encode("latin-1") for n in asked["needles"]]
control = asked["control"].encode("latin-1")
snapshot = sys.argv[1]
def holds(data):
    return any(n in data for n in needles)
found, control_seen = [], False
dump = subprocess.Popen(["restic", "-r", "/data/restic", "--password-file", "/etc/lapinfra/restic.password",
                         "--no-lock", "-q", "dump", snapshot, "/srv/data"], stdout=subprocess.PIPE)
files = 0
with tarfile.open(fileobj=dump.stdout, mode="r|") as tar:
    for member in tar:
        if member.isfile():
            files += 1
            data = tar.extractfile(member).read()
            control_seen = control_seen or control in data
            if holds(data):
                found.append("snapshot:" + member.name)
if dump.wait() != 0:
    sys.exit("restic dump failed")
for repo in ("/data/restic", "/data/vault"):
    for root, _, names in os.walk(repo):
        for name in names:
            with open(os.path.join(root, name), "rb") as f:
                if holds(f.read()):
                    found.append("repository:" + os.path.join(root, name))
print(json.dumps({"files": files, "found": found, "control_seen": control_seen}))
"""


def secret_needles(source, own):
    """Every long token of ``source``'s secret files that is not public: not in a file of
    ``own``'s secrets (key-file boilerplate is the same in every environment), not in
    ``source``'s rendered configuration (a TSIG key's name is in named.conf)."""
    def tokens(files):
        out = set()
        for f in files:
            if f.is_file() and not PUBLIC.search(f.name):
                out |= set(TOKEN.findall(f.read_bytes()))
        return out
    secrets = tokens((ROOT / "secrets" / source).iterdir())
    public = tokens((ROOT / "secrets" / own).iterdir()) | tokens((ROOT / "build" / source / "rendered").rglob("*"))
    return sorted(t.decode("latin-1") for t in secrets - public)


def running(env=ENV):
    return node_sh("docker ps -q --filter name=infra_ | sort", env=env).stdout


def _maven(env_name, method, path, data=None):
    env = config.load(ROOT, env_name)
    password = (ROOT / "secrets" / env_name / "maven.password").read_text().strip()
    # over HTTPS with the environment's CA: the proxy refuses a password over plain HTTP
    return requests.request(method, f"https://{env.master.ip}/{path}", data=data, auth=("deploy", password),
                            headers={"Host": f"maven.{env.domain}"}, verify=str(ROOT / "secrets" / env_name / "ca.crt"),
                            timeout=30)


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

    # ... and not a byte of staging's secrets: neither in the fetched snapshot nor anywhere
    # in test's repository (searched on test's backup node for every secret value of staging)
    needles = secret_needles(TARGET, ENV)
    assert len(needles) > 20, "staging's secrets folder is suspiciously small"
    scan = subprocess.run(["docker", "exec", "-i", f"lapinfra-{ENV}-backup", "python3", "-c", SCAN, copied[-1]["id"]],
                          input=json.dumps({"needles": needles, "control": f"lapinfra-{TARGET}-host"}),
                          capture_output=True, text=True, timeout=600)
    assert scan.returncode == 0, scan.stderr[-2000:]
    result = json.loads(scan.stdout)
    # the search finds what is there: the public name of staging's hosts key, in its named.conf
    assert result["files"] > 100 and result["control_seen"], result
    assert result["found"] == [], f"staging secrets found in test's backups: {result['found']}"
    before = running()
    refused = invoke("restore", f"--env={ENV}", "--snapshot", copied[-1]["id"], check=False)
    assert refused.returncode == 1 and f"snapshot.fetch --from={TARGET}" in refused.stderr
    assert running() == before


def test_fetch_of_an_unknown_snapshot_changes_nothing(infra, target):
    before, own = running(), node_sh(OWN).stdout
    run = invoke("snapshot.fetch", f"--from={TARGET}", f"--to={ENV}", "--snapshot", "deadbeef", check=False)
    assert run.returncode == 1 and "no snapshot 'deadbeef'" in run.stderr
    assert running() == before and node_sh(OWN).stdout == own
