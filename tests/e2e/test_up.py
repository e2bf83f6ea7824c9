"""The README's main job, `invoke up`, and what a user does with the result."""
import subprocess

import pytest

from tests.e2e.conftest import ENV, invoke, node_sh

pytestmark = pytest.mark.e2e


def expected_containers():
    from lapinfra import config, services
    from tests.conftest import ROOT

    return {s.container for s in services.services(config.load(ROOT, ENV))}


def _master():
    from lapinfra import config
    from tests.conftest import ROOT

    return config.load(ROOT, ENV).master


def container_ids():
    out = node_sh("docker ps --filter name=infra_ --format '{{.Names}} {{.ID}}'").stdout
    return dict(line.split() for line in out.splitlines() if line.strip())


def test_up_brings_everything_up_and_verifies_it(infra):
    log = infra.stderr + infra.stdout
    for step in ("vagrant up", "infra_registry", "infra_dns", "infra_proxy", "verification suite on test"):
        assert step in log
    assert set(container_ids()) == expected_containers()


def test_second_up_rebuilds_nothing_and_recreates_nothing(infra):
    before = container_ids()
    again = invoke("up", f"--env={ENV}")
    log = again.stderr + again.stdout
    assert "built 0 of" in log and "(all up to date)" in log
    assert "running already" in log and "vagrant up" not in log      # the nodes run: Vagrant is not asked
    assert "containers changed: none" in log
    assert container_ids() == before


def test_a_changed_image_is_pushed_without_the_layers_the_registry_has(infra):
    """Only the image's label changes (a file its build context has but never copies): a new image id,
    the same layers, which the running release's image has in the node's registry already."""
    import uuid

    from tests.conftest import ROOT

    marker = ROOT / "images" / "sampleapp" / "E2E_MARKER"
    marker.write_text(uuid.uuid4().hex + "\n")
    try:
        changed = invoke("build", "deploy", f"--env={ENV}")
    finally:
        marker.unlink()
    log = changed.stderr + changed.stdout
    pushed = [line for line in log.splitlines() if "pushed infra/" in line and "/sampleapp:latest" in line]
    assert len(pushed) == 1, log[-3000:]
    assert " 0 of " in pushed[0], pushed[0]        # every layer was in the registry: none sent
    assert "containers changed: app1 recreated, app2 recreated" in log
    clean = invoke("build", "deploy", f"--env={ENV}")    # the clean tree's image again: nothing new to send
    again = [line for line in (clean.stderr + clean.stdout).splitlines() if "pushed infra/" in line]
    assert all(" 0 of " in line for line in again), again


def test_dns_down_turns_the_suite_red_and_start_makes_it_green(infra):
    node_sh("docker stop infra_dns")
    red = invoke("test", f"--env={ENV}", check=False)
    assert red.returncode != 0
    assert "test_record_resolves_to_its_address" in red.stdout
    invoke("start", f"--env={ENV}")
    assert invoke("test", f"--env={ENV}", check=False).returncode == 0


def test_stop_removes_every_infra_container_and_start_restores_them(infra):
    invoke("stop", f"--env={ENV}")
    assert container_ids() == {}
    started = invoke("start", f"--env={ENV}")
    log = started.stderr
    assert log.index("infra_registry") < log.index("infra_dns"), "the registry starts first"
    assert set(container_ids()) == expected_containers()
    invoke("test", f"--env={ENV}")


def test_node_ssh_returns_the_remote_exit_code(infra):
    assert node_sh("exit 3", check=False).returncode == 3
    assert node_sh("hostname").stdout.strip() == "master"


def test_only_the_admin_key_logs_in(infra, tmp_path):
    from tests.conftest import ROOT

    other = tmp_path / "other"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    config = ROOT / "build" / ENV / "ssh_config"
    known = ROOT / "build" / ENV / "known_hosts"
    master = _master()
    denied = subprocess.run(
        ["ssh", "-F", "/dev/null", "-i", str(other), "-o", "IdentitiesOnly=yes", "-o", f"UserKnownHostsFile={known}",
         "-o", "StrictHostKeyChecking=yes", "-o", "BatchMode=yes", "-p", str(master.admin_port), f"root@{master.ip}", "true"],
        capture_output=True, text=True, timeout=30)
    assert denied.returncode == 255 and "Permission denied" in denied.stderr
    password = subprocess.run(
        ["ssh", "-F", str(config), "-o", "PubkeyAuthentication=no", "-o", "BatchMode=yes", "master", "true"],
        capture_output=True, text=True, timeout=30)
    assert password.returncode == 255


def test_a_changed_host_key_is_refused(infra, tmp_path):
    from tests.conftest import ROOT

    known = (ROOT / "build" / ENV / "known_hosts").read_text()
    forged = tmp_path / "known_hosts"
    other = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(other)], check=True)
    master = _master()
    assert f"{master.ssh_host} " in known
    forged.write_text(f"{master.ssh_host} {' '.join(other.with_suffix('.pub').read_text().split()[:2])}\n")
    run = subprocess.run(
        ["ssh", "-F", str(ROOT / "build" / ENV / "ssh_config"), "-o", f"UserKnownHostsFile={forged}", "-o", "BatchMode=yes", "master", "true"],
        capture_output=True, text=True, timeout=30)
    assert run.returncode == 255 and "HOST IDENTIFICATION HAS CHANGED" in run.stderr
