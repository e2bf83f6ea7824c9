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
