"""status: the environment at a glance, as the status page (status.<domain>) shows it."""
import json
import os
import sys

from tasks._common import project, task


@task(help={"json": "print the summary as JSON, for scripts"})
def status(c, env=None, json_=False):
    """The environment at a glance: release, every service (container, health, checks, names), last run, backups, swarm.

    The summary the status container (infra_status) keeps for the page at status.<domain>,
    with the containers' states as the node's engine reports them now. It replaces nothing:
    releases, snapshot.list, node.status and app.status stay. Colour only on a terminal
    (NO_COLOR turns it off). See docs/status.md.

    Examples:
      invoke status --env=test
      invoke status --env=prod --json | jq '.services[] | select(.ok | not) | .name'
    """
    from lapinfra import status as statuspage

    summary = statuspage.current(project(c, env))
    if json_:
        print(json.dumps(summary, indent=2, sort_keys=True))
        return
    colour = sys.stdout.isatty() and not os.environ.get("NO_COLOR")
    for line in statuspage.table_lines(summary, colour=colour):
        print(line)
