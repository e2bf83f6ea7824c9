"""The verification suite notices each service being down, with that service's own checks.

For every service of the seed's set: stop its container, run the part of the suite
that checks it (`invoke test -k ...`), expect it red with a failure in that service's
own checks (not only "the container is not running"), then start the container
again. After all of them the whole suite is green again. (DNS's version of this,
with `invoke start`, is in test_up.py.)
"""
import xml.etree.ElementTree as ET

import pytest

from tests.conftest import ROOT
from tests.e2e.conftest import ENV, invoke, node_sh

pytestmark = pytest.mark.e2e

# container -> (pytest -k expression selecting its checks, module whose checks must fail)
SERVICES = {
    "infra_git": ("test_git", "test_git"),
    "infra_trac": ("test_trac", "test_trac"),
    "infra_cd": ("test_cd", "test_cd"),
    "infra_cache": ("test_cache", "test_cache"),
    "infra_maven": ("test_repository and maven", "test_repository"),
    "infra_artifact": ("test_repository and artifact", "test_repository"),
    "infra_proxy": ("test_lb or test_proxy", "test_lb"),
    "infra_registry": ("test_registry", "test_registry"),
    # the volume-only container: what checks it is that it runs
    "infra_environment": ("test_container_is_running and environment", "test_node"),
}

WAIT_HEALTHY = (
    "for i in $(seq 1 90); do"
    " s=$(docker inspect -f '{{{{if .State.Health}}}}{{{{.State.Health.Status}}}}{{{{else}}}}{{{{.State.Status}}}}{{{{end}}}}' {name});"
    " [ \"$s\" = healthy ] && exit 0; [ \"$s\" = running ] && exit 0; sleep 1; done;"
    " echo \"{name}: $s\"; exit 1"
)


def failed_checks() -> list[str]:
    """classname::name of every failed or erroring test case in the suite's JUnit report."""
    tree = ET.parse(ROOT / "build" / ENV / "junit.xml")
    return [f"{case.get('classname')}::{case.get('name')}" for case in tree.iter("testcase")
            if case.find("failure") is not None or case.find("error") is not None]


@pytest.mark.parametrize("container", sorted(SERVICES))
def test_a_stopped_service_turns_its_checks_red(infra, container):
    selection, module = SERVICES[container]
    node_sh(f"docker stop -t 2 {container}")
    try:
        red = invoke("test", f"--env={ENV}", "-k", selection, check=False)
        assert red.returncode != 0, f"suite stayed green with {container} stopped:\n{red.stdout[-2000:]}"
        failed = failed_checks()
        assert any(name.startswith(f"{module}::") for name in failed), failed
    finally:
        node_sh(f"docker start {container} && " + WAIT_HEALTHY.format(name=container))


def test_with_every_service_started_again_the_suite_is_green(infra):
    green = invoke("test", f"--env={ENV}", check=False)
    assert green.returncode == 0, green.stdout[-3000:]
