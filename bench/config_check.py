"""Benchmark: the configuration check on inputs made to be large or hostile, against PyYAML's
own safe_load of the same file (what a script that only reads the YAML would run).

Three cases, each on a copy of the project's configuration files in a temporary folder:
- an environment of 5000 worker nodes (4000 with fixed addresses, 1000 on DHCP): accepted,
  every address, name and port checked for clashes;
- an env.yml of 400,000 values (800 KB, under the size limit): refused ("holds more than
  100000 values");
- an alias bomb under 1 KB (ten levels of ten aliases: 10^10 values once expanded): refused
  ("expands to more than ...").
Each is timed in this process (imports warm), one warm-up round, then --runs rounds taken
round-robin; the figure is the median.

    .venv/bin/python bench/config_check.py [--runs 5] [--write docs/performance.md]
"""
from __future__ import annotations

import shutil
import sys
import tempfile
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (bench/, the script's own folder)
from lapinfra import config  # noqa: E402
from lapinfra.errors import ConfigError  # noqa: E402

ENV = "environments/test/env.yml"
NODES = "nodes/test.yml"


def workers_5000(tree: Path) -> None:
    (tree / ENV).write_text("provider: docker\nnetwork:\n  name: big\n  subnet: 10.9.0.0/16\n  dynamic: 10.9.200.0/22\n")
    nodes = ["nodes:", "  - {name: master, role: master, ip: 10.9.0.10}", "  - {name: backup, role: backup, ip: 10.9.0.11}"]
    nodes += [f"  - {{name: w{i}, role: worker, ip: 10.9.{1 + i // 250}.{1 + i % 250}}}" for i in range(4000)]
    nodes += [f"  - {{name: d{i}, role: worker}}" for i in range(1000)]
    (tree / NODES).write_text("\n".join(nodes) + "\n")


def many_values(tree: Path) -> None:
    (tree / ENV).write_text("x: [" + ",".join(["1"] * 400_000) + "]\n")


def alias_bomb(tree: Path) -> None:
    lines = ["a0: &a0 [x, x, x, x, x, x, x, x, x, x]"]
    lines += [f"a{i}: &a{i} [{', '.join([f'*a{i - 1}'] * 10)}]" for i in range(1, 10)]
    (tree / ENV).write_text("\n".join(lines) + "\n")


CASES = {"5000 workers (accepted)": (workers_5000, None),
         "400,000 values (refused)": (many_values, "holds more than"),
         "alias bomb, 10^10 values (refused)": (alias_bomb, "expands to more than")}


def check(tree: Path, refusal: str | None) -> float:
    with benchlib.Timer() as t:
        try:
            config.load(tree, "test")
            outcome = None
        except ConfigError as err:
            outcome = err.message
    if (outcome is None) != (refusal is None) or (refusal and refusal not in outcome):
        sys.exit(f"config.load: expected {refusal or 'acceptance'}, got {outcome or 'acceptance'}")
    return t.seconds


def safe_load(tree: Path) -> float:
    with benchlib.Timer() as t:
        for rel in (ENV, NODES):
            yaml.safe_load((tree / rel).read_text())
    return t.seconds


def main() -> None:
    args = benchlib.arguments(__doc__).parse_args()
    machine = benchlib.Machine.at_start()
    times: dict[str, dict[str, list[float]]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for case, (make, refusal) in CASES.items():
            tree = Path(tmp) / case.split()[0]
            for folder in ("environments", "nodes", "images", "apps"):
                shutil.copytree(ROOT / folder, tree / folder)
            make(tree)
            results = benchlib.round_robin({"lapinfra": lambda run: check(tree, refusal),
                                            "yaml.safe_load": lambda run: safe_load(tree)}, args.runs, warmup=1)
            times[case] = results
    benchlib.publish(render(times, args.runs, machine.finish()), args.write)


def render(times: dict[str, dict[str, list[float]]], runs: int, machine: benchlib.Machine) -> str:
    return benchlib.render("config_check", runs=runs, times=times, machine=machine)


if __name__ == "__main__":
    main()
