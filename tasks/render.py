"""render: every template for one environment, checked; needs nothing but the configuration."""
from tasks._common import noted, project, task


@task(help={"no_check": "skip every validator (dnspython, named-checkconf/named-checkzone, ruby -c); default: off"})
def render(c, env=None, no_check=False):
    """Render every Jinja template into build/<env>/ and validate the output.

    Needs no Docker engine: bind9's named-checkconf/named-checkzone run in the
    infra/dns image when it is there, and are reported as skipped when it is not.
    After `build` on the same command line (as in `up`, `deploy`, `node.up`, `plan`)
    they must run: a missing image or engine is then an error.

    Examples:
      invoke render --env=staging          look at build/staging/ without Docker
      invoke build render --env=staging    the same, with bind9's checks
    """
    from lapinfra import render as rendering

    p = project(c, env)
    p.secrets.ensure()
    out = rendering.render_all(p)
    p.reporter.info(f"rendered {len(out.files)} files into {p.build_dir} ({len(out.changed)} changed)")
    if no_check:
        p.reporter.info("not checked (--no-check)")
        return
    validation = rendering.validate(p, out, need_image=noted(c, "built", env))
    for checked in validation.checked:
        p.reporter.info(f"checked: {checked}")
    for skipped in validation.skipped:
        p.reporter.warn(f"not checked: {skipped}")
