"""Shared by the task modules: the task decorator and building a Project."""
from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

from invoke import Exit, task as invoke_task

from lapinfra.errors import LapinfraError

if TYPE_CHECKING:
    from lapinfra.project import Project

# The checkout that holds this tasks/ folder: a copy of the repository is a project of its own.
ROOT = Path(__file__).resolve().parent.parent

ENV_HELP = "environment (environments/<env>/); one --env applies to every task of the command line; default: test or $LAPINFRA_ENV"


def task(*args, help=None, **kwargs):
    """invoke's @task, documenting --env and turning LapinfraError into one line and exit 1."""
    def wrap(body):
        import inspect

        params = inspect.signature(body).parameters
        helps = {**({"env": ENV_HELP} if "env" in params else {}), **(help or {})}

        @functools.wraps(body)
        def run(c, *a, **kw):
            try:
                return body(c, *a, **kw)
            except LapinfraError as exc:
                raise Exit(f"error: {exc}", code=1) from None

        return invoke_task(*args, help=helps, **kwargs)(run)

    return wrap


@functools.lru_cache(maxsize=None)
def project(env: str | None) -> "Project":
    """One Project per environment and command line, shared by its tasks."""
    # imported here: pydantic, rich and friends cost a third of a second, and
    # `invoke --list` or a no-op `invoke build` (lapinfra/buildstamp.py) need none of them
    from lapinfra.project import Project

    return Project(env, root=ROOT)


LOCK_WAIT_HELP = ("seconds to wait for another command that changes the environment (default 0: "
                  "refuse at once, naming it)")
YES_HELP = "confirm without asking (a protected environment asks on a terminal and refuses without --yes elsewhere)"


def locked(p: "Project", purpose: str, lock_wait=0):
    """The environment's lock around a task's changes (lapinfra/lock.py); re-entrant."""
    from lapinfra import lock

    return lock.env_lock(p, purpose, wait=float(lock_wait or 0))


def confirmed(p: "Project", action: str, yes: bool, retry: str, explicit: bool = True) -> None:
    """Ask first on a protected environment (lapinfra/confirm.py); raise to stop."""
    from lapinfra import confirm

    console = getattr(p.reporter, "console", None)
    confirm.require(p.name, p.env.protected, action, yes=yes, explicit=explicit, reporter=p.reporter,
                    ask=console.input if console is not None else None, retry=retry)
