"""The ``spaghettinet`` command line: a thin layer over the Python API, one module per pipeline stage.

Each stage module (``cli/data.py``, ``cli/model.py``, ...) exposes ``register(app)`` which adds its commands.
Errors users can cause are :class:`~spaghettinet.errors.SpaghettiError`; :func:`main` prints them as one line and
exits with their code (1 data, 2 usage). ``--debug`` shows tracebacks and TensorFlow's own log lines.
"""

from __future__ import annotations

import os
import sys

import typer

from spaghettinet.errors import SpaghettiError

from . import config, data, export, model, pipeline, train
from .console import err_console, styled

app = typer.Typer(
    name="spaghettinet",
    help="Turn a folder of Pascal VOC labelled photos into a trained SpaghettiNet-EdgeTPU detector (int8 TFLite).",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    rich_markup_mode="rich",
)


@app.callback()
def _root(
    debug: bool = typer.Option(False, "--debug", help="Show tracebacks and TensorFlow's log lines."),
) -> None:
    if debug:
        os.environ["SPAGHETTINET_DEBUG"] = "1"


for _module in (data, model, config, train, export, pipeline):
    _module.register(app)


def main(argv: list[str] | None = None) -> None:
    """Console-script entry point."""
    args = sys.argv[1:] if argv is None else argv
    if "--debug" in args:
        os.environ["SPAGHETTINET_DEBUG"] = "1"
    try:
        app(args=args, standalone_mode=True)
    except SpaghettiError as exc:
        if os.environ.get("SPAGHETTINET_DEBUG"):
            raise
        # The message names the user's files: printed literally (see console.py), only "error:" is styled.
        err_console.print(styled(("error:", "bold red"), f" {exc}"), soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print(styled(("interrupted", "yellow")))
        sys.exit(130)
