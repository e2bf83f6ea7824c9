"""node: the environment's nodes, started and destroyed by Vagrant."""
import sys

from invoke import Collection, Exit

from lapinfra.invoke_ext import remainder
from tasks._common import LOCK_WAIT_HELP, YES_HELP, confirmed, locked, project, task
from tasks.images import build
from tasks.render import render


def Nodes(p):  # noqa: N802 - lazy: fabric and paramiko load only for node tasks
    from lapinfra.nodes import Nodes as _Nodes

    return _Nodes(p)


NODE_HELP = {"node": "one node by name, as in nodes/<env>.yml (default: all of the environment's nodes)"}


@task(pre=[build, render], help=NODE_HELP)
def up(c, env=None, node=None):
    """Start the environment's nodes with Vagrant and pin their SSH host keys.

    Builds and renders first (the Vagrantfile is rendered). Undo: `invoke node.down`.

    Examples:
      invoke node.up --env=staging
      invoke node.up --env=staging --node=backup
    """
    from lapinfra import nodeup

    nodeup.up(project(c, env), node)


@task(help={**NODE_HELP, "keep_data": "keep the nodes' /data volumes",
            "destroy_backups": "also delete the backup node's repository (kept otherwise)", "yes": YES_HELP})
def down(c, env=None, node=None, keep_data=False, destroy_backups=False, yes=False):
    """Destroy nodes (all of the environment's, or --node), their volumes and network; the backups stay unless asked.

    Cannot be undone except from backups: `invoke up` makes new nodes, `invoke restore`
    brings /data back from the backup node's repository, which this keeps unless
    --destroy-backups.

    Examples:
      invoke node.down --env=test
      invoke node.down --env=staging --node=master --keep-data
      invoke node.down --env=test --destroy-backups --yes
    """
    p = project(c, env)
    which = f"node {node}" if node else "every node"
    confirmed(p, f"destroy {which} of {p.name}" + ("" if keep_data else " with its /data")
              + (" and the backup repository" if destroy_backups else ""), yes,
              f"invoke node.down --env={p.name}" + (f" --node {node}" if node else ""))
    Nodes(p).down(node, keep_data=keep_data, **down_options(destroy_backups))


def down_options(destroy_backups: bool) -> dict:
    """Nodes.down's keyword for the backups, given only when asked (older Nodes lack it)."""
    return {"destroy_backups": True} if destroy_backups else {}


@task()
def status(c, env=None):
    """Show each node's role, address, state and whether SSH answers; with workers, the swarm's view.

    Example:
      invoke node.status --env=staging
    """
    p = project(c, env)
    rows = Nodes(p).status()
    for row in rows:
        print(f"{row['name']:12} {row['role']:8} {row['ip']:16} {row['state']:12} ssh: {row['ssh']}")
    if p.env.workers:
        from lapinfra import swarm

        master = next(r for r in rows if r["role"] == "master")
        members = swarm.status(p) if master["ssh"] == "ok" else []
        print(f"\nswarm (from the manager, {p.env.master.name}):" if members else "\nswarm: no manager answers (is the master up?)")
        for m in members:
            print(f"  {m['hostname']:12} {m['role']:8} {m['state']:8} availability: {m['availability']:7} {m['address']}"
                  + ("  leader" if m["leader"] else ""))


@task(pre=[build], help={"lock_wait": LOCK_WAIT_HELP})
def seed(c, env=None, lock_wait=0):
    """Seed the master with images: carry the base, registry and backup images onto it (docker save | docker load).

    The first install's path: a new master has no registry to pull from yet.

    Example:
      invoke node.seed --env=staging
    """
    from lapinfra import startstop

    p = project(c, env)
    with locked(p, "node.seed", lock_wait):
        startstop.seed_node(p)


@task(help={"node": "node name (default: the master)"})
def ssh(c, env=None, node=None):
    """Run the command after `--` on the master (or --node) over SSH; exit with its code.

    Examples:
      invoke node.ssh --env=staging -- docker ps
      invoke node.ssh --env=staging --node=backup -- df -h /data
    """
    nodes = Nodes(project(c, env))
    command = remainder(c)
    if not command:
        raise Exit("usage: invoke node.ssh --env=X [--node NAME] -- COMMAND", code=2)
    target = nodes.select(node)[0] if node else None
    code = nodes.run(command, target)
    sys.stdout.flush()
    if code:
        raise Exit(code=code)


ns = Collection("node", up, down, status, seed, ssh)
