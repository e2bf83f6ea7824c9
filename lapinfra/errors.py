"""Errors that carry enough context for the user to fix the cause."""


class LapinfraError(Exception):
    """An error the command line reports as one line and exits non-zero with."""


class ConfigError(LapinfraError):
    """A configuration file is malformed or violates the schema.

    Prints as ``environments/test/env.yml: nodes[1].ip: not an IPv4 address``.
    """

    def __init__(self, file: str, key: str, message: str):
        self.file, self.key, self.message = file, key, message
        where = f"{file}: {key}" if key else file
        super().__init__(f"{where}: {message}")


class BuildError(LapinfraError):
    """An image failed to build; the message names it and ends with its log tail."""


class NodeError(LapinfraError):
    """A node could not be started, reached or queried."""
