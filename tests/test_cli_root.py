"""The root command: help, exit codes, and no TensorFlow at start-up."""

from __future__ import annotations

import subprocess
import sys

from typer.testing import CliRunner

from spaghettinet.cli import app

runner = CliRunner()


def test_help_lists_the_tool():
    result = runner.invoke(app, ["--help"])
    assert result.exit_code == 0
    assert "SpaghettiNet" in result.output


def test_unknown_command_is_a_usage_error():
    result = runner.invoke(app, ["no-such-command"])
    assert result.exit_code == 2


def test_help_does_not_import_tensorflow():
    code = (
        "import sys\n"
        "from spaghettinet.cli import main\n"
        "try:\n    main(['--help'])\nexcept SystemExit:\n    pass\n"
        "assert 'tensorflow' not in sys.modules, 'tensorflow was imported by --help'\n"
    )
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
