"""A GGUF file transcoded into our layers computes exactly what its dequantized weights compute."""

import importlib.util
import json
import os

import pytest
import torch
from click.testing import CliRunner

from svdq_edge.artifact.io import load_quantized, save_quantized
from svdq_edge.cli.app import main
from svdq_edge.config import TranscodeConfig
from svdq_edge.ggml import GGMLType
from svdq_edge.gguf.file import GGUFError, GGUFFile
from svdq_edge.model.embedding import QuantEmbedding
from svdq_edge.model.modules import QuantLinear
from svdq_edge.pipeline.transcode import transcode_gguf
from tests.ggml_files import TINY_VOCAB, write_tiny_llama_gguf

pytestmark = pytest.mark.skipif(importlib.util.find_spec("gguf") is None, reason="needs the gguf package")


def dequantized_reference(path):
    """transformers' own GGUF loader: every tensor dequantized by the gguf package, Q/K rows permuted back."""
    from transformers import AutoModelForCausalLM

    return AutoModelForCausalLM.from_pretrained(path.parent, gguf_file=path.name, dtype=torch.float32).eval()


@pytest.fixture(scope="module", params=["tied", "separate-head"])
def tiny_gguf(request, tmp_path_factory):
    path = tmp_path_factory.mktemp("gguf") / "tiny.gguf"
    head = GGMLType.Q6_K if request.param == "separate-head" else None
    return write_tiny_llama_gguf(path, head=head), request.param


def test_logits_equal_the_dequantized_model(tiny_gguf):
    path, kind = tiny_gguf
    loaded, report = transcode_gguf(path, progress=False, tokenizer=False)
    ids = torch.randint(0, TINY_VOCAB, (2, 11), generator=torch.Generator().manual_seed(0))
    with torch.no_grad():
        ours = loaded.model(ids).logits
        ref = dequantized_reference(path)(ids).logits
    assert torch.allclose(ours, ref, rtol=1e-4, atol=1e-4 * ref.abs().max().item())
    assert max(r.rel_error for r in report.layers) < 1e-6  # against ggml's own dequantized weights
    structures = {type(m.mixed.correction).__name__ for m in loaded.model.modules() if isinstance(m, QuantLinear)}
    assert "BlockOffsetCorrection" in structures and "NoneType" in structures  # Q4_1/K-quants, and Q4_0/Q6_K
    assert isinstance(loaded.model.model.embed_tokens, QuantEmbedding)
    head = loaded.model.lm_head
    assert isinstance(head, QuantLinear)
    shared = head.B is loaded.model.model.embed_tokens.B
    assert shared == (kind == "tied")
    assert report.config == TranscodeConfig(str(path), "MOSTLY_Q4_K_M", GGUFFile(path).type_counts())


def test_saved_folder_reloads_the_same_model(tiny_gguf, tmp_path):
    path, _ = tiny_gguf
    loaded, report = transcode_gguf(path, progress=False, tokenizer=False)
    save_quantized(loaded, report, tmp_path / "q")
    again, config = load_quantized(tmp_path / "q")
    assert isinstance(config, TranscodeConfig) and config.types == report.config.types
    # no absolute path of the machine that built it: the file relative to the folder, as the source is
    meta = json.loads((tmp_path / "q" / "quant_config.json").read_text())
    assert meta["config"]["file"] == meta["source"] == os.path.relpath(path, tmp_path / "q")
    # a GGUF's config names no architecture; the saved one does, so every reader of config.json knows the task
    assert json.loads((tmp_path / "q" / "config.json").read_text())["architectures"] == ["LlamaForCausalLM"]
    ids = torch.arange(12)[None]
    with torch.no_grad():
        assert torch.equal(again.model(ids).logits, loaded.model(ids).logits)


