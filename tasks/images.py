"""images: the base image and make-style builds of images/*/ (and the node image).

A no-op `invoke build` takes a fast path: lapinfra/buildstamp.py compares the stats
of the build's inputs with the stamp the last full build wrote and asks the Docker
engine once whether the recorded images are still there. Anything else takes the
full path (load the configuration, hash every context, read every label).
"""
import sys

from invoke import Collection

from lapinfra import buildstamp
from tasks._common import ROOT, project, task

# Environments whose `build` ran on this command line: `invoke build start` is
# the seed's buildAndStart (tasks/deploy.py).
BUILT: set = set()


def _say(message: str) -> None:
    """What the Reporter prints for info lines, without loading rich."""
    print(f"  {message}", file=sys.stderr, flush=True)


@task(help={"force": "make it again even when present"})
def base(c, env=None, force=False):
    """Make the base image: pull it when configured and possible, else debootstrap + import."""
    seen = None if force else buildstamp.check(ROOT, env)
    if seen is not None and seen.base_present:
        _say(f"{seen.base_tag}: present")
        return
    buildstamp.forget()  # the base image may change: later checks ask the engine again
    from lapinfra import base as base_image

    p = project(env)
    base_image.ensure(p.docker, p.env.base_image, p.reporter, force=force)


@task(pre=[base], help={"force": "rebuild every image, up to date or not", "only": "comma-separated image names"})
def build(c, env=None, force=False, only=""):
    """Build images/*/ in FROM order; only images whose content hash changed."""
    names = [n.strip() for n in only.split(",") if n.strip()] or None
    seen = None if force or names else buildstamp.check(ROOT, env)
    if seen is not None and seen.up_to_date:
        for tag in seen.tags:
            _say(f"{tag}: up to date")
        _say(f"built 0 of {len(seen.tags)} images (all up to date)")
        BUILT.add(env)
        return
    from lapinfra.images import Builder

    p = project(env)
    buildstamp.invalidate(p.root, p.name)
    builder = Builder(p.docker, p.graph, p.reporter, p.env.build.jobs)
    results = builder.build(names, force=force)
    if names is None:
        buildstamp.record(p, builder, results)
    built = [r.tag for r in results if r.built]
    p.reporter.info(f"built {len(built)} of {len(results)} images" + (f": {', '.join(built)}" if built else " (all up to date)"))
    BUILT.add(env)


@task(name="list")
def list_(c, env=None):
    """List images in build order with their content hash and whether they are stale."""
    from lapinfra.images import Builder

    p = project(env)
    for name, h, stale in Builder(p.docker, p.graph, p.reporter).plan():
        print(f"{p.graph.specs[name].tag:24} {h[:12]}  {'stale' if stale else 'up to date'}")


ns = Collection("images", base, build, list_)
