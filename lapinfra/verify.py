"""The verification suite (infra_tests/) as a library call, and the record of its runs.

Every run is appended to ``verified.jsonl`` (records.VERIFIED) on the environment's
master: the release and the image ids (config digests) that were running, the
outcome, who and when. Promotion's gate reads the source environment's record:
only images that passed there may be deployed to the target.
"""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
import xml.etree.ElementTree as ET

from . import status
from . import records
from .records import VERIFIED, Release, now, who  # noqa: F401 - now and who are part of this module's interface
from .session import MasterSession


# Checks wait on the network, not the CPU, but each process costs about a second of CPU to
# start (imports, collection, its own SSH connection to the master): one more process than
# the workstation has cores (bench/verify.py). 1 runs the checks one after another.
WORKERS = min(6, (os.cpu_count() or 1) + 1)
# build/<env>/check-seconds.json: each check's seconds in the runs so far; the next run
# starts the longest first (infra_tests/conftest.py), so the processes finish together.
CHECK_SECONDS = "check-seconds.json"


def suite_command(project, junit, k: str = "", workers: int = WORKERS) -> list[str]:
    """The pytest command line of the verification suite."""
    cmd = [sys.executable, "-m", "pytest", str(project.root / "infra_tests"), "-p", "no:cacheprovider",
           f"--lapinfra-env={project.name}", f"--lapinfra-root={project.root}", f"--junitxml={junit}", "-q",
           "-c", str(project.root / "infra_tests" / "pytest.ini")]
    if workers > 1:
        cmd += ["-n", str(workers), "--maxschedchunk", "1"]
    if k:
        cmd += ["-k", k]
    return cmd


def run_suite(project, k: str = "", workers: int = WORKERS) -> tuple[bool, dict]:
    """Run infra_tests/ against ``project``'s environment; (passed, counts from the JUnit XML)."""
    junit = project.build_dir / "junit.xml"
    junit.parent.mkdir(parents=True, exist_ok=True)
    junit.unlink(missing_ok=True)
    started = time.monotonic()
    project.reporter.info(f"verification suite on {project.name} ...")
    code = subprocess.call(suite_command(project, junit, k, workers), cwd=project.root)
    took = time.monotonic() - started
    cases = junit_cases(junit) if junit.exists() else []
    counts = junit_counts(junit) if junit.exists() else {}
    remember_seconds(project, cases)
    counts["wall_seconds"] = round(took, 2)
    for line in case_lines(cases):
        project.reporter.info(line)
    if code == 0:
        project.reporter.info(f"verification suite on {project.name}: passed, {counts.get('tests', 0)} checks in {took:.1f}s wall")
    else:
        project.reporter.warn(f"verification suite on {project.name}: FAILED, {counts.get('failures', 0) + counts.get('errors', 0)} "
                              f"of {counts.get('tests', 0)} checks ({took:.1f}s wall; report: {junit})")
    return code == 0, counts


def junit_cases(path) -> list[dict]:
    """Each check of a JUnit XML report: name, outcome (passed, failed, error, skipped), seconds, message."""
    cases = []
    for case in ET.parse(path).getroot().iter("testcase"):
        module = (case.get("classname") or "").rsplit(".", 1)[-1]
        outcome, message = "passed", ""
        for tag in ("failure", "error", "skipped"):
            found = case.find(tag)
            if found is not None:
                outcome, message = ("failed" if tag == "failure" else tag), (found.get("message") or "").strip()
                break
        cases.append({"check": f"{module}::{case.get('name')}", "outcome": outcome,
                      "seconds": float(case.get("time") or 0), "message": message})
    return cases


