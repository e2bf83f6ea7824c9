"""Benchmark: a cold `./lap up` on a workstation whose Docker engine holds none of the project's images.

What a new machine meets after the README's prerequisites: every image built (the base image by
debootstrap first), the nodes created, every image pushed into the new registry, every container
started, then the verification suite. Destructive on this workstation, so it asks first (--yes:
do not ask): it destroys ENV's nodes and their backups (default env: test, the README's `./lap up`;
an environment with `promoted_from`, such as bench, would refuse the new builds at its gate) and removes from the workstation's engine every image the project
builds (the base image, the node image, each images/<name>/) with the build cache they leave, so
nothing is reused. The nodes of other environments keep running: their engines hold their own
images. Then `./lap up --env=ENV`, timed as a user runs it; the steps' seconds are read from its
`✓ <step> (N.Ns)` lines. Beside the whole: the builds' own seconds summed, what building them one
after another would take (they run `build.jobs` at a time).

    .venv/bin/python bench/cold_up.py [--env test] [--runs 1] [--yes] [--write docs/performance.md]
"""
from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (bench/, the script's own folder)

TARGET = 360.0   # the goal: a cold `up` in at most 6 minutes
STEP = re.compile(r"^✓ (.+) \((\d+(?:\.\d+)?)s\)$")
SUITE_LINE = re.compile(r"verification suite on \S+: passed, \d+ checks in ([\d.]+)s wall")
ANSI = re.compile(r"\x1b\[[0-9;?]*[A-Za-z]")
BUILDS = "image builds (each build's seconds, summed)"
# step lines -> the rows of the report, in the order `up` meets them (first match wins)
CATEGORIES = [
    ("base image (debootstrap)", re.compile(r"^(debootstrap|pull) ")),
    (BUILDS, re.compile(r"^build ")),
    ("nodes (Vagrant, host keys, SSH)", re.compile(r"^(vagrant up|node) ")),
    ("images onto the node (load, push, pull)", re.compile(r"^(load infra/|push \d+ image|pull \d+ image)")),
    ("swarm", re.compile(r"^swarm: ")),
    ("containers and their health checks", re.compile(r"^(infra_\w+: |health checks)")),
]


def project_images(env: str) -> list[str]:
    """The tags of every image the project builds for ``env`` (base, node, images/<name>/)."""
    from lapinfra.project import Project

    p = Project(env, root=ROOT)
    return [p.env.base_image.tag, *(spec.tag for spec in p.graph.specs.values())]


def make_cold(env: str) -> None:
    """ENV's nodes destroyed, the project's images and their build cache removed."""
    subprocess.run([sys.executable, "-m", "invoke", "node.down", f"--env={env}", "--destroy-backups", "--yes"],
                   cwd=ROOT, check=True, capture_output=True)
    import docker

    client = docker.from_env(timeout=600)
    for tag in project_images(env):
        try:
            client.images.remove(tag, force=True)
        except docker.errors.ImageNotFound:
            pass
    client.images.prune(filters={"dangling": True})   # the layers the removed builds left behind


def steps(output: str) -> list[tuple[str, float]]:
    """Every `✓ <step> (N.Ns)` line of an `up`'s output: (step, seconds)."""
    found = []
    for line in ANSI.sub("", output).splitlines():
        match = STEP.match(line.strip())
        if match:
            found.append((match.group(1), float(match.group(2))))
    return found


def categorize(found: list[tuple[str, float]]) -> dict[str, float]:
    out = {name: 0.0 for name, _ in CATEGORIES}
    for step, seconds in found:
        for name, pattern in CATEGORIES:
            if pattern.search(step):
                out[name] += seconds
                break
    return out


def run(env: str) -> dict:
    make_cold(env)
    wall, proc = benchlib.timed_run(["./lap", "up", f"--env={env}"])
    out = proc.stdout + proc.stderr
    if proc.returncode:
        sys.exit(f"`./lap up --env={env}` failed ({proc.returncode}):\n{out[-3000:]}")
    found = steps(out)
    suite = SUITE_LINE.search(out)
    return {"wall": wall, "categories": categorize(found), "suite": float(suite.group(1)) if suite else float("nan"),
            "builds": sum(step.startswith("build ") for step, _ in found)}


def main() -> None:
    parser = benchlib.arguments(__doc__, env="test", runs=1)
    parser.add_argument("--yes", action="store_true", help="do not ask before destroying the nodes and removing the images")
    args = parser.parse_args()
    if not args.yes:
        answer = input(f"destroy the {args.env} nodes and their backups, and remove every image the project builds "
                       f"from this workstation's Docker engine? [y/N] ")
        if answer.strip().lower() not in ("y", "yes"):
            sys.exit("nothing done")
    machine = benchlib.Machine.at_start()
    results = [run(args.env) for _ in range(args.runs)]
    benchlib.publish(render(args.env, results, machine.finish()), args.write)


def render(env: str, results: list[dict], machine: benchlib.Machine) -> str:
    rows = {name: [r["categories"][name] for r in results] for name, _ in CATEGORIES}
    return benchlib.render("cold_up", env=env, runs=len(results), walls=[r["wall"] for r in results], rows=rows,
                           suites=[r["suite"] for r in results], builds=results[0]["builds"] if results else 0,
                           build_row=BUILDS, jobs=build_jobs(env), target=TARGET, machine=machine)


def build_jobs(env: str) -> int:
    from lapinfra.project import Project

    return Project(env, root=ROOT).env.build.jobs


if __name__ == "__main__":
    main()
