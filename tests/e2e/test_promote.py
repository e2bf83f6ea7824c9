"""Promotion from test to staging (production's stand-in): the gate, the lock, rollback.

`target` brings staging up with `invoke up --env=staging`: that deploy is itself the
first promotion (the gate lets the release through because test's `up` verified it).
"""
import json
import os
import signal
import subprocess
import sys
import time
import uuid

import pytest
import requests

from lapinfra import config
from tests.conftest import ROOT
from tests.e2e.conftest import ENV, TARGET, invoke, node_sh

pytestmark = pytest.mark.e2e

PROXY_TEMPLATE = ROOT / "images" / "proxy" / "templates" / "nginx.conf.j2"
LOCK = "/var/lib/lapinfra/deploy.lock"


def release_of(env):
    return json.loads(node_sh("cat /data/lapinfra/release.json", env=env).stdout)["release"]


def container_ids(env):
    out = node_sh("docker ps -a --filter name=infra_ --format '{{.Names}} {{.ID}}'", env=env).stdout
    return dict(line.split() for line in out.splitlines())


def releases(env=TARGET):
    return json.loads(invoke("releases", f"--env={env}", "--json").stdout)


def deploy(*extra, check=False, env=TARGET):
    return invoke("deploy", f"--env={env}", *extra, check=check)


def background(*args):
    return subprocess.Popen([sys.executable, "-m", "invoke", *args], cwd=ROOT, stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, start_new_session=True)


def data_manifest(env=TARGET):
    """Checksums of the data users wrote: git repositories and Maven artifacts."""
    return node_sh("cd /data && find git/repositories maven -type f -print0 | sort -z | xargs -0 sha256sum", env=env).stdout


def test_a_verified_release_is_promoted_and_unchanged_containers_keep_their_ids(target):
    assert release_of(TARGET) == release_of(ENV)
    first = [e for e in releases() if e.get("outcome") == "deployed"][-1]
    assert first["gate"] == {**first["gate"], "source": ENV, "forced": False}
    assert first["suite"]["passed"] and first["suite"]["tests"] > 50 and first["snapshot"]
    ids = container_ids(TARGET)
    deploy(check=True)
    assert container_ids(TARGET) == ids
    last = releases()[-1]
    assert last["outcome"] == "deployed" and last["pushed"] == [] and set(last["containers"].values()) == {"kept"}
    plan = json.loads(invoke("plan", f"--env={TARGET}", "--json").stdout)
    assert set(plan["containers"].values()) == {"keep"} and plan["config"] == {}
    assert set(plan["images"].values()) == {"in registry"} and plan["gate"] == "passed"
    # nothing to change: the one action is the release record, which names who deployed it and when
    assert last["actions"] == plan["actions"] == [{"action": "write release record", "release": release_of(TARGET)}]


def test_a_release_not_verified_on_test_is_refused_by_the_gate(target):
    probe = ROOT / f"unverified-{uuid.uuid4().hex[:8]}.txt"
    before, ids = releases(), container_ids(TARGET)
    probe.write_text("a change test never saw\n")
    try:
        run = deploy()
    finally:
        probe.unlink()
    assert run.returncode == 1
    assert f"may not be deployed to {TARGET}: it was never verified there" in run.stderr
    assert f"invoke build deploy test --env={ENV}" in run.stderr
    assert releases() == before and container_ids(TARGET) == ids


@pytest.fixture
def staging_clients(target):
    env = config.load(ROOT, TARGET)
    password = (ROOT / "secrets" / TARGET / "maven.password").read_text().strip()
    return {"ip": str(env.master.ip), "auth": ("deploy", password), "ca": str(ROOT / "secrets" / TARGET / "ca.crt")}


