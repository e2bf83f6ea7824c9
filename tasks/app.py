"""app: applications (apps/<name>/app.yml) as swarm services on the worker nodes."""
import json

from invoke import Collection

from tasks._common import LOCK_WAIT_HELP, locked, project, task
from tasks.images import build

APP_HELP = {"name": "the application: a folder apps/<name>/ with an app.yml"}


@task(pre=[build], help={**APP_HELP, "image": "deploy this image of the workstation's engine instead of app.yml's (a hotfix, a test)",
                          "lock_wait": LOCK_WAIT_HELP})
def deploy(c, name, env=None, image="", lock_wait=0):
    """Push an application's image to the environment's registry and roll its swarm service to it (rolls back on failure).

    Examples:
      invoke app.deploy hello --env=staging
      invoke app.deploy --name=hello --image=hello:hotfix-1
    """
    from lapinfra import apps

    p = project(c, env)
    with locked(p, f"app.deploy {name}", lock_wait):
        out = apps.deploy(p, name, image or None)
    p.reporter.info(f"app {out['app']}: {out['outcome']} ({out['image']}), served as {name}.{p.env.domain}")


@task(help={"json": "print JSON"})
def status(c, env=None, json_=False):
    """Each deployed application: image, replicas running of wanted, the nodes they run on, the last update's state.

    Examples:
      invoke app.status --env=staging
      invoke app.status --json
    """
    from lapinfra import apps

    rows = apps.status(project(c, env))
    if json_:
        print(json.dumps(rows, indent=2))
        return
    if not rows:
        print("no application deployed")
    for r in rows:
        print(f"{r['app']:12} {r['running']}/{r['replicas']} running on {', '.join(r['nodes']) or '-':24} update: {r['update']:18} {r['image']}")


@task(help={**APP_HELP, "lock_wait": LOCK_WAIT_HELP})
def remove(c, name, env=None, lock_wait=0):
    """Remove an application's swarm service and its record (`app.deploy` brings it back).

    Examples:
      invoke app.remove hello --env=staging
      invoke app.remove --name=hello
    """
    from lapinfra import apps

    p = project(c, env)
    with locked(p, f"app.remove {name}", lock_wait):
        apps.remove(p, name)


ns = Collection("app", deploy, status, remove)
