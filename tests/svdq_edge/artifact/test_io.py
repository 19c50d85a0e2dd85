"""A damaged quantized folder is refused before anything is built from it: every kind of damage a saved layer can
carry (indices out of range, non-finite values, cut or missing tensors, wrong dtypes) is a one-line error naming the
layer, and `export` leaves no output. Every case fails without the checks (checked by reverting them)."""

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from svdq_edge.cli.app import main
from svdq_edge.quant.decompose import ChannelCorrection, ElementCorrection, LowRankCorrection
from tests.svdq_edge.cli.test_cli import one_line_error

LAYER = "bert.encoder.layer.0.attention.self.query"


def _damaged(tiny_bert_dir, tmp_path, change):
    folder = tmp_path / "q"
    r = CliRunner().invoke(main, ["quantize", str(tiny_bert_dir), "-o", str(folder), "--block-size", "32"])
    assert r.exit_code == 0, r.output
    state = load_file(str(folder / "model.safetensors"))
    change(state)
    save_file(state, str(folder / "model.safetensors"))
    return folder


def _set(key, value):
    def change(state):
        state[key] = value(state[key])
    return change


def _drop(key):
    def change(state):
        del state[key]
    return change


CASES = {
    "channel index out of range": (_set(f"{LAYER}.corr_channels", lambda t: t + 1000), "outside [0, 64)"),
    "NaN scale": (_set(f"{LAYER}.scales", lambda t: t.index_fill(1, torch.tensor([0]), float("nan"))),
                  "NaN or infinity"),
    "cut codes": (_set(f"{LAYER}.B", lambda t: t[:-1].clone()), "B is torch.uint8"),
    "codes of another dtype": (_set(f"{LAYER}.B", lambda t: t.to(torch.int16)), "expected torch.uint8"),
    "missing zero points": (_drop(f"{LAYER}.zero_points"), "'zero_points' missing"),
    "NaN norm weight": (_set("bert.embeddings.LayerNorm.weight", lambda t: t * float("inf")),
                        "bert.embeddings.LayerNorm.weight holds NaN or infinity"),
}


@pytest.mark.parametrize("case", CASES)
def test_export_refuses_a_damaged_folder(tiny_bert_dir, tmp_path, case):
    change, needle = CASES[case]
    folder = _damaged(tiny_bert_dir, tmp_path, change)
    r = CliRunner().invoke(main, ["export", str(folder), "-o", str(tmp_path / "onnx")])
    one_line_error(r, str(folder), needle)
    assert not (tmp_path / "onnx").exists()


def test_correction_checks_known_answers():
    N, K = 4, 6
    ok = ChannelCorrection(torch.tensor([0, 5]), torch.zeros(N, 2))
    assert ok.problem(N, K) is None
    assert "outside [0, 6)" in ChannelCorrection(torch.tensor([6]), torch.zeros(N, 1)).problem(N, K)
    assert "values" in ChannelCorrection(torch.tensor([1]), torch.zeros(N + 1, 1)).problem(N, K)
    e = ElementCorrection(torch.tensor([3], dtype=torch.int32), torch.tensor([5], dtype=torch.int32),
                          torch.tensor([1.0]))
    assert e.problem(N, K) is None
    assert "rows" in ElementCorrection(e.rows + 1, e.cols, e.values).problem(N, K)
    assert "NaN" in ElementCorrection(e.rows, e.cols, torch.tensor([float("nan")])).problem(N, K)
    assert LowRankCorrection(torch.zeros(N, 2), torch.zeros(2, K)).problem(N, K) is None
    assert "L [4, 2] and R [3, 6]" in LowRankCorrection(torch.zeros(N, 2), torch.zeros(3, K)).problem(N, K)
