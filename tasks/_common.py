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

ENV_HELP = ("environment: a folder environments/<env>/ (and nodes/<env>.yml); one --env applies to every "
            "task of the command line; default: $LAPINFRA_ENV when set, else test")


def task(*args, help=None, required=(), **kwargs):
    """invoke's @task, with help texts that say everything, and LapinfraError as one line and exit 1.

    Every argument's help names it as required (``required``, or a positional one:
    no default) or shows its default, so that ``invoke --help TASK`` is complete;
    --env is documented once, here."""
    def wrap(body):
        import inspect

        params = list(inspect.signature(body).parameters.values())[1:]
        texts = {**({"env": ENV_HELP} if any(p.name == "env" for p in params) else {}), **(help or {})}
        helps = {p.name: argument_help(p, _text_for(texts, p.name), p.name in required) for p in params}

        @functools.wraps(body)
        def run(c, *a, **kw):
            try:
                return body(c, *a, **kw)
            except LapinfraError as exc:
                raise Exit(f"error: {exc}", code=1) from None

        return invoke_task(*args, help=helps, **kwargs)(run)

    return wrap


def _text_for(texts: dict, name: str) -> str:
    """The help written for a parameter, keyed by its name or its flag (json_ -> json)."""
    return texts.get(name, texts.get(name.strip("_"), ""))


def argument_help(param, text: str, required: bool) -> str:
    """One argument's help: what it is, then "required" or its default (unless the text says it)."""
    import inspect

    if param.default is inspect.Parameter.empty:
        return f"{text} (required; may also be given without its flag, as the first word after the task)".strip()
    if required:
        return f"{text} (required)".strip()
    if "default" in text:
        return text
    return f"{text} (default: {shown_default(param.default)})".strip()


def shown_default(value) -> str:
    if value is True:
        return "on"
    if value is False:
        return "off"
    if value is None or value == "":
        return "none"
    return str(value)


def project(c, env: str | None) -> "Project":
    """One Project per environment and command line, shared by its tasks: kept in the command
    line's invoke config (``c``'s), like the facts they tell each other (`note`). A task called
    without a context, as a test does, has no command line to share one with: it gets its own."""
    if c is None:
        return load_project(env)
    projects = c.config.get(PROJECTS)
    if projects is None:
        projects = CommandLineProjects()
        c.config[PROJECTS] = projects
    return projects.get(env)


PROJECTS = "lapinfra_projects"     # the key of the command line's CommandLineProjects in its invoke config


class CommandLineProjects:
    """The Projects of one command line, by environment. invoke merges a command line's config
    anew before each of its tasks, copying every value (copy.copy): the copy of this one is itself,
    so every task of the line finds the same Projects."""

    def __init__(self):
        self._by_env: dict[str | None, "Project"] = {}

    def __copy__(self) -> "CommandLineProjects":
        return self

    def get(self, env: str | None) -> "Project":
        if env not in self._by_env:
            self._by_env[env] = load_project(env)
        return self._by_env[env]


def load_project(env: str | None) -> "Project":
    """A new Project of ``env`` (None: $LAPINFRA_ENV, else test)."""
    # imported here: pydantic, rich and friends cost a third of a second, and
    # `invoke --list` or a no-op `invoke build` (lapinfra/buildstamp.py) need none of them
    import os

    from lapinfra.errors import ConfigError
    from lapinfra.project import Project

    try:
        return Project(env, root=ROOT)
    except ConfigError as exc:
        if env or exc.key != "--env" or not os.environ.get("LAPINFRA_ENV"):
            raise
        # no --env given: the name came from the environment variable, say so
        raise ConfigError(exc.file, "$LAPINFRA_ENV", exc.message, exc.line) from None


# What the tasks of one command line tell each other, kept in that command line's invoke
# config (one Config, shared by every task the executor runs for it), never in a module:
# a second command line in the same process, or a test, starts with none of it.
#   "built"     environments whose `build` ran: `invoke build start` deploys what it built
#               (tasks/deploy.py), and `render` after it runs every check (tasks/render.py)
#   "verified"  environments a deploy verified (the suite ran as its last step): `up` skips the suite
FACTS = ("built", "verified")


def note(c, fact: str, env: str | None) -> None:
    """Remember for the rest of the command line that ``fact`` (one of FACTS) holds for ``env``
    (a task called without a context, as a test does, has no command line to tell)."""
    key = _fact_key(fact)
    if c is None:
        return
    seen = list(c.config.get(key, ()))
    if env not in seen:
        c.config[key] = [*seen, env]     # set anew: invoke copies config values when it merges


def noted(c, fact: str, env: str | None) -> bool:
    """Did a task of this command line `note` ``fact`` for ``env``?"""
    return c is not None and env in c.config.get(_fact_key(fact), ())


def _fact_key(fact: str) -> str:
    if fact not in FACTS:
        raise ValueError(f"{fact!r} is not one of {FACTS}")
    return f"lapinfra_{fact}"


LOCK_WAIT_HELP = ("seconds to wait for another command that changes the environment, at most 86400 (default 0: "
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
