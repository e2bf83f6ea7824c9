"""snapshot.fetch's reading of restic copy's report, and its refusal of one environment twice."""
import pytest

from lapinfra import backup
from lapinfra.errors import LapinfraError
from lapinfra.project import Project
from tests.unit.test_render import Recorder

COPIED = """
snapshot 2f690f72 of [/srv/data] at 2026-11-25 14:52:57.197068219 +0000 UTC)
  copy started, this may take a while...
[0:00] 100.00%  2 / 2 packs copied

snapshot 3298f9d6 saved
"""
AGAIN = """
snapshot 2f690f72 of [/srv/data] at 2026-11-25 14:52:57.197068219 +0000 UTC)
skipping source snapshot 2f690f72, was already copied to snapshot 3298f9d6
"""


def test_copy_report_gives_source_and_target_ids():
    assert backup._copied_snapshot(COPIED) == ("2f690f72", "3298f9d6")
    assert backup._copied_snapshot(AGAIN) == ("2f690f72", "3298f9d6")
    assert backup._copied_snapshot('Ignoring "deadbeef": no matching ID found for prefix "deadbeef"\n') is None


def test_fetch_between_one_environment_and_itself_is_refused(tree):
    p = Project("test", root=tree, reporter=Recorder())
    with pytest.raises(LapinfraError, match="both 'test'"):
        backup.fetch(p, p)


def test_fetch_keeps_the_targets_own_state():
    assert {"secrets", "environment", "lapinfra", "dns", "git/ssh"} <= set(backup.FETCH_KEEP)


def test_docker_environments_are_joined_by_their_networks(tree):
    test, staging = Project("test", root=tree), Project("staging", root=tree)
    assert backup._fetch_networking(staging, test) == {"networks": ["lapinfra-staging", "lapinfra-test"]}
    assert backup._fetch_networking(Project("prod", root=tree), test) == {"network_mode": "host"}
