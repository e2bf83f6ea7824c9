"""`invoke node.up`: the nodes booted (lapinfra/nodes.py), then what they take part in.

1. boot     `vagrant up`, host keys pinned, SSH answers (Nodes.boot)
2. swarm    where the environment has workers and the master runs: the master manages
            the swarm, the workers join it (lapinfra/swarm.py)
3. names    <node>.node.<domain> registered, where the master's DNS already runs
            (lapinfra/ddns.py; not running yet is said, not an error)
"""
from __future__ import annotations

from . import ddns, swarm
from .nodes import Nodes


def up(project, name: str | None = None) -> None:
    """Bring up the environment's nodes (all, or ``name``)."""
    nodes = Nodes(project)
    nodes.boot(name)
    env = project.env
    if env.workers and nodes.state(env.master) == "running":
        for node, action in swarm.ensure(project).items():
            project.reporter.info(f"swarm: {node}: {action}")
    # a node that comes up registers its name, where the master's DNS already runs
    ddns.register_nodes(project, expect_down=True)
