import copy

import pytest
import torch
from transformers.pytorch_utils import Conv1D

from svdq_edge.artifact.io import load_quantized, quantized_layers, save_quantized
from svdq_edge.config import QuantConfig
from svdq_edge.errors import UserError
from svdq_edge.model.modules import QuantLinear
from svdq_edge.model.targets import find_targets, linear_weight
from svdq_edge.pipeline.apply import quantize_model
from svdq_edge.sources.load import LoadedModel, detect_task

CFG = QuantConfig(method="range", bits=4, block_size=32, keep=0.02, embedding_bits=None)  # linears only


def inputs_for(model):
    ids = torch.randint(0, model.config.vocab_size, (2, 12), generator=torch.Generator().manual_seed(0))
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def test_task_heads_stay_fp32_and_all_block_linears_are_replaced(tiny_model):
    kind, model = tiny_model
    targets = [n for n, _ in find_targets(model, CFG.skip)]
    report = quantize_model(model, CFG, progress=False)
    assert [r.name for r in report.layers] == targets
    q = quantized_layers(model)
    assert sorted(q) == sorted(targets)
    per_block = {"bert": 6, "llama": 7, "gpt2": 4}[kind]
    assert len(q) == 2 * per_block
    assert not any("classifier" in n or "lm_head" in n or "pooler" in n for n in q)


def _naive_weight(q: QuantLinear) -> torch.Tensor:
    """W_hat from the buffers element by element: unpacked nibbles (low first), (code - zero) * scale per block,
    then the kept channels' values written over (they are coded as the zero point, so their codes add 0)."""
    N, K, bs = q.out_features, q.in_features, q.block_size
    codes = torch.stack([q.B & 15, q.B >> 4], dim=-1).reshape(N, -1)[:, :K].float()
    zeros = torch.stack([q.zero_points & 15, q.zero_points >> 4], dim=-1).reshape(N, -1).float()
    W = torch.empty(N, K)
    for k in range(K):
        W[:, k] = (codes[:, k] - zeros[:, k // bs]) * q.scales[:, k // bs]
    W[:, q.corr_channels.long()] += q.corr_values
    return W


def test_quantlinear_computes_dequant_plus_correction(tiny_model):
    _, model = tiny_model
    fp32 = copy.deepcopy(model)
    quantize_model(model, CFG, progress=False)
    for name, q in quantized_layers(model).items():
        orig = fp32.get_submodule(name)
        W = linear_weight(orig).detach()
        x = torch.randn(3, q.in_features)
        expected = x @ _naive_weight(q).T + (0 if orig.bias is None else orig.bias)
        assert torch.allclose(q(x), expected, atol=1e-5)
        kept = q.corr_channels.long()  # channel structure: the kept input channels are FP32, exactly
        assert torch.equal(q.effective_weight()[:, kept], W[:, kept].float())
        if isinstance(orig, Conv1D):
            assert W.shape == (orig.nf, orig.weight.shape[0])
        assert (q.effective_weight() - W).norm() / W.norm() < 0.2


def test_quantized_model_stays_close_to_fp32(tiny_model):
    _, model = tiny_model
    fp32 = copy.deepcopy(model)
    quantize_model(model, CFG.replace(bits=8), progress=False)
    batch = inputs_for(model)
    with torch.no_grad():
        a, b = fp32(**batch).logits, model(**batch).logits
    assert (a - b).norm() / a.norm() < 0.05


def test_save_and_reload_gives_identical_outputs(tiny_model, tmp_path):
    kind, model = tiny_model
    report = quantize_model(model, CFG, progress=False)
    loaded = LoadedModel(model, None, detect_task(model.config), f"tiny-{kind}")
    out = save_quantized(loaded, report, tmp_path / "q")
    again, cfg = load_quantized(out)
    assert cfg == CFG
    batch = inputs_for(model)
    with torch.no_grad():
        assert torch.equal(model(**batch).logits, again.model(**batch).logits)
    # No FP32 copy of a quantized weight is stored.
    from safetensors.torch import load_file

    state = load_file(str(out / "model.safetensors"))
    for name in quantized_layers(again.model):
        assert f"{name}.weight" not in state
        assert state[f"{name}.B"].dtype == torch.uint8


def test_nan_weight_names_the_layer(tiny_model):
    _, model = tiny_model
    name, module = find_targets(model, CFG.skip)[1]
    with torch.no_grad():
        module.weight[0, 0] = float("inf")
    with pytest.raises(UserError, match=name.replace(".", r"\.")):
        quantize_model(model, CFG, progress=False)


def test_skip_patterns_and_no_targets():
    from tests.conftest import tiny_bert

    model = tiny_bert()
    rep = quantize_model(model, CFG.replace(skip=("classifier", "pooler", "attention")), progress=False)
    assert rep.layers and all("attention" not in r.name for r in rep.layers)
    with pytest.raises(UserError, match="no linear layers"):
        quantize_model(tiny_bert(), CFG.replace(skip=("",)), progress=False)


def test_proxy_uses_synthetic_scales_without_data():
    from tests.conftest import tiny_bert

    model = tiny_bert()
    rep = quantize_model(model, CFG.replace(method="proxy"), progress=False)
    assert all(isinstance(m, QuantLinear) for m in quantized_layers(model).values())
    assert len(rep.layers) == 12


def test_correct_limits_the_fp32_correction_to_the_named_layers():
    from svdq_edge.model.modules import QuantLinear
    from tests.conftest import tiny_llama

    model = tiny_llama()
    cfg = QuantConfig(block_size=16, keep=0.05, embedding_bits=None, correct=("o_proj", "down_proj"))
    report = quantize_model(model, cfg, progress=False)
    kept = {r.name: r.kept for r in report.layers}
    for name, m in model.named_modules():
        if isinstance(m, QuantLinear):
            wanted = name.endswith(("o_proj", "down_proj"))
            assert (m.structure is not None) == wanted, name
            assert (kept[name] > 0) == wanted, name
    assert QuantConfig.from_dict(cfg.to_dict()) == cfg  # saved and read back with the artifact
