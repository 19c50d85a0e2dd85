"""--help is the manual: every command shows an example, and --method lists exactly the registered methods, split by
whether they need calibration data."""

import pytest
from click.testing import CliRunner

from svdq_edge.cli.app import main
from svdq_edge.cli.common import CALIBRATED_METHODS, DATA_FREE_METHODS
from svdq_edge.saliency import available, get


def test_method_lists_equal_the_registry():
    assert sorted(DATA_FREE_METHODS + CALIBRATED_METHODS) == sorted(available())
    assert {n for n in available() if get(n).needs_calibration} == set(CALIBRATED_METHODS)


@pytest.mark.parametrize("command", sorted(main.list_commands(None)))
def test_every_command_help_has_an_example(command):
    r = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert r.exit_code == 0 and "Example" in r.output, r.output


@pytest.mark.parametrize("command", ["quantize", "run"])
def test_method_help_names_every_method(command):
    r = CliRunner().invoke(main, [command, "--help"], terminal_width=200)
    assert all(name in r.output for name in available()), r.output
