"""bench/: the shared helper (benchlib) and each benchmark's report template, on fake commands and
fixed fake figures; no Docker, no environment. Each script still parses its arguments."""
import importlib.util
import re
import subprocess
import sys
import time
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
BENCH = ROOT / "bench"
SCRIPTS = ["build_noop", "cold_up", "config_check", "deploy", "downtime", "snapshot", "up", "verify"]
sys.path.insert(0, str(BENCH))

import benchlib  # noqa: E402

MACHINE = benchlib.Machine(cpus=2, mem_gib=23.5, docker="20.10.24", load_start=(0.6, 0.8, 1.1), load_end=(0.7, 1.1, 1.3))


def script(name: str):
    spec = importlib.util.spec_from_file_location(f"bench_{name}", BENCH / f"{name}.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


# ---- benchlib ---------------------------------------------------------------------------

def test_timer_measures_the_block():
    with benchlib.Timer() as t:
        time.sleep(0.05)
    assert 0.05 <= t.seconds < 1.0
    assert t.end - t.start == t.seconds


def test_running_timer_stops():
    t = benchlib.Timer.running()
    time.sleep(0.02)
    assert 0.02 <= t.stop() == t.seconds


def test_timed_run_times_a_fake_command_and_checks_nothing():
    seconds, proc = benchlib.timed_run([sys.executable, "-c", "import time, sys; time.sleep(0.05); print('out'); sys.exit(3)"])
    assert seconds >= 0.05
    assert proc.returncode == 3 and proc.stdout == "out\n"


def test_timed_run_runs_in_the_project_root():
    _, proc = benchlib.timed_run([sys.executable, "-c", "import os; print(os.getcwd())"])
    assert Path(proc.stdout.strip()) == ROOT


def test_median_and_minimum():
    assert benchlib.median([3.0, 1.0, 2.0]) == 2.0
    assert benchlib.median([4.0, 1.0, 2.0, 3.0]) == 2.5
    assert benchlib.median([]) != benchlib.median([])          # NaN: no figure
    assert benchlib.median([], default=None) is None
    assert benchlib.minimum([3.0, 1.0]) == 1.0
    assert benchlib.minimum([], default=0.0) == 0.0


def test_fmt_says_n_a_for_no_figure():
    assert benchlib.fmt(1.234) == "1.2"
    assert benchlib.fmt(1.234, 2) == "1.23"
    assert benchlib.fmt(None) == "n/a"
    assert benchlib.fmt(float("nan"), 2) == "n/a"


def test_round_robin_alternates_methods_after_the_warm_up():
    calls = []
    methods = {name: (lambda run, name=name: calls.append((name, run)) or f"{name}{run}") for name in "AB"}
    seen = []
    results = benchlib.round_robin(methods, 3, warmup=1, each=lambda run, name, r: seen.append((run, name, r)))
    assert calls == [("A", 0), ("B", 0), ("A", 1), ("B", 1), ("A", 2), ("B", 2), ("A", 3), ("B", 3)]
    assert results == {"A": ["A1", "A2", "A3"], "B": ["B1", "B2", "B3"]}
    assert seen == [(1, "A", "A1"), (1, "B", "B1"), (2, "A", "A2"), (2, "B", "B2"), (3, "A", "A3"), (3, "B", "B3")]


def test_round_robin_times_fake_commands():
    methods = {"fast": lambda run: benchlib.timed_run([sys.executable, "-c", "pass"])[0],
               "slow": lambda run: benchlib.timed_run([sys.executable, "-c", "import time; time.sleep(0.2)"])[0]}
    times = benchlib.round_robin(methods, 2)
    assert benchlib.median(times["slow"]) - benchlib.median(times["fast"]) >= 0.15


def test_machine_line_shape():
    assert MACHINE.line() == ("2 CPUs (nproc), 23.5 GiB memory, Docker Engine 20.10.24, "
                              "load average 0.6, 0.8, 1.1 at the start, 0.7, 1.1, 1.3 at the end")


def test_machine_at_start_measures_this_machine_with_the_engine_given():
    machine = benchlib.Machine.at_start(docker=lambda: "99.0").finish()
    assert re.fullmatch(r"\d+ CPUs \(nproc\), \d+\.\d GiB memory, Docker Engine 99\.0, "
                        r"load average \d+\.\d, \d+\.\d, \d+\.\d at the start, \d+\.\d, \d+\.\d, \d+\.\d at the end",
                        machine.line())
    assert benchlib.Machine(**machine.as_dict()) == machine


def test_machine_noisy_above_the_threshold():
    assert not MACHINE.noisy()
    assert MACHINE.noisy(1.6)
    assert benchlib.memory_gib("MemTotal:       24641536 kB\n") == pytest.approx(23.5, abs=0.05)


def test_write_section_replaces_its_own_section_only(tmp_path):
    doc = tmp_path / "performance.md"
    doc.write_text("# Performance\n\n## One\n\nold one\n\n## Two\n\nold two\n")
    benchlib.write_section(doc, "## One\n\nnew one\n")
    benchlib.write_section(doc, "## Three\n\nthree\n")
    benchlib.write_section(doc, "## Two\n\nnew two\n")
    assert doc.read_text() == "# Performance\n\n## One\n\nnew one\n\n## Two\n\nnew two\n\n## Three\n\nthree\n"
    with pytest.raises(ValueError):
        benchlib.write_section(doc, "no heading\n")


# ---- each script's report, from fixed fake figures --------------------------------------

def build_noop_report() -> str:
    m = script("build_noop")
    times = {m.FAST: [0.26, 0.25], m.FULL: [0.81, 0.79], m.STARTUP: [0.2, 0.19], m.LOOP: [0.97, 0.94],
             m.COMPOSE: [1.61, 1.51]}
    return m.render(["backup", "dns"], times, True, True, 2, MACHINE)


def verify_report() -> str:
    times = {"invoke test (6 processes)": [16.3, 15.8], "the same checks one after another": [28.3, 28.2]}
    counts = {name: {"tests": 97, "skipped": 2} for name in times}
    return script("verify").render("test", times, counts, 2, MACHINE)


def downtime_report() -> str:
    names = ["dns", "git (ssh)", "trac"]

    def run(base):
        return {"seconds": 3.5 + base, "frozen": [{"name": "infra_cd", "paused_ms": 86.0}],
                "checks": {n: {"stall": 0.1 + base, "failed": 0} for n in names},
                "quiet": {n: {"stall": 0.05} for n in names}}
    rows = {"frozen copies": [run(0)], "pause everything": [run(2)]}
    return script("downtime").render(rows, {"env": "test", "runs": 1, "when": "2026-12-04 05:04 UTC", "machine": MACHINE})


def snapshot_report(extra_mb: int = 0) -> str:
    def row(cli):
        return {"cli": cli, "id": "abcd1234", "tool": 1.4, "restic": 1.4, "pause": 1.4, "waited": False, "restic_calls": 1}
    info = {"date": "2026-12-02", "runs": 1, "env": "bench", "extra_mb": extra_mb, "data_bytes": 694e6,
            "registry_bytes": 676e6, "tar_bytes_expected": 693e6, "restic_version": "restic 0.14.0",
            "paused_containers": 12, "fallback": False, "parents": [], "elapsed": 90.0, "machine": MACHINE.as_dict()}
    tars = [{"cli": 3.98, "inside": 3.35, "bytes": 1}]
    before = {"list": {"cli": 6.4, "n": 1, "restic_calls": 1, "tool": 0.0}, "digest": [{"cli": 5.66, "tool": 1.23, "restic_calls": 2}]}
    after = {"list": {"cli": 3.22, "n": 3, "restic_calls": 1, "tool": 0.0}, "digest": [{"cli": 3.93, "tool": 1.02, "restic_calls": 2}]}
    return script("snapshot").render(info, [row(4.06)], [row(3.75)], tars, before, after)


def deploy_report() -> str:
    m = script("deploy")
    checks = {"dns": "DNS `ns.internal` A", "app": "HTTP `app.internal`"}
    cats = [name for name, _ in m.CATEGORIES] + [m.SUITE, m.OTHER]

    def row(method, wall):
        split = {"snapshot step": 1.0, "suite": 0.5, "scheduled snapshot": 0.0, "rest of the deploy": 0.0}
        return {"method": method, "run": 1, "wall": wall, "steps": {c: 1.0 for c in cats}, "pushed": ["sampleapp"],
                "containers": {"app1": "recreated", "dns": "kept"} if method == m.A else {"app1": "created", "dns": "created"},
                "tagged": 10, "load": (0.5, 0.6, 0.7), "windows": {},
                "downtime": {n: {"down": 2.0, "longest": 1.0, "failed": 1, "probes": 100, "failures": {"Timeout": 1},
                                 "split": split} for n in checks}}
    info = {"date": "2026-12-02", "env": "bench", "runs": 1, "ip": "172.28.30.10", "timeout": 1.0, "checks": checks,
            "baseline": {}, "elapsed": 384.0, "image_before": "sha:1", "machine": MACHINE.as_dict(),
            "restored": {"elapsed": 94.5, "changed": {"app1": "recreated"}, "image_after": "sha:1"}}
    return m.render(info, [row(m.A, 128.3), row(m.B, 135.9)])


def config_check_report() -> str:
    times = {case: {"lapinfra": [0.25, 0.22], "yaml.safe_load": [0.66, 0.64]} for case in script("config_check").CASES}
    return script("config_check").render(times, 2, MACHINE)


def up_report() -> str:
    m = script("up")
    results = {m.UP: [(20.8, 12.1), (21.5, 12.6)], m.SUITE: [(13.0, 11.9), (13.4, 12.2)]}
    return m.render("test", results, 2, MACHINE)


COLD_UP_OUTPUT = """\
\x1b[32m✓\x1b[0m debootstrap bookworm from http://mirror/debian into infra/base (52.0s)
✓ build infra/dns (40.0s)
✓ build infra/git (30.5s)
  built 2 of 2 images: infra/dns, infra/git
✓ vagrant up master backup (test) (20.0s)
✓ node master: host key pinned, ssh answers (1.0s)
✓ push 12 images into the node's registry (2 at a time) (25.0s)
✓ swarm: initialise on master (172.28.10.10:2377) (1.5s)
✓ infra_dns: created (0.4s)
✓ health checks of 13 started containers (2.6s)
✓ push commit abc to the git server's master and tag deployed-abc (0.8s)
  verification suite on test: passed, 119 checks in 12.5s wall
"""


def cold_up_report() -> str:
    m = script("cold_up")
    found = m.steps(COLD_UP_OUTPUT)
    result = {"wall": 300.0, "categories": m.categorize(found), "suite": 12.5, "builds": 2}
    m.build_jobs = lambda env: 2
    return m.render("bench", [result], MACHINE)


def test_cold_up_reads_each_step_of_up_into_its_row():
    m = script("cold_up")
    rows = m.categorize(m.steps(COLD_UP_OUTPUT))
    assert rows == {"base image (debootstrap)": 52.0, m.BUILDS: 70.5, "nodes (Vagrant, host keys, SSH)": 21.0,
                    "images onto the node (load, push, pull)": 25.0, "swarm": 1.5,
                    "containers and their health checks": 3.0}
    text = cold_up_report()
    assert "| **whole `./lap up` (wall clock)** | **300.0** | 300.0 |" in text
    assert "| image builds (each build's seconds, summed) | 70.5 | 70.5 |" in text
    assert "target: at most 6 minutes: met" in text


def test_cold_up_asks_before_it_destroys_anything(monkeypatch):
    m = script("cold_up")
    monkeypatch.setattr(sys, "argv", ["cold_up.py"])
    monkeypatch.setattr("builtins.input", lambda prompt: "n")
    monkeypatch.setattr(m, "make_cold", lambda env: pytest.fail("destroyed without a yes"))
    with pytest.raises(SystemExit, match="nothing done"):
        m.main()


REPORTS = {
    "cold_up": (cold_up_report, "Cold `up` on a new workstation", "| step | median (s) | runs (s) |"),
    "up": (up_report, "Second `up` with nothing changed", "| command | median (s) | range (s) | of it, the suite (median, s) |"),
    "config_check": (config_check_report, "Configuration check on large and hostile input",
                     "| input | lapinfra's check (s) | yaml.safe_load (s) |"),
    "build_noop": (build_noop_report, "No-op build", "| method | median (s) | min (s) | median / invoke no-op |"),
    "verify": (verify_report, "Verification suite", "| how | median | range |"),
    "downtime": (downtime_report, "Snapshots without downtime",
                 "| check | no snapshot (same load): longest stall (ms) | frozen copies: longest stall (ms) | "
                 "frozen copies: failed probes | pause everything: longest stall (ms) | pause everything: failed probes |"),
    "snapshot": (snapshot_report, "Snapshots",
                 "| method | median (s) | min (s) | tool container (s) | inside: restic backup / tar (s) | "
                 "infra containers paused (s) | median / unchanged snapshot |"),
    "deploy": (deploy_report, "Deploy of one changed image",
               "| method | median (s) | min (s) | runs (s) | images pushed | containers (release record and step lines) |"),
}


@pytest.mark.parametrize("name", list(REPORTS))
def test_report_has_its_heading_table_and_machine_line(name):
    report, heading, table_header = REPORTS[name]
    text = report()
    assert text.splitlines()[0] == f"## {heading}"
    assert benchlib.heading_of(text) == heading
    assert table_header in text.splitlines()
    assert f"- machine: {MACHINE.line()}" in text
    assert text.endswith("\n") and not text.endswith("\n\n\n")
    assert "{{" not in text and "{%" not in text


def test_every_script_has_a_template():
    assert sorted(p.name for p in (BENCH / "templates").glob("*.md.j2")) == sorted(f"{s}.md.j2" for s in SCRIPTS)


def test_report_tables_are_whole():
    """Every table row has as many cells as its header."""
    for name, (report, _, _) in REPORTS.items():
        lines = report().splitlines()
        for i, line in enumerate(lines):
            if line.startswith("|---"):
                width = lines[i - 1].count("|")
                for body in lines[i + 1:]:
                    if not body.startswith("|"):
                        break
                    assert body.count("|") == width, (name, body)


def test_snapshot_heading_of_a_larger_data():
    assert snapshot_report(4096).startswith("## Snapshots of a larger /data (+4 GB of artifacts)\n")


def test_up_figures():
    text = up_report()
    assert "| invoke up (nothing changed) | 21.1 | 20.8-21.5 | 12.3 |" in text
    assert "an unchanged `up` takes 8.8 s (median)" in text and "at most 10 s for the whole `up`: not met" in text


def test_verify_and_build_noop_figures():
    assert "Ratio: 1.8x. Target of at most 5 s: not met." in verify_report()
    assert "| invoke build (no-op) | 0.26 | 0.25 | 1.0x |" in build_noop_report()
    assert "- docker build loop / invoke no-op: 3.7x (target: at least 3x: met)" in build_noop_report()


@pytest.mark.parametrize("name", SCRIPTS)
def test_script_parses_its_arguments(name):
    proc = subprocess.run([sys.executable, str(BENCH / f"{name}.py"), "--help"], cwd=ROOT,
                          capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "--write" in proc.stdout and "--runs" in proc.stdout


@pytest.mark.parametrize("line, seconds", [
    ("verification suite on bench: passed, 119 checks in 11.8s wall", "11.8"),
    ("! verification suite on test: FAILED, 3 of 118 checks (20.9s wall; report: build/test/junit.xml)", "20.9"),
])
def test_the_deploy_benchmark_reads_the_suites_seconds_from_its_summary_line(line, seconds):
    assert script("deploy").SUITE_END.match(line).group(2) == seconds


@pytest.mark.parametrize("step", ["push 1 image into the node's registry (1 at a time)",
                                  "push 12 images into the node's registry (2 at a time)", "push infra/r1/dns:latest"])
def test_the_deploy_benchmark_counts_the_push_step_as_pushing_not_other(step):
    m = script("deploy")
    assert next(name for name, pattern in m.CATEGORIES if pattern.search(step)) == "push images"
    assert not any(pattern.search("push commit abc to the git server's master and tag deployed-abc")
                   for name, pattern in m.CATEGORIES if name == "push images")
