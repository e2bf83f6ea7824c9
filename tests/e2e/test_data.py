"""Data: snapshot, change, restore byte for byte; disaster recovery from the backup node alone."""
import os
import uuid

import pytest
import requests

from infra_tests.test_git import Git, pin
from lapinfra import config, records
from tests.conftest import ROOT
from tests.e2e.conftest import ENV, invoke, node_sh

pytestmark = pytest.mark.e2e

# The audit logs are kept, not restored: a restore appends its own entry to them.
MANIFEST = ("cd /data && find . \\( -path ./lapinfra/ssh -o -path ./backup "
            + " ".join(f"-o -path ./{log}" for log in records.AUDIT_LOGS)
            + " \\) -prune -o -type f -print0 | sort -z | xargs -0 sha256sum")


def manifest() -> str:
    out = node_sh(MANIFEST).stdout
    assert len(out.splitlines()) > 50, "the manifest of /data is suspiciously small"
    return out


@pytest.fixture(scope="module")
def clients(infra, tmp_path_factory):
    env = config.load(ROOT, ENV)
    ip = str(env.master.ip)
    key = ROOT / "secrets" / ENV / "admin_ed25519"
    host_key = node_sh("docker exec infra_git cat /data/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
    known = pin(tmp_path_factory.mktemp("git") / "known_hosts", env.domain, host_key)
    git = Git(ip, known, key, env.domain)
    password = (ROOT / "secrets" / ENV / "maven.password").read_text().strip()
    return {"git": git, "ip": ip, "domain": env.domain, "maven_auth": ("deploy", password), "tmp": tmp_path_factory.mktemp("work")}


def _push_branch(c, branch):
    work = c["tmp"] / branch
    assert c["git"]("clone", c["git"].url("sandbox"), str(work)).returncode == 0
    (work / "data.bin").write_bytes(os.urandom(4096))
    c["git"]("add", "data.bin", cwd=work)
    assert c["git"]("commit", "-m", branch, cwd=work).returncode == 0
    push = c["git"]("push", "origin", f"HEAD:refs/heads/{branch}", cwd=work)
    assert push.returncode == 0, push.stderr


def _branches(c):
    return c["git"]("ls-remote", "--heads", c["git"].url("sandbox")).stdout


def _maven(c, method, path, data=None):
    # over HTTPS with the environment's CA: the proxy refuses a password over plain HTTP
    return requests.request(method, f"https://{c['ip']}/{path}", data=data, auth=c["maven_auth"],
                            headers={"Host": "maven.internal"}, verify=str(ROOT / "secrets" / ENV / "ca.crt"), timeout=30)


def test_restore_brings_every_byte_back(clients):
    tag = uuid.uuid4().hex[:8]
    artifact, payload = f"com/example/keep-{tag}/1.0/keep-{tag}-1.0.jar", os.urandom(65536)
    _push_branch(clients, f"before-{tag}")
    assert _maven(clients, "PUT", artifact, payload).status_code in (200, 201, 204)

    invoke("stop", f"--env={ENV}")
    before = manifest()
    invoke("snapshot.create", f"--env={ENV}", "--label", f"e2e-{tag}")
    snaps = invoke("snapshot.list", f"--env={ENV}", "--json").stdout
    import json

    snap = next(s for s in json.loads(snaps) if s["label"] == f"e2e-{tag}")
    invoke("start", f"--env={ENV}")

    _push_branch(clients, f"after-{tag}")
    assert _maven(clients, "DELETE", artifact).status_code in (200, 204)
    assert f"after-{tag}" in _branches(clients)

    invoke("restore", f"--env={ENV}", "--snapshot", snap["id"], "--no-start")
    assert manifest() == before
    restored = json.loads(invoke("releases", f"--env={ENV}", "--json").stdout)[-1]
    assert restored["outcome"] == "restored" and snap["id"].startswith(restored["snapshot"][:8]), restored
    assert restored["actions"] == [], "--no-start: nothing was started"
    invoke("start", f"--env={ENV}")
    heads = _branches(clients)
    assert f"before-{tag}" in heads and f"after-{tag}" not in heads
    got = requests.get(f"http://{clients['ip']}/{artifact}", headers={"Host": "maven.internal"}, timeout=30)
    assert got.status_code == 200 and got.content == payload
    invoke("test", f"--env={ENV}")


def test_unknown_snapshot_changes_nothing(clients):
    running = node_sh("docker ps -q --filter name=infra_ | sort").stdout
    run = invoke("restore", f"--env={ENV}", "--snapshot", "deadbeef", check=False)
    assert run.returncode == 1 and "no snapshot 'deadbeef'" in run.stderr
    assert node_sh("docker ps -q --filter name=infra_ | sort").stdout == running


def test_disaster_recovery_from_the_backup_node_alone(clients):
    tag = uuid.uuid4().hex[:8]
    _push_branch(clients, f"dr-{tag}")
    invoke("snapshot.create", f"--env={ENV}", "--label", f"dr-{tag}")
    invoke("node.down", f"--env={ENV}", "--node", "master")
    assert node_sh("true", check=False).returncode != 0, "the master is gone"
    recovered = invoke("dr.recover", f"--env={ENV}")
    # dr.recover ends with the verification suite (its post-task): green, or the call above failed
    assert f"verification suite on {ENV}: passed" in recovered.stdout + recovered.stderr, recovered.stderr[-2000:]
    host_key = node_sh("docker exec infra_git cat /data/ssh/ssh_host_ed25519_key.pub").stdout.split()[:2]
    known = pin(clients["tmp"] / "known_hosts_after_dr", clients["domain"], host_key)
    clients["git"] = Git(clients["ip"], known, clients["git"].identity, clients["domain"])
    assert f"dr-{tag}" in _branches(clients)


def _labels():
    import json

    return [s["label"] for s in json.loads(invoke("snapshot.list", f"--env={ENV}", "--json").stdout)]


def test_an_interrupted_snapshot_leaves_the_repository_usable(clients):
    import subprocess
    import sys

    node_sh("head -c 200M /dev/urandom > /data/interrupt.bin")
    try:
        proc = subprocess.Popen([sys.executable, "-m", "invoke", "snapshot.create", f"--env={ENV}", "--label", "interrupted"],
                                cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        # kill the tool container as soon as it logs the start of `restic backup`: mid-upload
        # of the 200 MB, whatever the machine's speed (polled on the node, every 0.1 s)
        node_sh("for i in $(seq 1 900); do c=$(docker ps -q --filter name=lapinfra-backup-snapshot);"
                " if [ -n \"$c\" ] && docker logs \"$c\" 2>&1 | grep -q 'lapbackup: restic backup'; then"
                " docker kill \"$c\"; exit 0; fi; sleep 0.1; done; echo 'restic backup never started'; exit 1")
        assert proc.wait(60) != 0
    finally:
        node_sh("rm -f /data/interrupt.bin")
    before = _labels()
    assert "interrupted" not in before
    invoke("snapshot.create", f"--env={ENV}", "--label", "after-interrupt")
    after = _labels()
    assert after[-1] == "after-interrupt" and after[:-1] == before
    assert invoke("backup.check", f"--env={ENV}").stdout.strip().startswith("ok")
    # the killed snapshot froze containers; nothing stayed paused
    assert node_sh("docker ps -a --filter name=infra_ --filter status=paused --format '{{.Names}}'").stdout.strip() == ""


def test_wrong_repository_password_is_a_clear_error_and_data_is_untouched(clients):
    secret = ROOT / "secrets" / ENV / "restic.password"
    good = secret.read_text()
    running = node_sh("docker ps -q --filter name=infra_ | sort").stdout
    before = node_sh("cat /data/lapinfra/release.json | sha256sum").stdout
    try:
        secret.write_text("not-the-password\n")
        run = invoke("restore", f"--env={ENV}", "--snapshot", "latest", check=False)
        assert run.returncode == 1 and "password" in run.stderr.lower()
        assert "not-the-password" not in run.stderr + run.stdout
    finally:
        secret.write_text(good)
    invoke("snapshot.list", f"--env={ENV}")   # uploads the right password again
    assert node_sh("docker ps -q --filter name=infra_ | sort").stdout == running
    assert node_sh("cat /data/lapinfra/release.json | sha256sum").stdout == before


def test_missing_backup_node_is_a_clear_error_and_nothing_stops(clients):
    import docker

    node = docker.from_env().containers.get(f"lapinfra-{ENV}-backup")
    running = node_sh("docker ps -q --filter name=infra_ | sort").stdout
    node.stop(timeout=10)
    try:
        run = invoke("restore", f"--env={ENV}", "--snapshot", "latest", check=False)
        assert run.returncode == 1 and "backup tool" in run.stderr
        assert node_sh("docker ps -q --filter name=infra_ | sort").stdout == running
    finally:
        node.start()
    invoke("node.up", f"--env={ENV}", "--node", "backup")  # waits for ssh, re-pins
    invoke("snapshot.list", f"--env={ENV}")
