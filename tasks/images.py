"""images: the base image and make-style builds of images/*/ (and the node image).

A no-op `invoke build` takes a fast path: lapinfra/buildstamp.py compares the stats
of the build's inputs with the stamp the last full build wrote and asks the Docker
engine once whether the recorded images are still there. Anything else takes the
full path (load the configuration, hash every context, read every label).
"""
import sys

from invoke import Collection

from lapinfra import buildstamp
from tasks._common import ROOT, note, project, task


def _say(message: str) -> None:
    """What the Reporter prints for info lines, without loading rich."""
    print(f"  {message}", file=sys.stderr, flush=True)


@task(help={"force": "make it again even when present"})
def base(c, env=None, force=False):
    """Make the base image: pull it when configured and possible, else debootstrap + import.

    Examples:
      invoke images.base
      invoke images.base --force      (make it again, e.g. for the distribution's updates)
    """
    seen = None if force else buildstamp.check(ROOT, env)
    if seen is not None and seen.base_present:
        _say(f"{seen.base_tag}: present")
        return
    buildstamp.forget()  # the base image may change: later checks ask the engine again
    from lapinfra import base as base_image

    p = project(c, env)
    base_image.ensure(p.docker, p.env.base_image, p.reporter, force=force)


@task(pre=[base], help={"force": "rebuild every image, up to date or not",
                        "only": "comma-separated image names, e.g. dns,nginx (default: every image)"})
def build(c, env=None, force=False, only=""):
    """Build images/*/ in FROM order (the base image first); only images whose content hash changed.

    One task with two names: `build` and `images.build`.

    Examples:
      invoke build --env=staging
      invoke build --only=dns,nginx --force
      invoke build start          (build, then deploy what was built: see `start`)
    """
    names = [n.strip() for n in only.split(",") if n.strip()] or None
    seen = None if force or names else buildstamp.check(ROOT, env)
    if seen is not None and seen.up_to_date:
        for tag in seen.tags:
            _say(f"{tag}: up to date")
        _say(f"built 0 of {len(seen.tags)} images (all up to date)")
        note(c, "built", env)
        return
    from lapinfra.images import Builder

    p = project(c, env)
    buildstamp.invalidate(p.root, p.name)
    builder = Builder(p.docker, p.graph, p.reporter, p.env.build.jobs)
    results = builder.build(names, force=force)
    if names is None:
        buildstamp.record(p, builder, results)
    built = [r.tag for r in results if r.built]
    p.reporter.info(f"built {len(built)} of {len(results)} images" + (f": {', '.join(built)}" if built else " (all up to date)"))
    note(c, "built", env)


@task(name="list")
def list_(c, env=None):
    """List images in build order with their content hash and whether they are stale.

    Example:
      invoke images.list --env=staging
    """
    from lapinfra.images import Builder

    p = project(c, env)
    for name, h, stale in Builder(p.docker, p.graph, p.reporter).plan():
        print(f"{p.graph.specs[name].tag:24} {h[:12]}  {'stale' if stale else 'up to date'}")


def other_name(t, doc: str):
    """The same task under a second name (equal to it: named twice on a line, it runs once)."""
    import copy

    twin = copy.copy(t)
    twin.help = dict(t.help)     # invoke hands each help text out once: each name needs its own
    twin.__doc__ = doc
    return twin


ns = Collection("images", base, list_)
ns.add_task(other_name(build, "The same task as `build`, by its images.* name.\n\n    " + build.__doc__), name="build")
