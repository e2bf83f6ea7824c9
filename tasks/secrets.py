"""secrets: the environment's generated secrets (git-ignored, mode 0600)."""
from invoke import Collection

from tasks._common import YES_HELP, confirmed, project, task


@task()
def path(c, env=None):
    """Print the environment's secrets folder, generating missing secrets first.

    Example:
      ls "$(invoke secrets.path --env=staging)"
    """
    p = project(c, env)
    p.secrets.ensure()
    print(p.secrets.dir.resolve())


@task(help={"name": "the secret to renew, as named in the secrets folder (registry.crt, cd.admin-password, ...)",
            "yes": YES_HELP})
def rotate(c, name, env=None, yes=False):
    """Renew one secret (a new certificate, key or password); say which containers a deploy must recreate.

    The old files stay beside the new ones as FILE.rotated-<UTC time> (the undo: move
    them back). Nothing on the nodes changes until `invoke deploy`, which hands the new
    files to the containers that use them. admin_ed25519, backup_ed25519,
    restic.password and ca.crt are refused: a new file alone would lock something out.

    Examples:
      invoke secrets.rotate --env=staging registry.crt
      invoke secrets.rotate --env=staging registry.crt deploy --env=staging
      invoke secrets.rotate --env=prod cd.admin-password --yes
    """
    from lapinfra import rotate as rotating

    p = project(c, env)
    rotating.check(p.secrets, name)      # an unknown name is refused before anything is asked
    confirmed(p, f"renew {name} of {p.name} (the services using it keep the old one until the next deploy)",
              yes, f"invoke secrets.rotate --env={p.name} {name}")
    for line in rotating.summary(p, rotating.rotate(p, name)):
        p.reporter.info(line)


ns = Collection("secrets", path, rotate)
