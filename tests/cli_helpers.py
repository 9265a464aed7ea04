"""Running the real ``spaghettinet`` entry point in-process, for tests that check what a user sees."""

from __future__ import annotations

from spaghettinet.cli import main


def run_cli(capsys, *args: str) -> tuple[int, str, str]:
    """Run ``spaghettinet ARGS``; return (exit code, stdout, stderr). Any exception but SystemExit fails the test.

    Example:
        >>> code, out, err = run_cli(capsys, "validate", "photos")  # doctest: +SKIP
    """
    capsys.readouterr()
    try:
        main(list(args))
        code = 0
    except SystemExit as exc:
        code = exc.code if isinstance(exc.code, int) else 1
    captured = capsys.readouterr()
    return code, captured.out, captured.err
