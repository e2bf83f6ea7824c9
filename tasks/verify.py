"""test: the verification suite (infra_tests/) against a running environment."""
import subprocess
import sys

from invoke import Exit

from tasks._common import project, task


@task(help={"k": "only checks matching this pytest -k expression"})
def test(c, env=None, k=""):
    """Check the running environment from outside, as a user would (JUnit XML in build/<env>/)."""
    p = project(env)
    junit = p.build_dir / "junit.xml"
    cmd = [sys.executable, "-m", "pytest", str(p.root / "infra_tests"), "-p", "no:cacheprovider",
           f"--lapinfra-env={p.name}", f"--lapinfra-root={p.root}", f"--junitxml={junit}", "-q", "-c", str(p.root / "infra_tests" / "pytest.ini")]
    if k:
        cmd += ["-k", k]
    with p.reporter.step(f"verification suite on {p.name}"):
        code = subprocess.call(cmd, cwd=p.root)
    if code:
        raise Exit(f"verification suite failed on {p.name} (report: {junit})", code=code)