@pytest.mark.parametrize("damage, message", [
    ("text", "not a GGUF file"),
    ("header", "truncated or corrupt"),
    ("tail", "truncated"),
    ("type", "GGML type id 20 is not supported"),
])
def test_bad_files_fail_in_one_line_and_leave_no_output(tmp_path, damage, message):
    good = write_tiny_llama_gguf(tmp_path / "good.gguf").read_bytes()
    bad = tmp_path / "bad.gguf"
    if damage == "text":
        bad.write_text("model weights\n")
    elif damage == "header":
        bad.write_bytes(good[:200])
    elif damage == "tail":
        bad.write_bytes(good[: len(good) - 1000])
    else:
        bad.write_bytes(_retype_first_tensor(tmp_path / "good.gguf", 20))  # IQ4_NL
    with pytest.raises(GGUFError, match=message):
        GGUFFile(bad)
    commands = [["quantize", str(bad), "-o", str(tmp_path / "out")]]
    if damage != "type":  # the FP32 paths read through transformers, which may know types we do not transcode
        commands += [["quantize", str(bad), "-o", str(tmp_path / "out"), "--requantize"],
                     ["export", str(bad), "--fp32", "-o", str(tmp_path / "out")]]
    for args in commands:  # every path names the file in one line (the FP32 ones raised internal errors)
        res = CliRunner().invoke(main, args, env={"SVDQ_EDGE_CACHE": str(tmp_path / "cache")})
        assert res.exit_code == 1, args
        lines = [ln for ln in res.output.strip().splitlines() if not ln.startswith("warning:")]
        assert message in res.output and str(bad) in res.output and len(lines) == 1, (args, res.output)
        assert {p.name for p in tmp_path.iterdir()} <= {"good.gguf", "bad.gguf", "cache"}  # no output, no temp


def _retype_first_tensor(path, type_id: int) -> bytes:
    """The file's bytes with its first tensor's GGML type id replaced (the field after the tensor's dims)."""
    import gguf

    field = gguf.GGUFReader(path).tensors[0].field
    offset = field.offset + sum(p.nbytes for p in field.parts[:-2])  # parts: name len, name, n_dims, dims, type, off
    out = bytearray(path.read_bytes())
    out[offset : offset + 4] = type_id.to_bytes(4, "little")
    return bytes(out)


def test_cli_transcodes_by_default_and_requantizes_on_request(tmp_path):
    path = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    res = CliRunner().invoke(main, ["quantize", str(path), "-o", str(tmp_path / "t")])
    assert res.exit_code == 0, res.output
    assert "transcoded (MOSTLY_Q4_K_M)" in res.output
    _, config = load_quantized(tmp_path / "t")
    assert isinstance(config, TranscodeConfig)
    res = CliRunner().invoke(main, ["quantize", str(path), "-o", str(tmp_path / "r"), "--bits", "3"])
    assert res.exit_code == 2 and "--bits: a GGUF file is transcoded exactly" in res.output
    assert not (tmp_path / "r").exists()
    res = CliRunner().invoke(main, ["quantize", "-o", str(tmp_path / "r"), "--requantize"])
    assert res.exit_code == 2 and "--requantize applies to GGUF sources only" in res.output


def test_export_computes_on_int8_activations_unless_exact(tmp_path):
    """A transcoded GGUF exports at accuracy level 4 by default (llama.cpp's perplexity at its speed, docs/gguf.md);
    --exact gives level 0, the dequantized weights computed in FP32."""
    path = write_tiny_llama_gguf(tmp_path / "tiny.gguf")
    runner = CliRunner()
    assert runner.invoke(main, ["quantize", str(path), "-o", str(tmp_path / "t")]).exit_code == 0
    for flags, level in (([], "4"), (["--exact"], "0")):
        out = tmp_path / f"onnx{level}"
        res = runner.invoke(main, ["export", str(tmp_path / "t"), "-o", str(out), *flags])
        assert res.exit_code == 0, res.output
        assert json.loads((out / "export.json").read_text())["accuracy_level"] == level
    res = runner.invoke(main, ["export", str(tmp_path / "t"), "-o", str(tmp_path / "both"), "--exact",
                               "--accuracy-level", "4"])
    assert res.exit_code == 2 and "--exact is --accuracy-level 0" in res.output
    assert not (tmp_path / "both").exists()
