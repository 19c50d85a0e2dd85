"""`eval` on a causal LM with a text file: perplexity as llama-perplexity reports it, for an FP32 folder (PyTorch), a
quantized folder (PyTorch) and its ONNX export (ONNX Runtime), on a tiny Llama built in code with the tiny WordPiece
tokenizer (its 120 ids fit the model's 128)."""

import math
import re

import torch
from click.testing import CliRunner

from svdq_edge.cli.app import main
from tests.conftest import tiny_bert_tokenizer, tiny_llama
from tests.svdq_edge.cli.test_cli import one_line_error

TEXT = "the film was good . the movie is not very bad . number 42 was fine . " * 6


def _folder(tmp_path):
    path = tmp_path / "lm"
    tiny_llama().save_pretrained(path)
    tiny_bert_tokenizer(path).save_pretrained(path)
    (tmp_path / "text.txt").write_text(TEXT)
    return path, tmp_path / "text.txt"


def _ppl(result) -> float:
    assert result.exit_code == 0, result.output
    return float(re.search(r"perplexity \([^)]*\): ([0-9.]+) over (\d+) tokens", result.output).group(1))


def test_one_window_is_the_plain_perplexity(tmp_path):
    folder, text = _folder(tmp_path)
    r = CliRunner().invoke(main, ["eval", str(folder), "--data", str(text), "--context", "64", "--stride", "32",
                                  "--limit", "60"])
    from transformers import AutoTokenizer

    ids = AutoTokenizer.from_pretrained(folder)(TEXT, add_special_tokens=False, return_tensors="pt")["input_ids"][0]
    ids = ids[:60]  # one window: every token after the first scored once, with all the context before it
    with torch.no_grad():
        logits = tiny_llama()(ids[None]).logits[0]
    nll = -torch.log_softmax(logits[:-1].double(), -1).gather(1, ids[1:, None]).mean()
    assert _ppl(r) == float(f"{math.exp(nll):.4f}")
    assert "over 59 tokens" in r.output and "PyTorch" in r.output


def test_onnx_export_scores_as_the_quantized_model(tmp_path):
    folder, text = _folder(tmp_path)
    runner = CliRunner()
    assert runner.invoke(main, ["quantize", str(folder), "-o", str(tmp_path / "q"), "--block-size", "32",
                                "--embedding-bits", "none"]).exit_code == 0
    r = runner.invoke(main, ["export", str(tmp_path / "q"), "-o", str(tmp_path / "onnx"), "--exact"])
    assert r.exit_code == 0, r.output
    args = ["--data", str(text), "--context", "32", "--stride", "16"]
    torch_ppl = _ppl(runner.invoke(main, ["eval", str(tmp_path / "q"), *args]))
    onnx_r = runner.invoke(main, ["eval", str(tmp_path / "onnx"), *args])
    assert "ONNX Runtime CPU" in onnx_r.output
    assert abs(_ppl(onnx_r) - torch_ppl) <= 1e-3 * torch_ppl  # level 0: the same weights, FP32 compute
    fp32_ppl = _ppl(runner.invoke(main, ["eval", str(folder), *args]))
    assert fp32_ppl != torch_ppl  # 4-bit weights: a measurably different model


def test_a_missing_text_file_is_one_line(tmp_path):
    folder, _ = _folder(tmp_path)
    one_line_error(CliRunner().invoke(main, ["eval", str(folder), "--data", str(tmp_path / "none.txt")]),
                   "none.txt: no such text file")
