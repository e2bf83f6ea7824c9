"""render: every template for one environment, checked by the real tools."""
from tasks._common import project, task
from tasks.images import build


@task(pre=[build], help={"no_check": "skip validation by named-checkconf/named-checkzone and ruby -c"})
def render(c, env=None, no_check=False):
    """Render every Jinja template into build/<env>/ and validate the output."""
    from lapinfra import render as rendering

    p = project(env)
    p.secrets.ensure()
    out = rendering.render_all(p)
    p.reporter.info(f"rendered {len(out.files)} files into {p.build_dir} ({len(out.changed)} changed)")
    if not no_check:
        for checked in rendering.validate(p, out):
            p.reporter.info(f"checked: {checked}")
