"""What every benchmark in bench/ shares: timing, medians, the round-robin runner, the machine
line, the report templates (bench/templates/<name>.md.j2) and the section writer of
docs/performance.md (each benchmark owns one '## ' section and rewrites only that).

Pure but for `docker_version` and `load_average`; the tests (tests/unit/test_bench.py) use it
without Docker.
"""
from __future__ import annotations

import argparse
import math
import os
import re
import statistics
import subprocess
import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Callable, Iterable, Mapping, TypeVar

import jinja2

ROOT = Path(__file__).resolve().parent.parent
TEMPLATES = Path(__file__).resolve().parent / "templates"
NOISY_LOAD = 1.5      # a load average above this at some point: absolute times are noisy
T = TypeVar("T")


# ---- timing ---------------------------------------------------------------------------

class Timer:
    """`with Timer() as t: ...`, then t.seconds (wall clock, perf_counter); t.start and t.end too.
    Where a block does not fit: `t = Timer.running()`, ..., `t.stop()`."""

    def __enter__(self) -> "Timer":
        self.start = time.perf_counter()
        self.end = None
        return self

    def __exit__(self, *exc) -> None:
        self.stop()

    @classmethod
    def running(cls) -> "Timer":
        return cls().__enter__()

    def stop(self) -> float:
        self.end = time.perf_counter()
        return self.seconds

    @property
    def seconds(self) -> float:
        return (self.end if self.end is not None else time.perf_counter()) - self.start


def timed_run(cmd: list[str], **kw) -> tuple[float, subprocess.CompletedProcess]:
    """Run ``cmd`` (in the project's root unless cwd= says otherwise), output captured as text
    unless stdout= is given; (wall-clock seconds, the finished process). Checks nothing."""
    kw.setdefault("cwd", ROOT)
    if "stdout" not in kw:
        kw.update(capture_output=True, text=True)
    with Timer() as t:
        proc = subprocess.run(cmd, **kw)
    return t.seconds, proc


def arguments(doc: str, env: str | None = None, runs: int = 5) -> argparse.ArgumentParser:
    """The command line every benchmark shares: --runs, --write PATH (its section of
    docs/performance.md) and, given a default ``env``, --env; its description the docstring's first line."""
    parser = argparse.ArgumentParser(description=doc.splitlines()[0])
    if env is not None:
        parser.add_argument("--env", default=env)
    parser.add_argument("--runs", type=int, default=runs)
    parser.add_argument("--write", type=Path)
    return parser


def round_robin(methods: Mapping[str, Callable[[int], T]], runs: int, *, warmup: int = 0,
                each: Callable[[int, str, T], None] | None = None) -> dict[str, list[T]]:
    """Call every method once per round, in order (A, B, A, B, ...), ``runs`` rounds after
    ``warmup`` rounds whose results are dropped. A method gets the round's number (warm-up: 0,
    then 1..runs); ``each(round, name, result)`` is told every timed result as it comes."""
    for _ in range(warmup):
        for fn in methods.values():
            fn(0)
    results: dict[str, list[T]] = {name: [] for name in methods}
    for run in range(1, runs + 1):
        for name, fn in methods.items():
            results[name].append(fn(run))
            if each:
                each(run, name, results[name][-1])
    return results


# ---- figures --------------------------------------------------------------------------

def median(xs: Iterable[float], default=math.nan):
    xs = list(xs)
    return statistics.median(xs) if xs else default


def minimum(xs: Iterable[float], default=math.nan):
    return min(xs, default=default)


def fmt(x: float | None, nd: int = 1) -> str:
    """``x`` with ``nd`` decimals; "n/a" for no figure (None or NaN)."""
    return "n/a" if x is None or x != x else f"{x:.{nd}f}"


def loads(xs: Iterable[float]) -> str:
    return ", ".join(f"{x:.1f}" for x in xs)


# ---- the machine line -----------------------------------------------------------------

def load_average() -> tuple[float, float, float]:
    return os.getloadavg()


def memory_gib(meminfo: str | None = None) -> float:
    text = Path("/proc/meminfo").read_text() if meminfo is None else meminfo
    return int(re.search(r"MemTotal:\s+(\d+)", text).group(1)) / 2**20


def docker_version() -> str:
    """The Docker engine's version ("?" when it does not answer)."""
    try:
        import docker

        return docker.from_env(timeout=10).version().get("Version", "") or "?"
    except Exception:
        return "?"


@dataclass
class Machine:
    """nproc, memory, Docker engine, load average at the start and at the end of a benchmark."""
    cpus: int
    mem_gib: float
    docker: str
    load_start: tuple[float, ...]
    load_end: tuple[float, ...] | None = None

    @classmethod
    def at_start(cls, docker: Callable[[], str] = docker_version) -> "Machine":
        return cls(os.cpu_count() or 0, memory_gib(), docker(), tuple(load_average()))

    def finish(self) -> "Machine":
        self.load_end = tuple(load_average())
        return self

    def noisy(self, *more_loads: float) -> bool:
        return max(*self.load_start, *(self.load_end or ()), *more_loads) > NOISY_LOAD

    def line(self) -> str:
        end = loads(self.load_end) if self.load_end else "?"
        return (f"{self.cpus} CPUs (nproc), {self.mem_gib:.1f} GiB memory, Docker Engine {self.docker}, "
                f"load average {loads(self.load_start)} at the start, {end} at the end")

    def as_dict(self) -> dict:
        return asdict(self)


# ---- the report -----------------------------------------------------------------------

def _environment() -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(TEMPLATES), undefined=jinja2.StrictUndefined,
                             trim_blocks=True, lstrip_blocks=True, keep_trailing_newline=True,
                             autoescape=False)
    env.filters.update(fmt=fmt, loads=loads, median=median)
    return env


def render(name: str, **figures) -> str:
    """bench/templates/<name>.md.j2 rendered with ``figures``: a '## ' section of docs/performance.md."""
    return _environment().get_template(f"{name}.md.j2").render(**figures)


def heading_of(section: str) -> str:
    first = section.splitlines()[0] if section else ""
    if not first.startswith("## "):
        raise ValueError(f"a section starts with its '## ' heading, not {first!r}")
    return first[3:]


def write_section(path: Path, section: str) -> None:
    """Replace the section of ``path`` headed as ``section`` is (up to the next '## ' heading),
    or append it."""
    heading = heading_of(section)
    text = path.read_text() if path.exists() else "# Performance\n\n"
    match = re.search(rf"^## {re.escape(heading)}\n.*?(?=^## |\Z)", text, re.MULTILINE | re.DOTALL)
    if match:
        text = text[:match.start()] + section + ("\n" if match.end() < len(text) else "") + text[match.end():]
    else:
        text = text.rstrip("\n") + "\n\n" + section
    path.write_text(text)


def publish(section: str, write: str | Path | None) -> None:
    """Print the section; with --write PATH, also put it into PATH."""
    print("\n" + section)
    if write:
        write_section(Path(write), section)
        print(f"written to {write}")
