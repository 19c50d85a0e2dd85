"""The output-folder fault script (tests/faults/outputs.py) on a few trials: every count it checks is clean. The full
run (`python -m tests.faults.outputs --trials 200`) is the one reported in issue 29."""

import pytest

from tests.faults.outputs import main


@pytest.mark.slow
def test_fault_script_finds_nothing_lost_no_double_holder_no_leftover(capsys):
    assert main(["--trials", "8"]) == 0, capsys.readouterr().out
    assert "all good" in capsys.readouterr().out
