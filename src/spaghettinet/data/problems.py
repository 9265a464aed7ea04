"""Problems found in a dataset: what is wrong, with which file, and how bad it is.

Every check of the dataset stage produces :class:`Problem` records instead of stopping at the first bad file, so a
user sees everything that needs fixing in one run. Errors exclude the file from the outputs (and make the command
exit with code 1 once everything valid has been written); warnings and info keep it.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass
from pathlib import Path

from spaghettinet.errors import DataError
from spaghettinet.stage_files import check_object, typed_field

ERROR = "error"
WARNING = "warning"
INFO = "info"
SEVERITIES = (ERROR, WARNING, INFO)


@dataclass(frozen=True)
class Problem:
    """One thing wrong with one file.

    Args:
        file: the file concerned.
        kind: a stable short name (``"box-outside-image"``, ``"unsafe-xml"``, ...) scripts can match on.
        severity: ``"error"`` (the file is left out), ``"warning"`` (kept, possibly fixed or converted) or
            ``"info"`` (kept as is).
        message: what is wrong and, where there is one, the fix.
    """

    file: Path
    kind: str
    severity: str
    message: str

    def to_dict(self) -> dict:
        """JSON-ready dict (``file`` as a string)."""
        data = asdict(self)
        data["file"] = str(self.file)
        return data

    @classmethod
    def from_dict(cls, data: object, source: str | Path | None = None) -> Problem:
        """The problem :meth:`to_dict` wrote (as stage files hold it).

        Raises:
            DataError: a key missing or unknown, a value that is not a string, an unknown severity.
        """
        what = "a problem record"
        check_object(data, what, ("file", "kind", "severity", "message"), source=source)
        values = {
            key: typed_field(data, key, str, what, source) for key in ("file", "kind", "severity", "message")
        }
        if values["severity"] not in SEVERITIES:
            raise DataError(
                f"{what}: severity {values['severity']!r} is not one of {', '.join(SEVERITIES)}", source
            )
        return cls(Path(values["file"]), values["kind"], values["severity"], values["message"])

    def __str__(self) -> str:
        return f"{self.severity}: {self.file}: {self.message} [{self.kind}]"


class ProblemError(DataError):
    """A :class:`~spaghettinet.errors.DataError` that also says which kind of problem it is.

    Args:
        kind: the :attr:`Problem.kind` to report.
        message: what is wrong.
        path: the file concerned.
    """

    def __init__(self, kind: str, message: str, path: str | Path):
        self.kind = kind
        super().__init__(message, path)

    def to_problem(self) -> Problem:
        """The same error as a :class:`Problem` of severity ``error``."""
        return Problem(Path(self.path), self.kind, ERROR, self.message)


def raise_for_errors(problems: list[Problem], what: str) -> None:
    """Raise a DataError listing every error among ``problems`` (after the valid part has been written).

    Args:
        problems: everything found.
        what: the command's output, for the message ("train.record", "the split").
    """
    errors = [p for p in problems if p.severity == ERROR]
    if errors:
        listing = "\n".join(f"  {p.file}: {p.message}" for p in errors)
        raise DataError(
            f"{len(errors)} file(s) had errors and were left out of {what}; every valid file was written:\n"
            f"{listing}\nRun `spaghettinet validate` on the folder for the full report."
        )