def remember_seconds(project, cases: list[dict]) -> None:
    """Keep each check's seconds of this run (beside those of checks a -k run left out)."""
    seconds = check_seconds(project)
    seconds.update({c["check"]: c["seconds"] for c in cases if c["outcome"] in ("passed", "failed")})
    path = project.build_dir / CHECK_SECONDS
    partial = path.with_suffix(".partial")
    partial.write_text(json.dumps(seconds, indent=0, sort_keys=True))
    partial.replace(path)        # whole or not at all, for a run that reads it now


# A check of at least this many seconds last time (or marked slow) starts among the first.
SLOW_SECONDS = 0.5


def start_order(checks: list, seconds, marked_slow, disturbed) -> list:
    """``checks`` in the order the suite's processes take them up. The slow ones first (marked
    so, or ``seconds`` >= SLOW_SECONDS), the longest first, each paired with a fast one: xdist
    hands each process two checks to begin with (--maxschedchunk 1), so no process starts
    with two slow ones. Then the rest, the longest first, so the processes finish together;
    the ``disturbed`` ones (a disruptive check would turn them red: they wait for it) last.
    ``seconds(check)`` is None for a check never run; a marked one is then taken as slow."""
    def cost(check) -> float:
        known = seconds(check)
        return known if known is not None else (SLOW_SECONDS if marked_slow(check) else 0.1)

    last = [check for check in checks if disturbed(check)]
    slow = sorted((check for check in checks if check not in last and (marked_slow(check) or cost(check) >= SLOW_SECONDS)),
                  key=cost, reverse=True)
    fast = sorted((check for check in checks if check not in last and check not in slow), key=cost, reverse=True)
    head = [check for pair in zip(slow, fast) for check in pair]
    return head + slow[len(fast):] + fast[len(slow):] + last


def check_seconds(project) -> dict[str, float]:
    """module::name -> seconds of each check's last run ({} before the first, or if unreadable)."""
    try:
        return dict(json.loads((project.build_dir / CHECK_SECONDS).read_text()))
    except (OSError, ValueError, TypeError):
        return {}


MARKS = {"passed": "ok  ", "failed": "FAIL", "error": "ERR ", "skipped": "skip"}


def case_lines(cases: list[dict]) -> list[str]:
    """One line per check, in the order they were written: outcome, seconds, name (and why, unless passed)."""
    return [f"{MARKS[c['outcome']]} {c['seconds']:5.2f}s  {c['check']}"
            + (f"  -- {c['message'].splitlines()[0][:160]}" if c["message"] and c["outcome"] != "passed" else "")
            for c in cases]


def junit_counts(path) -> dict:
    root = ET.parse(path).getroot()
    suites = [root] if root.tag == "testsuite" else list(root)
    out = {"tests": 0, "failures": 0, "errors": 0, "skipped": 0}
    for suite in suites:
        for key in out:
            out[key] += int(suite.get(key, 0))
    return out


def record_run(project, passed: bool, counts: dict, partial: bool) -> dict | None:
    """Append this run to the master's verified.jsonl; the entry, or None when nothing is deployed."""
    with MasterSession(project) as s:
        release = records.read_release(s)
        if release is None:
            return None
        entry = run_entry(release, passed, counts, partial)
        s.append_jsonl(VERIFIED, entry)
        status.publish_quietly(s, project, run=entry, cases=last_cases(project))
        return entry


def last_cases(project) -> list[dict] | None:
    """Each check of the run that just ended (build/<env>/junit.xml, which run_suite writes anew), for the status page."""
    junit = project.build_dir / "junit.xml"
    try:
        return junit_cases(junit) if junit.exists() else None
    except ET.ParseError:
        return None


def run_entry(release: Release, passed: bool, counts: dict, partial: bool = False) -> dict:
    """One line of verified.jsonl for the release record ``release``."""
    return {
        "release": release.release,
        "images": release.image_ids(),
        "passed": passed,
        "partial": partial,      # run with -k: never counts for the gate
        "counts": counts,
        "by": who(),
        "at": now(),
    }


def runs(session) -> list[dict]:
    return session.read_jsonl(VERIFIED)
