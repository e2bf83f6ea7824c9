"""Errors that carry enough context for the user to fix the cause."""
from __future__ import annotations


class LapinfraError(Exception):
    """An error the command line reports as one line and exits non-zero with."""


class ConfigError(LapinfraError):
    """A configuration file is malformed or violates the schema.

    Prints as ``environments/test/env.yml: nodes[1].ip: not an IPv4 address (line 7)``:
    the file (for a missing key: the file where it belongs), the key, what is wrong,
    and the line the offending value was written on, when there is one.

    A check that finds several defects raises one ConfigError listing them all
    (`ConfigError.of`); its file, key and message are those of the first, and
    ``errors`` holds every one.
    """

    def __init__(self, file: str, key: str, message: str, line: int | None = None):
        self.file, self.key, self.message, self.line = file, key, message, line
        self.errors: list[ConfigError] = [self]
        super().__init__(self.one_line())

    def one_line(self) -> str:
        where = f"{self.file}: {self.key}" if self.key else self.file
        at = f" (line {self.line})" if self.line else ""
        return f"{where}: {self.message}{at}"

    @classmethod
    def of(cls, errors: list["ConfigError"]) -> "ConfigError":
        """One error for all of ``errors`` (at least one), in the order given."""
        first = errors[0]
        if len(errors) == 1:
            return first
        combined = cls(first.file, first.key, first.message, first.line)
        combined.errors = list(errors)
        combined.args = (f"{len(errors)} configuration errors:\n" + "\n".join(f"  {e.one_line()}" for e in errors),)
        return combined

    def __str__(self) -> str:
        return str(self.args[0])


class BuildError(LapinfraError):
    """An image failed to build; the message names it and ends with its log tail."""


class NodeError(LapinfraError):
    """A node could not be started, reached or queried."""
