"""The verification suite's plumbing: its command line, the per-check report, and which
snapshot judges the backup (infra_tests/test_backup.py), without an environment."""
import importlib.util
from pathlib import Path
from types import SimpleNamespace

from lapinfra import verify

ROOT = Path(__file__).resolve().parents[2]

JUNIT = """<?xml version="1.0" encoding="utf-8"?><testsuites><testsuite name="pytest" errors="0" failures="1" skipped="1" tests="3">
<testcase classname="test_dns" name="test_record_resolves_to_its_address[git.internal]" time="0.012"/>
<testcase classname="test_lb" name="test_client_of_a_stopped_backend_moves_to_another" time="6.5">
  <failure message="AssertionError: client of app1 not served by another backend within 10s: [(0.5, 502, None)]&#10;more">trace</failure></testcase>
<testcase classname="test_swarm" name="test_app_runs_its_replicas_on_workers[hello]" time="0.02">
  <skipped message="hello is not deployed here"/></testcase>
</testsuite></testsuites>"""


def test_the_suite_runs_in_several_processes_unless_asked_for_one(tmp_path):
    project = SimpleNamespace(root=ROOT, name="test")
    parallel = verify.suite_command(project, tmp_path / "j.xml", workers=6)
    assert parallel[parallel.index("-n") + 1] == "6" and "--maxschedchunk" in parallel
    serial = verify.suite_command(project, tmp_path / "j.xml", k="dns", workers=1)
    assert "-n" not in serial and serial[-2:] == ["-k", "dns"]
    assert f"--lapinfra-env=test" in serial


def test_each_check_is_reported_with_its_outcome_seconds_and_why(tmp_path):
    junit = tmp_path / "junit.xml"
    junit.write_text(JUNIT)
    lines = verify.case_lines(verify.junit_cases(junit))
    assert lines[0] == "ok    0.01s  test_dns::test_record_resolves_to_its_address[git.internal]"
    assert lines[1].startswith("FAIL  6.50s  test_lb::test_client_of_a_stopped_backend_moves_to_another  -- AssertionError: client of app1")
    assert "more" not in lines[1]                     # the first line of the message only
    assert lines[2].endswith("-- hello is not deployed here") and lines[2].startswith("skip")
    assert verify.junit_counts(junit) == {"tests": 3, "failures": 1, "errors": 0, "skipped": 1}


def _backup_checks():
    spec = importlib.util.spec_from_file_location("infra_test_backup", ROOT / "infra_tests" / "test_backup.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def test_the_backup_is_judged_by_a_snapshot_of_the_running_release_never_by_the_latest(monkeypatch):
    """The suite's snapshot check asks lapbackup for `digest latest --tag env=<env> --tag commit=<release>`."""
    from tests.conftest import load_tool

    lapbackup = load_tool("images/backup/lapbackup.py", "lapbackup_resolve")
    monkeypatch.setenv("BACKUP_ENV", "staging")

    def pick(snaps, env, release):
        try:
            return lapbackup.resolve("latest", snaps, tags=[f"env={env}", f"commit={release}"])
        except lapbackup.Fail:
            return None

    snaps = [
        {"id": "a1", "time": "2026-12-04T01:00:00Z", "tags": ["label:scheduled", "commit=r1", "env=staging"]},
        {"id": "b2", "time": "2026-12-04T01:10:00Z", "tags": ["label:scheduled", "commit=r2", "env=staging"]},
        # the deploy of r3 snapshotted first: still tagged with the release it replaced
        {"id": "c3", "time": "2026-12-04T01:20:00Z", "tags": ["label:pre-deploy r3", "commit=r2", "env=staging"]},
        # fetched from another environment that happens to run r3 too
        {"id": "d4", "time": "2026-12-04T01:25:00Z", "tags": ["commit=r3", "env=prod"]},
    ]
    assert pick(snaps, "staging", "r3") is None          # none yet: the check takes one itself
    assert pick(snaps, "staging", "r2")["id"] == "c3"    # the newest taken while r2 ran
    snaps.append({"id": "e5", "time": "2026-12-04T01:30:00Z", "tags": ["label:scheduled", "commit=r3", "env=staging"]})
    assert pick(snaps, "staging", "r3")["id"] == "e5"


def _order(seconds: dict, marked=(), disturbed=()):
    checks = list(seconds)
    return verify.start_order(checks, seconds.get, set(marked).__contains__, set(disturbed).__contains__)


def test_the_longest_checks_start_first_each_beside_a_fast_one():
    seconds = {"a": 0.1, "apt": 2.1, "b": 0.3, "failover": 3.5, "c": 0.2, "backup": 1.4, "node": 0.9}
    assert _order(seconds, disturbed={"node"}) == ["failover", "b", "apt", "c", "backup", "a", "node"]


def test_a_check_never_run_counts_as_slow_when_marked_so():
    seconds = {"a": 0.2, "new slow": None, "new": None, "b": 0.05}
    assert _order(seconds, marked={"new slow"}) == ["new slow", "a", "new", "b"]


def test_a_disturbed_check_comes_last_however_long_it_took():
    seconds = {"lb": 4.0, "a": 0.1, "disruptive": 3.0}
    assert _order(seconds, marked={"disruptive"}, disturbed={"lb"}) == ["disruptive", "a", "lb"]


def test_each_checks_seconds_are_kept_for_the_next_run_beside_those_a_partial_run_left_out(tmp_path):
    class Project:
        build_dir = tmp_path

    verify.remember_seconds(Project, [{"check": "m::a", "outcome": "passed", "seconds": 1.5},
                                      {"check": "m::b", "outcome": "skipped", "seconds": 0.0}])
    verify.remember_seconds(Project, [{"check": "m::c", "outcome": "failed", "seconds": 0.2}])
    assert verify.check_seconds(Project) == {"m::a": 1.5, "m::c": 0.2}
    (tmp_path / verify.CHECK_SECONDS).write_text("{not json")
    assert verify.check_seconds(Project) == {}
