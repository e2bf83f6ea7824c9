"""test: the verification suite (infra_tests/) against a running environment."""
from invoke import Exit

from tasks._common import project, task


@task(help={"k": "only checks matching this pytest -k expression (such a run never opens a promotion gate)"})
def test(c, env=None, k=""):
    """Check the running environment from outside, as a user would; the run is recorded on its master (the gate of promotions)."""
    from lapinfra import verify

    p = project(env)
    passed, counts = verify.run_suite(p, k)
    try:
        verify.record_run(p, passed, counts, partial=bool(k))
    except Exception as exc:  # an unreachable node already failed the suite; say so once
        p.reporter.warn(f"the run could not be recorded on {p.name}'s master: {str(exc).splitlines()[0]}")
    if not passed:
        raise Exit(f"verification suite failed on {p.name} (report: {p.build_dir / 'junit.xml'})", code=1)
