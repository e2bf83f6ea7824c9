"""test: the verification suite (infra_tests/) against a running environment."""
from invoke import Exit

from tasks._common import project, task


@task(help={"k": "only checks matching this pytest -k expression (such a run never opens a promotion gate)",
            "serial": "run the checks one after another in one process (default: several processes at once)"})
def test(c, env=None, k="", serial=False):
    """Check the running environment from outside, as a user would; the run is recorded on its master (the gate of promotions).

    Each check is listed with its outcome and seconds, then the wall time. Checks that stop a
    service for a moment (marked disruptive) run only where verify.disruptive allows them: not
    on a protected environment. The JUnit XML report is build/<env>/junit.xml.

    Examples:
      invoke test --env=test
      invoke test --env=staging -k dns
      invoke build test deploy --env=prod
    """
    from lapinfra import verify

    p = project(c, env)
    passed, counts = verify.run_suite(p, k, workers=1 if serial else verify.WORKERS)
    try:
        verify.record_run(p, passed, counts, partial=bool(k))
    except Exception as exc:  # an unreachable node already failed the suite; say so once
        p.reporter.warn(f"the run could not be recorded on {p.name}'s master: {str(exc).splitlines()[0]}")
    if not passed:
        raise Exit(f"verification suite failed on {p.name} (report: {p.build_dir / 'junit.xml'})", code=1)
