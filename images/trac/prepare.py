"""Bring the Trac environment in line with the rendered configuration.

Run by the entrypoint as the trac user, on every start, after the environment
exists:  prepare.py ENV_DIR RENDERED_INI

- the environment's conf/trac.ini inherits RENDERED_INI, and every option that
  RENDERED_INI sets is removed from conf/trac.ini, so the rendered (per
  environment) value wins, also in an environment restored from elsewhere;
- the database and the default wiki pages are upgraded when the installed Trac
  is newer than the environment;
- anonymous users get the ticket permissions (granting only what is missing).
Idempotent: a second run changes nothing.
"""
import configparser
import subprocess
import sys

from trac.config import Configuration
from trac.env import Environment
from trac.perm import PermissionSystem

ANONYMOUS_ACTIONS = ("TICKET_VIEW", "TICKET_CREATE", "TICKET_APPEND", "REPORT_VIEW", "WIKI_VIEW", "TIMELINE_VIEW",
                     "ROADMAP_VIEW", "MILESTONE_VIEW", "SEARCH_VIEW")


def log(msg):
    print(f"prepare: {msg}", file=sys.stderr, flush=True)


def sync_config(env_dir, rendered):
    rendered_ini = configparser.RawConfigParser(interpolation=None)
    rendered_ini.optionxform = str
    rendered_ini.read(rendered, encoding="utf-8")
    config = Configuration(f"{env_dir}/conf/trac.ini")
    changed = []
    if config.parser.get("inherit", "file", fallback=None) != rendered:
        config.set("inherit", "file", rendered)
        changed.append("inherit.file")
    for section in rendered_ini.sections():
        for option in rendered_ini.options(section):
            if config.parser.has_option(section, option):
                config.remove(section, option)
                changed.append(f"{section}.{option}")
    if changed:
        config.save()
        log(f"conf/trac.ini updated ({', '.join(changed)}): it inherits {rendered}, whose options win")


def main(env_dir, rendered):
    sync_config(env_dir, rendered)
    env = Environment(env_dir)
    try:
        if env.needs_upgrade():
            log("environment older than the installed Trac: upgrading (database backup in db/)")
            subprocess.run(["trac-admin", env_dir, "upgrade"], check=True)
            subprocess.run(["trac-admin", env_dir, "wiki", "upgrade"], check=True)
        perms = PermissionSystem(env)
        have = {action for user, action in perms.get_all_permissions() if user == "anonymous"}
        for action in ANONYMOUS_ACTIONS:
            if action not in have:
                perms.grant_permission("anonymous", action)
                log(f"granted {action} to anonymous")
    finally:
        env.shutdown()


if __name__ == "__main__":
    main(*sys.argv[1:])
