"""Benchmark: a second `invoke up` with nothing changed, against the verification suite alone.

On a warm environment (default: test, brought up with `./lap up` first), --runs rounds taken
round-robin after one warm-up round of each:

- `invoke up --env=X`: every step of the main job when nothing changed (the builds found up to
  date, the nodes found running, the deploy with nothing to push or recreate, the swarm, the
  nodes' names), then the whole verification suite;
- `invoke test --env=X`: the suite alone, the floor an `up` that verifies what it brought up
  cannot go below.

Each `up` must say "built 0 of", "running already" and "containers changed: none" (else the
benchmark stops: something did change). The seconds of the steps an `up` reports ("✓ <step>
(N.Ns)") and of its suite are read from its output. Nothing is asserted on the times.

    .venv/bin/python bench/up.py [--env test] [--runs 5] [--write docs/performance.md]
"""
from __future__ import annotations

import re
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (bench/, the script's own folder)

TARGET = 10.0   # the goal: a second `up` with nothing changed in at most 10 s
UP, SUITE = "invoke up (nothing changed)", "invoke test (the suite alone)"
SUITE_LINE = re.compile(r"verification suite on \S+: passed, \d+ checks in ([\d.]+)s wall")
NO_CHANGE = ("built 0 of", "running already", "containers changed: none")


def run(env: str, task: str) -> tuple[float, float]:
    """(wall seconds of the command, seconds of its suite)."""
    elapsed, proc = benchlib.timed_run([sys.executable, "-m", "invoke", task, f"--env={env}"])
    out = proc.stdout + proc.stderr
    if proc.returncode:
        sys.exit(f"`invoke {task} --env={env}` failed ({proc.returncode}):\n{out[-3000:]}")
    if task == "up" and not all(said in out for said in NO_CHANGE):
        sys.exit(f"`invoke up --env={env}` changed something (it did not say {NO_CHANGE}):\n{out[-3000:]}")
    suite = SUITE_LINE.search(out)
    return elapsed, float(suite.group(1)) if suite else float("nan")


def main() -> None:
    args = benchlib.arguments(__doc__, env="test").parse_args()
    machine = benchlib.Machine.at_start()
    results = benchlib.round_robin({UP: lambda r: run(args.env, "up"), SUITE: lambda r: run(args.env, "test")},
                                   args.runs, warmup=1)
    benchlib.publish(render(args.env, results, args.runs, machine.finish()), args.write)


def render(env: str, results: dict[str, list[tuple[float, float]]], runs: int, machine: benchlib.Machine) -> str:
    times = {name: [wall for wall, _ in rs] for name, rs in results.items()}
    suites = {name: [suite for _, suite in rs] for name, rs in results.items()}
    before_suite = [wall - suite for wall, suite in results[UP]]
    return benchlib.render("up", env=env, runs=runs, times=times, suites=suites, before_suite=before_suite,
                           up=UP, suite=SUITE, target=TARGET, machine=machine)


if __name__ == "__main__":
    main()
