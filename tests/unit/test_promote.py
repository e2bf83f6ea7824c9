"""Promotion's decisions that need no node: the gate's match, rollback's choice of snapshot, the lock's staleness."""

import pytest

from lapinfra import promote
from lapinfra.errors import LapinfraError

IMAGES = {"dns": "sha256:aaa", "git": "sha256:bbb"}


def run(release="c1", images=IMAGES, passed=True, partial=False):
    return {"release": release, "images": dict(images), "passed": passed, "partial": partial, "at": "t", "by": "me"}


def test_gate_takes_only_a_full_passing_run_of_exactly_these_images():
    assert promote.verified_run([run()], "c1", IMAGES) is not None
    assert promote.verified_run([run(passed=False)], "c1", IMAGES) is None
    assert promote.verified_run([run(partial=True)], "c1", IMAGES) is None
    assert promote.verified_run([run(release="c0")], "c1", IMAGES) is None
    assert promote.verified_run([run(images={**IMAGES, "git": "sha256:other"})], "c1", IMAGES) is None


def test_gate_says_why_it_refuses():
    assert promote.refusal([], "c1") == "it was never verified there"
    assert promote.refusal([run(), run(passed=False)], "c1") == "its last run there failed"
    assert promote.refusal([run(images={"dns": "x"})], "c1") == "the images differ from the ones verified there"


HISTORY = [
    {"release": "r1", "previous": None, "snapshot": "s0", "outcome": "deployed"},
    {"release": "r2", "previous": "r1", "snapshot": "s1", "outcome": "deployed"},
    {"release": "r3", "previous": "r2", "snapshot": "s2", "outcome": "rolled back"},
    {"release": "r3", "previous": "r2", "snapshot": "s3", "outcome": "deployed"},
]


def test_rollback_restores_the_snapshot_taken_before_the_release_was_replaced():
    assert promote.rollback_target(HISTORY, "r3", None, "staging") == ("r2", "s3")
    assert promote.rollback_target(HISTORY, "r3", "r1", "staging") == ("r1", "s1")


def test_rollback_refuses_what_no_snapshot_holds():
    with pytest.raises(LapinfraError, match="no snapshot holds release 'r9'.*r1, r2"):
        promote.rollback_target(HISTORY, "r3", "r9", "staging")
    with pytest.raises(LapinfraError, match="already runs r3"):
        promote.rollback_target(HISTORY, "r3", "r3", "staging")
    with pytest.raises(LapinfraError, match="no earlier release"):
        promote.rollback_target(HISTORY[:1], "r1", None, "staging")
