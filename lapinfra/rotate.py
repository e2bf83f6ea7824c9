"""`invoke secrets.rotate --env=X NAME`: renew one secret of the environment.

The new secret is generated into ``secrets/<env>/`` the way the first one was
(lapinfra/secrets.py); each file it replaces is kept beside it as
``<file>.rotated-<UTC time>`` (the undo: move it back). Nothing on the nodes changes:
the next `invoke deploy` hands the new files to the services that use them (their
spec hash covers their secrets' content, so exactly those containers are recreated).
Some secrets are not renewed this way, because a new file alone would lock
something out (NOT_ROTATED says what and why).
"""
from __future__ import annotations

import os
import time
from dataclasses import dataclass, field

from . import services as svc
from .errors import LapinfraError

NOT_ROTATED = {
    "admin_ed25519": "it is root's key on every node (authorized when `invoke node.up` made the node) and "
                     "gitolite's admin: a new key would lock lapinfra out of the nodes",
    "backup_ed25519": "the backup node authorizes it for its sftp user from `invoke node.up` on, not from a deploy",
    "restic.password": "the backup repository is encrypted with it: a new file would make every snapshot unreadable "
                       "(restic's `key add` and `key remove` change a repository's password)",
    "ca.crt": "every node's engine (and every workstation that trusts the CA) holds it, and it signed registry.crt "
              "and proxy.crt: a new CA is made by hand (docs/security.md)",
}

# Who holds a secret besides the containers a deploy hands it to: what the deploy does not renew.
ALSO = {
    "registry.password": "this machine's pushes use the new password at once: deploy before any `invoke start`",
    "registry-pull.password": "each application's swarm service carries the old one: `invoke app.deploy` them again",
    "tsig-node.key": "nodes register with the new key from the deploy on",
    "tsig-host.key": "hosts that register themselves need the new key",
    "tsig-pc.key": "workstations that register themselves need the new key (`nsupdate -k tsig-pc.key`)",
    "cd.admin-password": "administrators log in to the CD server with the new password",
    "cache.password": "administrators use the new password on apt-cacher-ng's pages",
    "maven.password": "build machines that upload to the Maven repository need the new password",
    "artifact.password": "build machines that upload artifacts need the new password",
}


@dataclass
class Rotation:
    name: str
    files: list[str]                                    # the files renewed
    kept: list[str] = field(default_factory=list)       # the old ones, renamed beside them
    containers: list[str] = field(default_factory=list)  # the containers a deploy recreates with them
    also: str = ""


def known(store) -> list[str]:
    """Every secret of an environment, by the name rotate takes."""
    return [name for name, _ in store._generators()]


def rotatable(store) -> list[str]:
    return [name for name in known(store) if name not in NOT_ROTATED]


def check(store, name: str) -> None:
    """Refuse a name that is not a secret, or one this task does not renew, saying which it takes."""
    if name not in known(store):
        raise LapinfraError(f"{store.env.name} has no secret {name!r}; the secrets secrets.rotate renews: "
                            f"{', '.join(rotatable(store))}")
    if name in NOT_ROTATED:
        raise LapinfraError(f"{name} is not renewed by secrets.rotate: {NOT_ROTATED[name]}. Nothing was changed")


def rotate(project, name: str, stamp: str | None = None) -> Rotation:
    """Renew the secret ``name`` in the environment's secrets folder; what uses it."""
    store = project.secrets
    check(store, name)
    store.ensure()                      # the others exist (registry.crt is signed with ca.key)
    files = dict(store._generators())[name]()     # all generated before anything is replaced
    stamp = stamp or time.strftime("%Y%m%dT%H%M%SZ", time.gmtime())
    result = Rotation(name, sorted(files), also=ALSO.get(name, ""))
    for file, content in files.items():
        store._write(f"{file}.new", content)
    for file in files:
        current = store.path(file)
        if current.exists():
            os.replace(current, store.path(f"{file}.rotated-{stamp}"))
            result.kept.append(f"{file}.rotated-{stamp}")
        os.replace(store.path(f"{file}.new"), current)
    result.containers = [service.container for service in svc.services(project.env) if set(service.secrets.values()) & set(files)]
    return result


def summary(project, r: Rotation) -> list[str]:
    """What was renewed, where the old files are, and what to do next."""
    env = project.name
    lines = [f"renewed {r.name} of {env}: {', '.join(r.files)} in {project.secrets.dir}"
             + (f" (the old ones kept as {', '.join(r.kept)})" if r.kept else "")]
    if r.containers:
        lines.append(f"redeploy what uses it: `invoke deploy --env={env}` recreates {', '.join(r.containers)} "
                     f"with the new files (until then they keep the old ones)")
    else:
        lines.append(f"no container of {env} is handed {r.name}")
    if r.also:
        lines.append(f"also: {r.also}")
    return lines
