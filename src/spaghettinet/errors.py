"""The one exception type users can cause, and how the CLI reports it.

Every error a user can trigger (a bad file, a wrong argument, a checkpoint of the wrong variant) is raised as a
:class:`SpaghettiError` whose message names the file and, where there is one, the fix. The CLI prints the message as
one line and exits with :attr:`SpaghettiError.exit_code`; no traceback is shown unless ``--debug`` is given.
"""

from __future__ import annotations

from pathlib import Path

EXIT_DATA = 1
EXIT_USAGE = 2


class SpaghettiError(Exception):
    """An error the user can fix: bad input data, a bad file, an impossible request.

    Args:
        message: what went wrong and, where possible, how to fix it.
        path: the file or folder concerned; it is put in front of the message.
        exit_code: 1 for data problems (the default), 2 for usage errors.
    """

    exit_code: int = EXIT_DATA

    def __init__(self, message: str, path: str | Path | None = None, exit_code: int | None = None):
        self.message = message
        self.path = None if path is None else Path(path)
        if exit_code is not None:
            self.exit_code = exit_code
        super().__init__(str(self))

    def __str__(self) -> str:
        return f"{self.path}: {self.message}" if self.path is not None else self.message


class DataError(SpaghettiError):
    """Input data (images, annotations, records, label maps, configs) is unusable; exit code 1."""

    exit_code = EXIT_DATA


class UsageError(SpaghettiError):
    """The command was asked for something that cannot be done as asked; exit code 2."""

    exit_code = EXIT_USAGE
