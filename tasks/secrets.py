"""secrets: the environment's generated secrets (git-ignored, mode 0600)."""
from invoke import Collection

from tasks._common import project, task


@task()
def path(c, env=None):
    """Print the environment's secrets folder, generating missing secrets first.

    Example:
      ls "$(invoke secrets.path --env=staging)"
    """
    p = project(env)
    p.secrets.ensure()
    print(p.secrets.dir.resolve())


ns = Collection("secrets", path)
