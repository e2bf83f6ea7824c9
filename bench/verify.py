"""Benchmark: the verification suite as `invoke test` runs it (checks in several processes at
once) against the same checks one after another (one process), on a warm environment.

Both run the whole suite of infra_tests/ against the running environment (default: test;
bring it up first with `./lap up`), alternating, --runs times each after one warm-up of
each; the figure is the median wall time of each, from the start of pytest to its end.
Nothing is recorded on the master (a benchmark's runs never open a promotion gate).

    .venv/bin/python bench/verify.py [--env test] [--runs 5] [--write docs/performance.md]
"""
from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from perfdoc import write_section  # noqa: E402  (bench/, the script's own folder)
from lapinfra import verify  # noqa: E402
from lapinfra.project import Project  # noqa: E402
from lapinfra.report import Reporter  # noqa: E402

HEADING = "Verification suite"
TARGET = 5.0   # the goal: the whole suite in at most 5 s wall clock on a warm test environment


def one_run(project, workers: int) -> tuple[float, dict]:
    junit = project.build_dir / f"bench-junit-{workers}.xml"
    started = time.perf_counter()
    code = subprocess.call(verify.suite_command(project, junit, workers=workers), cwd=ROOT,
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    elapsed = time.perf_counter() - started
    counts = verify.junit_counts(junit)
    if code != 0:
        sys.exit(f"the suite failed ({counts}); fix the environment first: `invoke test --env={project.name}`")
    return elapsed, counts


def load() -> str:
    return ", ".join(f"{x:.1f}" for x in os.getloadavg())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--env", default="test")
    parser.add_argument("--runs", type=int, default=5)
    parser.add_argument("--write", type=Path)
    args = parser.parse_args()
    project = Project(args.env, root=ROOT, reporter=Reporter(quiet=True))
    modes = {f"invoke test ({verify.WORKERS} processes)": verify.WORKERS, "the same checks one after another": 1}
    load_at_start = load()
    for workers in modes.values():       # warm-up: caches, the apt cache's index files
        one_run(project, workers)
    times: dict[str, list[float]] = {name: [] for name in modes}
    counts = {}
    for _ in range(args.runs):
        for name, workers in modes.items():
            elapsed, counts[name] = one_run(project, workers)
            times[name].append(elapsed)
    report = render(args.env, times, counts, args.runs, load_at_start)
    print(report)
    if args.write:
        write_section(args.write, HEADING, report)


def render(env: str, times: dict[str, list[float]], counts: dict, runs: int, load_at_start: str) -> str:
    (fast, fast_t), (slow, slow_t) = times.items()
    median_fast, median_slow = statistics.median(fast_t), statistics.median(slow_t)
    checks = counts[fast]
    rows = "\n".join(f"| {name} | {statistics.median(t):.1f} s | {min(t):.1f}-{max(t):.1f} s |" for name, t in times.items())
    met = "met" if median_fast <= TARGET else "not met"
    return (
        f"## {HEADING}\n\n"
        f"`bench/verify.py --env {env} --runs {runs}`: the whole verification suite on a warm `{env}` environment "
        f"({checks['tests']} checks, {checks['skipped']} skipped), measured side by side in one run, alternating. "
        "Wall time of pytest from start to end (process start-up, SSH connections and every check).\n\n"
        "| how | median | range |\n|---|---|---|\n" + rows + "\n\n"
        f"Ratio: {median_slow / median_fast:.1f}x. Target of at most {TARGET:.0f} s: {met}.\n\n"
        "Where the time goes: the checks run in parallel processes, each with one SSH connection to the "
        "master; the wall time is bounded by the longest checks rather than by their number: the "
        "load balancer's failover check (a backend stopped, its client moved, the backend back after "
        "nginx's fail_timeout of 5 s), `restic check` of the backup repository, two apt-get updates "
        "through the cache, and each process's start-up.\n\n"
        f"- machine: {os.cpu_count()} CPUs, load average {load_at_start} at the start, {load()} at the end\n"
    )


if __name__ == "__main__":
    main()
