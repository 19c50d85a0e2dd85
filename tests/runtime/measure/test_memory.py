"""Memory bound of quantize + export: a synthetic ~1.5 B-parameter Llama (FP16 shards, 2.9 GB on disk, 5.4 GiB as
FP32) goes through the SmolLM2 recipe with peak RSS under 2 GiB, measured in a fresh child process; the exported
folder then runs under ONNX Runtime. This is what lets models larger than the machine's RAM be shipped."""

import json
import shutil
import subprocess
import sys

import numpy as np
import pytest

from svdq_edge.recipes import read_recipe
from tests.synthetic import write_synthetic_llama

pytestmark = pytest.mark.integration
LIMIT_MIB = 2048


def test_synthetic_1b5_llama_quantizes_and_exports_under_2_gib(tmp_path):
    src, n_params = write_synthetic_llama(tmp_path / "llama-1b5")
    assert 1.4e9 < n_params < 1.6e9
    config = read_recipe("smollm2-135m")["config"]
    out = tmp_path / "onnx"
    proc = subprocess.run([sys.executable, "-m", "svdq_edge.runtime.validation.build_child", "--model", str(src),
                           "--config", json.dumps(config), "--out", str(out)], capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr[-2000:]
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    assert facts["weight_mb"] > 5000  # the FP32 weights the model would take in memory
    assert facts["peak_rss_mb"] < LIMIT_MIB, facts
    assert json.loads((out / "export.json").read_text())["graph"] == "fused"
    from svdq_edge.runtime.decode.session import OnnxDecoder
    from svdq_edge.runtime.runtimes.session import make_session

    logits, state = OnnxDecoder(make_session(out, "cpu", threads=2)).prefill(np.array([[1, 5, 9, 33]]))
    assert logits.shape == (1, 4, 32000) and np.isfinite(logits).all()
    assert state.past["past_key_values.29.key"].shape == (1, 4, 4, 64)
    del state
    shutil.rmtree(tmp_path)  # 4 GB of shards and ONNX data: pytest keeps its last three temp folders
