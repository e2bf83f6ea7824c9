"""Which environment a command line means; stdlib only, so that fast paths need no pydantic."""
from __future__ import annotations

import os

NAME = r"^[a-z][a-z0-9-]{0,30}\Z"  # environment, node and registry user names (\Z: no trailing newline)
DEFAULT_ENV = "test"


def resolve_env(name: str | None) -> str:
    """--env, else $LAPINFRA_ENV, else the default environment."""
    return name or os.environ.get("LAPINFRA_ENV") or DEFAULT_ENV
