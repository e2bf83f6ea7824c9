"""Benchmark: a no-op `invoke build` against a `docker build` loop and `docker-compose build`.

All three build the same images (images/*/ and nodes/image/) with a warm cache.
The no-op `invoke build` is timed twice: as a user meets it (the stamp of the last
full build holds: lapinfra/buildstamp.py's fast path, asserted by the stamp staying
untouched) and with the stamp removed first (the full check: configuration, every
context hashed, every label read; it writes the stamp again).
The baseline runs use their own tags (bench/<name>) so that the lapinfra images
and their `lapinfra.hash` labels are never touched; every image is FROM
infra/base, which resolves the same for all three. One warm-up run per method
fills the layer cache, then --runs timed repetitions are taken round-robin.

    .venv/bin/python bench/build_noop.py [--runs 5] [--write docs/performance.md]
"""
from __future__ import annotations

import argparse
import datetime
import io
import json
import shutil
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import benchlib  # noqa: E402  (bench/, the script's own folder)
from lapinfra.buildstamp import stamp_path  # noqa: E402
from lapinfra.envname import resolve_env  # noqa: E402
from lapinfra.images import ImageGraph  # noqa: E402  (FROM order of the image folders)

TARGET = 3.0  # the goal: no-op build at least 3x faster than the docker build loop
INVOKE = [sys.executable, "-m", "invoke", "build"]
STARTUP = "(part of it: python + `import tasks`)"  # the floor any invoke command pays
FAST = "invoke build (no-op)"
FULL = "invoke build (no-op, stamp removed: full check)"
LOOP = "docker build loop"
COMPOSE = "docker-compose build"
STAMP = stamp_path(ROOT, resolve_env(None))


def run(cmd: list[str]) -> tuple[float, str]:
    elapsed, proc = benchlib.timed_run(cmd)
    if proc.returncode:
        sys.exit(f"command failed ({proc.returncode}): {' '.join(cmd)}\n{proc.stdout}{proc.stderr}")
    return elapsed, proc.stdout + proc.stderr


def invoke_noop() -> float:
    """The no-op as a user meets it: the stamp holds, so `invoke build` must not rewrite it."""
    before = STAMP.stat().st_mtime_ns if STAMP.exists() else None
    elapsed, out = run(INVOKE)
    if "(all up to date)" not in out:
        sys.exit(f"`invoke build` was not a no-op:\n{out}")
    if before is None or not STAMP.exists() or STAMP.stat().st_mtime_ns != before:
        sys.exit(f"`invoke build` did not take the stamp's fast path ({STAMP}):\n{out}")
    return elapsed


def invoke_full_check() -> float:
    """The no-op without the stamp: the full check, which writes the stamp again."""
    STAMP.unlink(missing_ok=True)
    elapsed, out = run(INVOKE)
    if "(all up to date)" not in out:
        sys.exit(f"`invoke build` was not a no-op:\n{out}")
    if not STAMP.exists():
        sys.exit(f"the full check wrote no stamp ({STAMP}): an input changed in the last seconds?\n{out}")
    return elapsed


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=5, help="timed repetitions per method (default 5)")
    ap.add_argument("--write", metavar="PATH", help="write the results into the '## No-op build' section of PATH")
    args = ap.parse_args()
    machine = benchlib.Machine.at_start()

    from lapinfra.project import Project

    project = Project(root=ROOT)
    graph = ImageGraph.discover(ROOT, project.env.base_image.tag, project.extra_ca(), project.env.node_image)
    names = [n for level in graph.order() for n in level]
    tmp = Path(tempfile.mkdtemp(prefix="lapinfra-bench-"))
    # The baselines get the very build contexts lapinfra sends (the image folder plus
    # extra-ca-certs.pem, without templates/), extracted into folders of their own.
    dirs = {}
    for n in names:
        dirs[n] = tmp / "ctx" / n
        dirs[n].mkdir(parents=True)
        with tarfile.open(fileobj=io.BytesIO(graph.context_tar(n))) as tar:
            tar.extractall(dirs[n])
    bench_tags = [f"bench/{n}" for n in names]
    loop = [["docker", "build", "-q", "-t", f"bench/{n}", str(dirs[n])] for n in names]

    compose_file = tmp / "docker-compose.yml"  # JSON is valid YAML
    compose_file.write_text(json.dumps({"version": "2.4", "services": {
        n: {"build": {"context": str(dirs[n])}, "image": f"bench/{n}"} for n in names}}, indent=2))
    compose = shutil.which("docker-compose")
    methods = {FAST: lambda run_no: invoke_noop(),
               FULL: lambda run_no: invoke_full_check(),
               STARTUP: lambda run_no: run([sys.executable, "-c", "import tasks"])[0],
               LOOP: lambda run_no: sum(run(cmd)[0] for cmd in loop)}
    if compose:
        methods[COMPOSE] = lambda run_no: run([compose, "-f", str(compose_file), "-p", "lapinfrabench", "build"])[0]
    else:
        print("docker-compose not found: skipping that column (install: apt-get install -y docker-compose)")

    try:
        print("warming up (one run of each, fills the layer cache) ...")
        run(INVOKE)  # may build stale images once; every later run must be a no-op
        invoke_full_check()  # writes the stamp the fast path needs

        this_round: dict[str, float] = {}

        def progress(run_no: int, m: str, seconds: float) -> None:
            this_round[m] = seconds
            if m == list(methods)[-1]:
                print(f"  run {run_no}/{args.runs}: " + ", ".join(f"{m} {t:.2f}s" for m, t in this_round.items()))

        times = benchlib.round_robin(methods, args.runs, warmup=1, each=progress)
    finally:
        subprocess.run(["docker", "rmi", *bench_tags], capture_output=True)
        shutil.rmtree(tmp, ignore_errors=True)

    _, out = run(INVOKE)
    still_noop = "(all up to date)" in out
    if not still_noop:
        print(f"WARNING: `invoke build` is no longer a no-op (a concurrent edit?):\n{out}")
    benchlib.publish(render(names, times, compose is not None, still_noop, args.runs, machine.finish()), args.write)


def render(names: list[str], times: dict[str, list[float]], have_compose: bool, still_noop: bool, runs: int,
           machine: benchlib.Machine) -> str:
    base = benchlib.median(times[FAST])
    return benchlib.render("build_noop", names=names, times=times, have_compose=have_compose, still_noop=still_noop,
                           runs=runs, machine=machine, date=datetime.date.today().isoformat(), base=base,
                           loop_ratio=benchlib.median(times[LOOP]) / base, target=TARGET,
                           loop=LOOP, full=FULL, compose=COMPOSE)


if __name__ == "__main__":
    main()
