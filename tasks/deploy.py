"""deploy, start, stop, restart and up: the seed's scripts as tasks."""
from tasks._common import project, task
from tasks.images import base, build
from tasks.node import up as node_up
from tasks.render import render
from tasks.verify import test


@task(pre=[build, render])
def deploy(c, env=None):
    """Push changed images as infra/<commit>/<name> through an SSH tunnel and start them."""
    from lapinfra import deploy as deploying

    p = project(env)
    result = deploying.deploy(p)
    changed = {k: v for k, v in result.containers.items() if v != "kept"}
    p.reporter.info(f"release {result.release}: pushed {len(result.pushed)} images, "
                    f"containers changed: {', '.join(f'{k} {v}' for k, v in changed.items()) or 'none'}")


@task()
def start(c, env=None):
    """The seed's start: the registry first, then the release's containers from it."""
    from lapinfra import deploy as deploying

    deploying.start(project(env))


@task()
def stop(c, env=None):
    """Remove every infra_* container on the master (selected through the Docker API)."""
    from lapinfra import deploy as deploying

    deploying.stop(project(env))


@task(pre=[stop], post=[start])
def restart(c, env=None):
    """stop, then start."""


@task(pre=[base, build, render, node_up, deploy, test])
def up(c, env=None):
    """The main job: base image, builds, nodes, deploy and verification, one command."""
    project(env).reporter.info("infrastructure is up and verified")
