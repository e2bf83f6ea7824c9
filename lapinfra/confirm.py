"""Destructive commands ask first on a protected environment.

On an environment with ``protected: true`` (prod), ``node.down``, ``restore``,
``rollback --data``, ``snapshot.fetch --to``, ``dr.recover`` and ``stop`` ask for
the environment's name on a terminal and refuse without ``--yes`` when there is
none (CI: stdin is not a tty). Every one of them accepts ``--yes`` everywhere;
on an environment that is not protected they never ask.
"""
from __future__ import annotations

import sys
from typing import Callable

from .errors import LapinfraError

GO, ASK, REFUSE = "go", "ask", "refuse"


def decide(protected: bool, yes: bool, interactive: bool, explicit: bool = True) -> str:
    """GO, ASK or REFUSE for one destructive command.

    ``explicit`` is False when the environment was not named by the user but taken
    by default (snapshot.fetch without --to): a protected one is then refused even
    with --yes."""
    if not protected:
        return GO
    if not explicit:
        return REFUSE
    if yes:
        return GO
    return ASK if interactive else REFUSE


def require(env: str, protected: bool, action: str, yes: bool = False, explicit: bool = True,
            interactive: bool | None = None, ask: Callable[[str], str] | None = None, reporter=None,
            retry: str = "") -> None:
    """Go on, or raise LapinfraError; on a terminal, ask for the environment's name.

    ``action`` says what will happen ("restore /data of prod from snapshot 1a2b3c4d");
    ``retry`` is the command line to give with --yes."""
    interactive = sys.stdin.isatty() if interactive is None else interactive
    decision = decide(protected, yes, interactive, explicit)
    if decision == GO:
        return
    if decision == REFUSE:
        if not explicit:
            raise LapinfraError(f"{env} is protected and was not named: give it explicitly (--to={env}) "
                                f"to {action}, and confirm")
        how = f" (`{retry} --yes`)" if retry else ""
        raise LapinfraError(f"{env} is protected: {action} needs confirmation, and stdin is not a terminal; "
                            f"add --yes to confirm{how}. Nothing was changed")
    if reporter is not None:
        reporter.warn(f"{env} is protected: this will {action}")
    answer = prompt(f"Type the environment's name ({env}) to go on, anything else to stop: ", ask)
    if answer.strip() != env:
        raise LapinfraError(f"not confirmed (typed {answer.strip()!r}, not {env!r}): nothing was changed")


def prompt(question: str, ask: Callable[[str], str] | None = None) -> str:
    """One answer from the terminal ("" at end of input)."""
    try:
        return (ask or input)(question)
    except (EOFError, KeyboardInterrupt):
        return ""
