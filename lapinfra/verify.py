"""The verification suite (infra_tests/) as a library call, and the record of its runs.

Every run is appended to ``verified.jsonl`` (records.VERIFIED) on the environment's
master: the release and the image ids (config digests) that were running, the
outcome, who and when. Promotion's gate reads the source environment's record:
only images that passed there may be deployed to the target.
"""
from __future__ import annotations

import subprocess
import sys
import time
import xml.etree.ElementTree as ET

from . import status
from . import records
from .records import VERIFIED, Release, now, who  # noqa: F401 - now and who are part of this module's interface
from .session import MasterSession


# Checks wait on the network, not the CPU: several processes at once, each with one SSH
# connection to the master (infra_tests/conftest.py). 1 runs them one after another.
WORKERS = 6


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
