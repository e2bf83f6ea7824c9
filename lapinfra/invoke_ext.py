"""invoke integration: one ``--env`` for the whole command line.

invoke hands a flag only to the task it follows, so ``invoke build test deploy
--env=prod`` would build and test the default environment and deploy prod.
`EnvExecutor` (configured in ``invoke.yaml`` as ``tasks.executor_class``) finds
``--env`` wherever it was given and hands it to every task of the command line
that takes one, pre-tasks included. It also completes every call's keyword
arguments with their defaults, so that a task reached as a ``pre=`` dependency
and the same task named on the command line compare equal and run once.
"""
from __future__ import annotations

import inspect
from typing import Any

from invoke import Call, Executor
from invoke.exceptions import Exit
from invoke.parser import ParserContext

ENV_ARG = "env"


def chosen_env(contexts: list[Any]) -> str | None:
    """The --env value given on the command line (anywhere), or None."""
    values = set()
    for ctx in contexts:
        if isinstance(ctx, ParserContext) and ENV_ARG in ctx.args and ctx.args[ENV_ARG].got_value:
            values.add(ctx.args[ENV_ARG].value)
    if "" in values:
        raise Exit("--env is empty: name an environment (a folder environments/<name>/), or leave --env out "
                   "for $LAPINFRA_ENV, else test", code=2)
    if len(values) > 1:
        raise Exit(f"conflicting --env values on one command line: {', '.join(sorted(values))}", code=2)
    return values.pop() if values else None


def complete_kwargs(call: Call, env: str | None) -> Call:
    """Fill in defaults for every keyword argument, and the command line's env."""
    params = list(inspect.signature(call.task.body).parameters.values())[1:]
    kwargs = {p.name: p.default for p in params if p.default is not inspect.Parameter.empty}
    kwargs.update(call.kwargs)
    if env is not None and ENV_ARG in kwargs:
        kwargs[ENV_ARG] = env
    call.kwargs = kwargs
    return call


class EnvExecutor(Executor):
    env: str | None = None

    def normalize(self, tasks):
        _remember_remainder(self)
        _help_asked(list(tasks))
        self.env = chosen_env(list(tasks))
        return super().normalize(tasks)

    def expand_calls(self, calls):
        return [complete_kwargs(call, self.env) for call in super().expand_calls(calls)]


def remainder(c) -> str:
    """What followed ``--`` on the command line (EnvExecutor puts it in the config)."""
    return c.config.get("lapinfra_remainder", "") or ""


def _remember_remainder(executor: EnvExecutor) -> None:
    core = getattr(executor, "core", None)
    executor.config.lapinfra_remainder = getattr(core, "remainder", "") if core is not None else ""


def _help_asked(contexts: list[Any]) -> None:
    """invoke hands `--help` after a task with a positional argument (`invoke app.deploy
    --help`) to that argument: show the task's help, as asked, instead of running it."""
    import os
    import sys

    for ctx in contexts:
        if isinstance(ctx, ParserContext) and any(a.value in ("--help", "-h") for a in ctx.positional_args):
            os.execv(sys.executable, [sys.executable, "-m", "invoke", "--help", ctx.name])
