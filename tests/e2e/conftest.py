"""End-to-end tier: real images, real nodes (Vagrant's docker provider), the real CLI.

One `invoke up` per session brings up the `test` environment; every test shares
it; the session ends with `invoke node.down`, also when tests fail.
"""
import os
import subprocess
import sys

import pytest

from tests.conftest import ROOT

# The environment the e2e tier brings up and destroys (a docker-provider one).
ENV = os.environ.get("LAPINFRA_E2E_ENV", "test")
# A second one, promoted from ENV (production's stand-in): promotion and fetch tests.
TARGET = os.environ.get("LAPINFRA_E2E_TARGET", "staging")


def invoke(*args, check=True, cwd=ROOT, timeout=1800):
    run = subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, capture_output=True, text=True, timeout=timeout)
    if check and run.returncode != 0:
        raise AssertionError(f"invoke {' '.join(args)} exited {run.returncode}:\n{run.stdout[-3000:]}\n{run.stderr[-3000:]}")
    return run


def node_sh(command, check=True, env=ENV):
    return invoke("node.ssh", f"--env={env}", "--", command, check=check)


# A developer's inner loop: LAPINFRA_E2E_REUSE=1 runs the tests against the test
# environment that is up already (`./lap up`), and leaves it up. CI never sets it.
REUSE = os.environ.get("LAPINFRA_E2E_REUSE") == "1"


@pytest.fixture(scope="session")
def infra():
    """The test environment, brought up once by `invoke up`; destroyed at the end."""
    if REUSE:
        yield invoke("node.status", f"--env={ENV}")
        return
    # Leftovers of an earlier run (another checkout's nodes of the same names) go first.
    invoke("node.down", f"--env={ENV}", "--destroy-backups", "--yes", check=False)
    try:
        first = invoke("up", f"--env={ENV}")
        yield first
    finally:
        invoke("node.down", f"--env={ENV}", "--destroy-backups", "--yes", check=False)
        for down in _DOWNS:          # the target's, started when its last test ended
            down.wait(600)


@pytest.fixture(scope="session")
def target(infra):
    """The second environment (staging), brought up once after the first; destroyed at the end."""
    invoke("node.down", f"--env={TARGET}", "--destroy-backups", "--yes", check=False)
    try:
        yield invoke("up", f"--env={TARGET}")
    finally:
        # destroyed in the background, beside the tests that still use ENV and ENV's own
        # node.down (the infra fixture waits for it)
        _DOWNS.append(subprocess.Popen([sys.executable, "-m", "invoke", "node.down", f"--env={TARGET}", "--destroy-backups",
                                        "--yes"], cwd=ROOT, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL))


_DOWNS: list[subprocess.Popen] = []

