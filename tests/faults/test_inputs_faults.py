"""The bad-input fault script (tests/faults/inputs.py) on its export and eval cases: each is a one-line error that
leaves nothing behind. The full run (`python -m tests.faults.inputs`) is the one reported in issue 29."""

import pytest

from tests.faults.inputs import main


@pytest.mark.slow
@pytest.mark.parametrize("prefix", ["export-", "eval-"])
def test_bad_inputs_are_one_line_errors(capsys, prefix):
    assert main(["--only", prefix]) == 0, capsys.readouterr().out
    out = capsys.readouterr().out
    assert "| error |" in out and "| left an output behind | 0 |" in out
