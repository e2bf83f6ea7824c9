"""config: validate, show and document an environment's merged configuration."""
import json

from invoke import Collection

from tasks._common import ROOT, project, task


@task()
def check(c, env=None):
    """Validate an environment's configuration (environments/, nodes/); needs no Docker.

    Every defect is listed with its file, key and line; exit 1 when there is one.

    Examples:
      invoke config.check --env=staging
      LAPINFRA_ENV=prod invoke config.check
    """
    p = project(c, env)
    print(f"{p.name}: configuration is valid ({len(p.env.nodes)} nodes, {len(p.env.dns_records)} DNS names)")


@task(help={"json": "print JSON instead of YAML-like text"})
def show(c, env=None, json_=False):
    """Print the merged configuration, with nodes and dns_records.

    Examples:
      invoke config.show --env=prod
      invoke config.show --env=prod --json
    """
    data = project(c, env).env.as_json()
    if json_:
        print(json.dumps(data, indent=2))
        return
    import yaml

    print(yaml.safe_dump(data, sort_keys=False).rstrip())


@task()
def doc(c):
    """Regenerate docs/configuration.md from the configuration model (lapinfra/config.py).

    Example:
      invoke config.doc
    """
    from lapinfra import configdoc

    changed = configdoc.write(ROOT)
    print(f"{configdoc.DOC}: {'rewritten' if changed else 'up to date'}")


ns = Collection("config", check, show, doc)
