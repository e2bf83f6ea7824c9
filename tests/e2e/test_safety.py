"""Nothing lost: a compromised master cannot delete the backups, a killed restore leaves the
old data or the snapshot, a restore's safety snapshot undoes it, and one writer at a time."""
import hashlib
import json
import re
import subprocess
import sys
import time

import pytest

from lapinfra import backup, config
from lapinfra.project import Project
from lapinfra.report import Reporter
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
    """The environment's own snapshots (the vault keeps those; one fetched from another
    environment stays in the inbox only, see docs/data.md)."""
    return [s["id"] for s in json.loads(invoke("snapshot.list", f"--env={ENV}", "--json").stdout)
            if f"env={ENV}" in s.get("tags", [])]


@pytest.fixture(scope="module")
def backup_ip(infra):
    return str(config.load(ROOT, ENV).node("backup").ip)


def test_a_compromised_master_cannot_delete_or_alter_the_backups(backup_ip):
    invoke("stop", f"--env={ENV}")
    invoke("snapshot.create", f"--env={ENV}", "--label", "vault")
    data = manifest()     # stopped: nothing writes
    subprocess.run(["docker", "exec", f"lapinfra-{ENV}-backup", "/usr/local/sbin/lapvault", "once"], check=True,
                   capture_output=True, timeout=300)
    before = _snapshots()

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
    invoke("restore", f"--env={ENV}", "--snapshot", before[-1], "--no-start", "--yes")
    assert manifest() == data
    invoke("start", f"--env={ENV}")


def test_a_restore_killed_while_it_runs_leaves_the_old_data_or_the_snapshot(infra):
    """A hard kill of the tool container (what a workstation's Ctrl-C or a timeout leaves): the
    swap itself is killed after every one of its steps in tests/unit/test_restore_journal.py."""
    node_sh("head -c 100M /dev/urandom > /data/bulk-before.bin")
    invoke("snapshot.create", f"--env={ENV}", "--label", "kill-target")
    node_sh("rm -f /data/bulk-before.bin && head -c 1M /dev/urandom > /data/changed-after.bin")
    invoke("stop", f"--env={ENV}")
    before = manifest()
    proc = subprocess.Popen([sys.executable, "-m", "invoke", "restore", f"--env={ENV}", "--snapshot", "latest",
                             "--no-start", "--yes"], cwd=ROOT, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    try:
        node_sh("for i in $(seq 1 1200); do c=$(docker ps -q --filter name=lapinfra-backup-restore);"
                " if [ -n \"$c\" ] && docker logs \"$c\" 2>&1 | grep -q 'lapbackup: restic.* restore'; then"
                " sleep 0.3; docker kill \"$c\" >/dev/null; exit 0; fi; sleep 0.05; done; echo 'no restore ran'; exit 1")
        assert proc.wait(120) != 0, proc.stdout.read()[-2000:]
        invoke("snapshot.list", f"--env={ENV}")   # the next command on the master repairs first
        after = manifest()
        assert after == before, "a restore killed before its swap changed /data"
        assert node_sh("test -e /data/.restore-tmp", check=False).returncode != 0, "the restore's leftovers stayed"
    finally:
        if proc.poll() is None:
            proc.kill()
        node_sh("rm -f /data/bulk-before.bin /data/changed-after.bin")
        invoke("start", f"--env={ENV}")     # waits until every container serves


def test_a_restore_names_its_safety_snapshot_which_undoes_it(infra):
    node_sh("echo in-the-snapshot > /data/safety-probe.txt")
    created = invoke("snapshot.create", f"--env={ENV}", "--label", "safety-base").stderr
    old = re.search(r"^\s*snapshot ([0-9a-f]{8}) \(", created, re.M).group(1)
    node_sh("echo written-after > /data/safety-probe.txt")       # what the restore would discard
    run = invoke("restore", f"--env={ENV}", "--snapshot", old, "--no-start", "--yes")
    said = re.search(r"safety snapshot ([0-9a-f]{8}) .*undo with `invoke restore --env=\S+ --snapshot ([0-9a-f]{8})`",
                     run.stderr)
    assert said and said.group(1) == said.group(2), run.stderr[-2000:]   # its id, and how to undo the restore
    safety = said.group(1)
    assert node_sh("cat /data/safety-probe.txt").stdout.strip() == "in-the-snapshot"
    invoke("start", f"--env={ENV}")
    # what the restore discarded is in the safety snapshot, listed under its label, restorable
    listed = {s["id"]: s for s in json.loads(invoke("snapshot.list", f"--env={ENV}", "--json").stdout)}
    assert listed[safety]["label"].startswith("safety"), listed[safety]
    assert backup.digest(Project(ENV, root=ROOT, reporter=Reporter(quiet=True)), safety, "safety-probe.txt")["sha256"] \
        == hashlib.sha256(b"written-after\n").hexdigest()
    node_sh("rm -f /data/safety-probe.txt")


def test_a_restore_and_a_deploy_started_together_exactly_one_runs_at_a_time(infra):
    deploy = subprocess.Popen([sys.executable, "-m", "invoke", "deploy", f"--env={ENV}"], cwd=ROOT,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    node_sh("for i in $(seq 1 1200); do test -e /var/lib/lapinfra/deploy.lock && exit 0; sleep 0.05; done; exit 1")
    refused = invoke("restore", f"--env={ENV}", "--snapshot", "latest", "--yes", check=False)
    assert refused.returncode == 1 and "is locked by" in refused.stderr, refused.stderr[-1500:]
    assert "deploy by" in refused.stderr and "pid" in refused.stderr    # the holder: which command, whose process
    waited = invoke("restore", f"--env={ENV}", "--snapshot", "latest", "--lock-wait", "600", "--yes")
    assert "waiting" in waited.stderr, waited.stderr[-1500:]             # it ran once the deploy was done
    assert deploy.wait(600) == 0, deploy.stdout.read()[-2000:]
