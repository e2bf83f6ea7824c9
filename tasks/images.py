"""images: the base image and make-style builds of images/*/ (and the node image)."""
from invoke import Collection

from tasks._common import project, task


@task(help={"force": "make it again even when present"})
def base(c, env=None, force=False):
    """Make the base image: pull it when configured and possible, else debootstrap + import."""
    from lapinfra import base as base_image

    p = project(env)
    base_image.ensure(p.docker, p.env.base_image, p.reporter, force=force)


@task(pre=[base], help={"force": "rebuild every image, up to date or not", "only": "comma-separated image names"})
def build(c, env=None, force=False, only=""):
    """Build images/*/ in FROM order; only images whose content hash changed."""
    from lapinfra.images import Builder

    p = project(env)
    names = [n.strip() for n in only.split(",") if n.strip()] or None
    results = Builder(p.docker, p.graph, p.reporter, p.env.build.jobs).build(names, force=force)
    built = [r.tag for r in results if r.built]
    p.reporter.info(f"built {len(built)} of {len(results)} images" + (f": {', '.join(built)}" if built else " (all up to date)"))


@task(name="list")
def list_(c, env=None):
    """List images in build order with their content hash and whether they are stale."""
    from lapinfra.images import Builder

    p = project(env)
    for name, h, stale in Builder(p.docker, p.graph, p.reporter).plan():
        print(f"{p.graph.specs[name].tag:24} {h[:12]}  {'stale' if stale else 'up to date'}")


ns = Collection("images", base, build, list_)
