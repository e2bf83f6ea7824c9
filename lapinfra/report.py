"""Progress output: the one place that writes to the terminal for the library.

The library reports through a `Reporter` handed down by the tasks; tests use
`Reporter(quiet=True)` or collect lines with `Recorder`.
"""
from __future__ import annotations

import contextlib
import time
from typing import Iterator

from rich.console import Console


class Reporter:
    def __init__(self, quiet: bool = False, console: Console | None = None):
        self.quiet = quiet
        # soft_wrap: long lines stay whole (logs and tests read them)
        self.console = console or Console(stderr=True, highlight=False, soft_wrap=True)

    def info(self, message: str) -> None:
        if not self.quiet:
            self.console.print(f"  {message}")

    def warn(self, message: str) -> None:
        self.console.print(f"[yellow]![/yellow] {message}")

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        """A long step: a spinner while it runs, then its outcome and duration."""
        start = time.monotonic()
        if self.quiet:
            yield
            return
        try:
            with self.console.status(f"{title} ..."):
                yield
        except BaseException:
            self.console.print(f"[red]✗[/red] {title} [dim]({time.monotonic() - start:.1f}s)[/dim]")
            raise
        self.console.print(f"[green]✓[/green] {title} [dim]({time.monotonic() - start:.1f}s)[/dim]")


class Recorder(Reporter):
    """A reporter that keeps its lines, for tests."""

    def __init__(self):
        super().__init__(quiet=True)
        self.lines: list[str] = []

    def info(self, message: str) -> None:
        self.lines.append(message)

    def warn(self, message: str) -> None:
        self.lines.append(f"! {message}")

    @contextlib.contextmanager
    def step(self, title: str) -> Iterator[None]:
        self.lines.append(title)
        yield
