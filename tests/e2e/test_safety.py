"""Nothing lost: a compromised master cannot delete the backups, a killed restore leaves the
old data or the snapshot, a restore's safety snapshot undoes it, and one writer at a time."""
import json
import subprocess
import sys
import time

import pytest

from lapinfra import config
from tests.conftest import ROOT
from tests.e2e.conftest import ENV, invoke, node_sh
from tests.e2e.test_data import manifest

pytestmark = pytest.mark.e2e

# On the master, the way an intruder with root there would: every key and password of
# /data/secrets/backup, with the backup tool's own ssh, sftp and restic.
INTRUDER = ("docker run --rm --network host -v /data/secrets/backup:/k:ro --entrypoint sh infra/backup -c {script}")


def _as_intruder(script: str, ip: str) -> str:
    prelude = ("cp /k/backup_ed25519 /tmp/key && chmod 600 /tmp/key; "
               f"SSH='ssh -i /tmp/key -o IdentitiesOnly=yes -o UserKnownHostsFile=/k/backup_known_hosts "
               f"-o StrictHostKeyChecking=yes -o BatchMode=yes -o ConnectTimeout=10'; IP={ip}; ")
    import shlex

    return node_sh(INTRUDER.format(script=shlex.quote(prelude + script)), check=False).stdout


def _snapshots() -> list[str]:
    return [s["id"] for s in json.loads(invoke("snapshot.list", f"--env={ENV}", "--json").stdout)]


@pytest.fixture(scope="module")
def backup_ip(infra):
    return str(config.load(ROOT, ENV).node("backup").ip)


def test_a_compromised_master_cannot_delete_or_alter_the_backups(backup_ip):
    for label in ("vault-1", "vault-2"):
        invoke("snapshot.create", f"--env={ENV}", "--label", label)
    subprocess.run(["docker", "exec", f"lapinfra-{ENV}-backup", "/usr/local/sbin/lapvault", "once"], check=True,
                   capture_output=True, timeout=300)
    before = _snapshots()
    invoke("restore", f"--env={ENV}", "--snapshot", "latest", "--no-start", "--yes")
    invoke("start", f"--env={ENV}")
    data = manifest()

    out = _as_intruder(
        "$SSH backup@$IP id; echo shell-rc=$?; "
        "$SSH root@$IP id; echo root-rc=$?; "
        "printf 'rm /vault/config\\nrename /vault/config /vault/x\\nrmdir /vault/snapshots\\nchmod 777 /vault\\n' "
        "| sftp -b - -i /tmp/key -o UserKnownHostsFile=/k/backup_known_hosts -o BatchMode=yes backup@$IP; echo vault-rc=$?; "
        "restic -r sftp:backup@$IP:/vault --password-file /k/restic.password -o sftp.command=\"$SSH backup@$IP -s sftp\" "
        "forget --keep-last 1 --prune; echo forget-vault-rc=$?; "
        # the inbox the master writes to: this the intruder can empty, and does
        "restic -r sftp:backup@$IP:/restic --password-file /k/restic.password -o sftp.command=\"$SSH backup@$IP -s sftp\" "
        "forget --keep-last 1 --prune; echo forget-inbox-rc=$?", backup_ip)
    assert "uid=" not in out, f"a shell opened on the backup node:\n{out}"
    assert "root-rc=0" not in out and "vault-rc=0" not in out and "forget-vault-rc=0" not in out, out

    assert set(before) <= set(_snapshots()), "snapshots disappeared from the backup node"
    invoke("restore", f"--env={ENV}", "--snapshot", "latest", "--no-start", "--yes")
    invoke("start", f"--env={ENV}")
    assert manifest() == data


def _swap_started() -> None:
    """Waits on the node until the running restore tool has written its swap journal."""
    node_sh("for i in $(seq 1 1200); do test -e /data/.restore-tmp/journal.json && exit 0; sleep 0.05; done; "
            "echo 'the restore never began its swap'; exit 1")


def test_a_restore_killed_mid_swap_leaves_the_old_data_or_the_snapshot(infra):
    node_sh("head -c 100M /dev/urandom > /data/bulk-before.bin")
    invoke("snapshot.create", f"--env={ENV}", "--label", "swap-target")
    snapshot = manifest()
    node_sh("rm -f /data/bulk-before.bin && head -c 1M /dev/urandom > /data/changed-after.bin")
    before = manifest()
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "restore", f"--env={ENV}", "--snapshot", "latest",
                             "--no-start", "--yes"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        _swap_started()
        node_sh("docker kill $(docker ps -q --filter name=lapinfra-backup-restore) >/dev/null")
        proc.wait(120)
        repaired = invoke("start", f"--env={ENV}")
        assert "interrupted restore" in repaired.stderr, repaired.stderr[-2000:]
        after = manifest()
        assert after in (before, snapshot), "the data is neither the old state nor the snapshot"
        assert node_sh("test -e /data/.restore-tmp", check=False).returncode != 0
    finally:
        if proc.poll() is None:
            proc.kill()
        node_sh("rm -f /data/bulk-before.bin /data/changed-after.bin")
    invoke("test", f"--env={ENV}")


def test_a_restore_names_its_safety_snapshot_which_undoes_it(infra):
    node_sh("echo kept-by-the-safety-snapshot > /data/safety-probe.txt")
    invoke("snapshot.create", f"--env={ENV}", "--label", "without-probe-base")
    node_sh("rm /data/safety-probe.txt")
    old = [s for s in json.loads(invoke("snapshot.list", f"--env={ENV}", "--json").stdout)][-1]["id"]
    node_sh("echo written-after > /data/safety-probe.txt")
    run = invoke("restore", f"--env={ENV}", "--snapshot", old, "--yes")
    line = next(l for l in run.stderr.splitlines() if "safety snapshot" in l)
    safety = line.split("safety snapshot", 1)[1].split()[0]
    assert node_sh("cat /data/safety-probe.txt", check=False).returncode != 0
    invoke("restore", f"--env={ENV}", "--snapshot", safety, "--yes")
    assert node_sh("cat /data/safety-probe.txt").stdout.strip() == "written-after"
    node_sh("rm -f /data/safety-probe.txt")


def test_a_restore_and_a_deploy_started_together_exactly_one_runs_at_a_time(infra):
    started = time.monotonic()
    deploy = subprocess.Popen([sys.executable, "-m", "invoke", "restart", f"--env={ENV}"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node_sh("for i in $(seq 1 600); do test -e /var/lib/lapinfra/deploy.lock && exit 0; sleep 0.05; done; exit 1")
    refused = invoke("restore", f"--env={ENV}", "--snapshot", "latest", "--yes", check=False)
    assert refused.returncode == 1 and "is locked by" in refused.stderr, refused.stderr[-1500:]
    assert "pid" in refused.stderr and "restart" in refused.stderr   # the holder: who, which command
    assert deploy.wait(600) == 0, deploy.stdout[-2000:]
    waited = invoke("restore", f"--env={ENV}", "--snapshot", "latest", "--lock-wait", "600", "--yes")
    assert waited.returncode == 0 and time.monotonic() - started < 600
    invoke("test", f"--env={ENV}")