def test_a_broken_release_forced_onto_staging_rolls_back_by_itself(staging_clients):
    ip, auth = staging_clients["ip"], staging_clients["auth"]
    artifact, payload = f"com/example/promo-{uuid.uuid4().hex[:8]}/1.0/a.jar", os.urandom(32768)
    put = requests.put(f"https://{ip}/{artifact}", data=payload, auth=auth, headers={"Host": "maven.internal"},
                       verify=staging_clients["ca"], timeout=30)
    assert put.status_code in (200, 201, 204)
    previous, data_before, ids = release_of(TARGET), data_manifest(), container_ids(TARGET)
    good = PROXY_TEMPLATE.read_text()
    assert "server {{ vhost.upstream }};" in good
    try:
        # every virtual host behind the proxy now points at a closed port: the suite goes red
        PROXY_TEMPLATE.write_text(good.replace("server {{ vhost.upstream }};", "server 127.0.0.1:9;"))
        plan = json.loads(invoke("plan", f"--env={TARGET}", "--json").stdout)
        assert plan["containers"]["infra_proxy"] == "recreate"
        assert {v for k, v in plan["containers"].items() if k != "infra_proxy"} == {"keep"}
        assert "+        server 127.0.0.1:9;" in plan["config"]["proxy/nginx.conf"]["diff"]
        assert container_ids(TARGET) == ids, "plan changed nothing"
        run = deploy("--force")
    finally:
        PROXY_TEMPLATE.write_text(good)
    assert run.returncode == 1, run.stderr[-2000:]
    assert "failed at verification suite" in run.stderr and "rolled back" in run.stderr
    assert release_of(TARGET) == previous
    assert data_manifest() == data_before
    last = releases()[-1]
    assert last["outcome"] == "rolled back" and last["gate"]["forced"] and not last["suite"]["passed"]
    # `invoke plan` is the list of actions the deploy then applied (recorded before it rolled back):
    # the proxy's config written, each image of the new release tagged in the registry, its record written,
    # its images pulled by the master's engine under their new names, infra_proxy recreated
    assert last["actions"] == plan["actions"]
    assert {"action": "write file", "path": "/data/environment/proxy/nginx.conf", "mode": "0644"} in plan["actions"]
    assert [a["container"] for a in plan["actions"] if a["action"] == "container"] == ["infra_proxy"]
    assert {a["action"] for a in plan["actions"]} == {"write file", "tag image", "write release record", "pull image",
                                                     "container"}
    invoke("test", f"--env={TARGET}")
    got = requests.get(f"http://{ip}/{artifact}", headers={"Host": "maven.internal"}, timeout=30)
    assert got.status_code == 200 and got.content == payload


def _wait_for_lock(timeout=180):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if node_sh(f"test -f {LOCK}", env=TARGET, check=False).returncode == 0:
            return
        time.sleep(0.5)
    raise AssertionError("the deploy never took the lock")


def _wait_for_backup_tool(timeout=300):
    node_sh(f"for i in $(seq 1 {timeout}); do [ -z \"$(docker ps -q --filter label=lapinfra.purpose)\" ] && exit 0; sleep 1; done; exit 1",
            env=TARGET)


def test_a_killed_deploy_leaves_a_stale_lock_that_can_be_broken(target):
    proc = background("deploy", f"--env={TARGET}")
    try:
        _wait_for_lock()
    finally:
        os.killpg(proc.pid, signal.SIGKILL)   # the deploy and its SSH tunnels
        proc.communicate()
    run = deploy()
    assert run.returncode == 1
    assert "stale" in run.stderr and f"invoke unlock --env={TARGET}" in run.stderr
    _wait_for_backup_tool()                    # the killed deploy's snapshot finishes on the node
    invoke("unlock", f"--env={TARGET}")
    assert node_sh(f"test -f {LOCK}", env=TARGET, check=False).returncode != 0
    deploy(check=True)
    assert releases()[-1]["outcome"] == "deployed" and releases()[-1]["suite"]["passed"]


def test_two_deploys_started_together_exactly_one_runs(target):
    first, second = background("deploy", f"--env={TARGET}"), background("deploy", f"--env={TARGET}")
    outs = [(p.wait(900), *p.communicate()) for p in (first, second)]
    codes = sorted(code for code, _, _ in outs)
    assert codes == [0, 1], [o[2][-1500:] for o in outs]
    loser = next(err for code, _, err in outs if code == 1)
    assert f"{TARGET} is being changed by another deploy by" in loser
    assert node_sh(f"test -f {LOCK}", env=TARGET, check=False).returncode != 0


def test_build_start_is_the_seeds_build_and_start(infra):
    ids = container_ids(ENV)
    good = PROXY_TEMPLATE.read_text()
    try:
        PROXY_TEMPLATE.write_text(good + "\n# a comment: the proxy's config changed\n")
        invoke("build", "start", f"--env={ENV}")
        after = container_ids(ENV)
        assert after["infra_proxy"] != ids["infra_proxy"]
        assert {k: v for k, v in after.items() if k != "infra_proxy"} == {k: v for k, v in ids.items() if k != "infra_proxy"}
    finally:
        PROXY_TEMPLATE.write_text(good)
    invoke("build", "start", f"--env={ENV}")
    invoke("test", f"--env={ENV}")
    refused = invoke("build", "start", f"--env={TARGET}", check=False)
    assert refused.returncode == 1 and f"is promoted from {ENV}" in refused.stderr
