"""Benchmark: the verification suite as `invoke test` runs it (checks in several processes at
once) against the same checks one after another (one process), on a warm environment.

Both run the whole suite of infra_tests/ against the running environment (default: test;
bring it up first with `./lap up`), alternating, --runs times each after one warm-up of
each; the figure is the median wall time of each, from the start of pytest to its end.
Nothing is recorded on the master (a benchmark's runs never open a promotion gate).

    .venv/bin/python bench/verify.py [--env test] [--runs 5] [--write docs/performance.md]
"""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (bench/, the script's own folder)
from lapinfra import verify  # noqa: E402
from lapinfra.project import Project  # noqa: E402
from lapinfra.report import Reporter  # noqa: E402

TARGET = 5.0   # the goal: the whole suite in at most 5 s wall clock on a warm test environment


def one_run(project, workers: int) -> tuple[float, dict]:
    junit = project.build_dir / f"bench-junit-{workers}.xml"
    elapsed, proc = benchlib.timed_run(verify.suite_command(project, junit, workers=workers),
                                       stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    counts = verify.junit_counts(junit)
    if proc.returncode != 0:
        sys.exit(f"the suite failed ({counts}); fix the environment first: `invoke test --env={project.name}`")
    return elapsed, counts


def main() -> None:
    args = benchlib.arguments(__doc__, env="test").parse_args()
    project = Project(args.env, root=ROOT, reporter=Reporter(quiet=True))
    modes = {f"invoke test ({verify.WORKERS} processes)": verify.WORKERS, "the same checks one after another": 1}
    machine = benchlib.Machine.at_start()
    # one warm-up of each first: caches, the apt cache's index files
    results = benchlib.round_robin({name: lambda run, w=workers: one_run(project, w) for name, workers in modes.items()},
                                   args.runs, warmup=1)
    times = {name: [elapsed for elapsed, _ in rs] for name, rs in results.items()}
    counts = {name: rs[-1][1] for name, rs in results.items()}
    benchlib.publish(render(args.env, times, counts, args.runs, machine.finish()), args.write)


def render(env: str, times: dict[str, list[float]], counts: dict, runs: int, machine: benchlib.Machine) -> str:
    (fast, fast_t), (_, slow_t) = times.items()
    return benchlib.render("verify", env=env, runs=runs, times=times, fast=fast_t, slow=slow_t,
                           checks=counts[fast], target=TARGET, machine=machine)


if __name__ == "__main__":
    main()
