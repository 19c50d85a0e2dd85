"""Calibration statistics and AWQ scale folding on tiny models built in code."""

import pytest
import torch

from svdq_edge.artifact.io import quantized_layers
from svdq_edge.calib.awq_fold import fold_groups, scale_inputs, unscale_outputs
from svdq_edge.calib.calibrate import collect_stats, sample_rows
from svdq_edge.config import QuantConfig
from svdq_edge.evaluation.data import TextDataset
from svdq_edge.evaluation.fidelity import capture_inputs
from svdq_edge.model.targets import find_targets, linear_weight
from svdq_edge.pipeline.apply import quantize_model
from tests.conftest import TINY_MODELS


def random_batches(model, n=3, batch=2, seq=10, seed=0):
    g = torch.Generator().manual_seed(seed)
    out = []
    for _ in range(n):
        ids = torch.randint(0, model.config.vocab_size, (batch, seq), generator=g)
        mask = torch.ones_like(ids)
        mask[1, seq - 3 :] = 0  # padding rows must be left out of the statistics
        out.append({"input_ids": ids, "attention_mask": mask})
    return out


@pytest.mark.parametrize("kind", sorted(TINY_MODELS))
def test_stats_are_the_moments_of_the_unpadded_inputs(kind):
    model = TINY_MODELS[kind]()
    names = [n for n, _ in find_targets(model, QuantConfig().skip)]
    data = random_batches(model)
    stats = collect_stats(model, names, data, progress=False)
    X = capture_inputs(model, names, data, max_rows=10**6)
    for n in names:
        x = X[n].double()
        assert stats[n].rows == x.shape[0] == 3 * (10 + 7)
        torch.testing.assert_close(stats[n].H.double(), x.T @ x / x.shape[0], atol=1e-4, rtol=1e-4)
        torch.testing.assert_close(stats[n].mean_abs.double(), x.abs().mean(0), atol=1e-5, rtol=1e-5)


def test_layers_fed_the_same_tensor_share_one_accumulator():
    model = TINY_MODELS["llama"]()
    names = [n for n, _ in find_targets(model, QuantConfig().skip)]
    stats = collect_stats(model, names, random_batches(model), progress=False)
    q, k, v = (stats[f"model.layers.0.self_attn.{p}_proj"] for p in "qkv")
    assert q.H is k.H is v.H
    assert stats["model.layers.0.mlp.gate_proj"].H is stats["model.layers.0.mlp.up_proj"].H
    assert stats["model.layers.0.mlp.down_proj"].H is not stats["model.layers.0.mlp.up_proj"].H


def test_sample_rows_is_seeded_and_without_replacement():
    ds = TextDataset("sst2", [f"s{i}" for i in range(50)], None, [i % 2 for i in range(50)], "x")
    a, b, c = sample_rows(ds, 20, 0), sample_rows(ds, 20, 0), sample_rows(ds, 20, 1)
    assert a.text_a == b.text_a != c.text_a and len(set(a.text_a)) == 20


@pytest.mark.parametrize("kind", sorted(TINY_MODELS))
def test_folding_any_scales_leaves_the_fp32_model_unchanged(kind):
    model = TINY_MODELS[kind]()
    targets = {n for n, _ in find_targets(model, QuantConfig().skip)}
    groups = fold_groups(model, targets)
    assert groups, "every tiny architecture has at least one foldable group"
    batch = random_batches(model, n=1)[0]
    with torch.no_grad():
        ref = model(**batch).logits
        g = torch.Generator().manual_seed(1)
        for grp in groups:
            K = linear_weight(model.get_submodule(grp.linears[0])).shape[1]
            s = torch.rand(K, generator=g) * 3 + 0.2
            unscale_outputs(model.get_submodule(grp.producer), s)
            for n in grp.linears:
                scale_inputs(model.get_submodule(n), s)
        torch.testing.assert_close(model(**batch).logits, ref, atol=1e-4, rtol=1e-4)


def test_fold_groups_per_architecture():
    llama = TINY_MODELS["llama"]()
    groups = {g.producer: g.linears for g in fold_groups(llama, {n for n, _ in find_targets(llama, ())})}
    assert groups["model.layers.0.input_layernorm"] == tuple(f"model.layers.0.self_attn.{p}_proj" for p in "qkv")
    assert groups["model.layers.0.mlp.up_proj"] == ("model.layers.0.mlp.down_proj",)
    assert "model.layers.0.self_attn.v_proj" not in groups  # grouped-query attention: V has fewer outputs than O
    bert = TINY_MODELS["bert"]()
    groups = fold_groups(bert, {n for n, _ in find_targets(bert, QuantConfig().skip)})
    assert [g.producer for g in groups] == [f"bert.encoder.layer.{i}.attention.self.value" for i in range(2)]


def test_awq_folds_scales_that_never_lose_on_the_calibration_objective():
    from svdq_edge.saliency.awq import output_loss

    model = TINY_MODELS["llama"]()
    names = [n for n, _ in find_targets(model, QuantConfig().skip)]
    stats = collect_stats(model, names, random_batches(model, n=4), progress=False)
    W0 = {n: linear_weight(model.get_submodule(n)).detach().clone() for n in names}
    cfg = QuantConfig(method="awq", bits=3, block_size=32, keep=0.01, embedding_bits=None)
    report = quantize_model(model, cfg, stats, progress=False)
    assert report.folds and all(f.loss <= f.loss_unscaled for f in report.folds)
    assert any(f.alpha > 0 and f.loss < f.loss_unscaled for f in report.folds)
    # The reported loss is the real one: the quantized q/k/v, mapped back to the original input basis, against the
    # FP32 weights under the original X^T X.
    f = next(f for f in report.folds if f.group.producer == "model.layers.0.input_layernorm")
    q = quantized_layers(model)
    loss = sum(output_loss(W0[n], q[n].effective_weight() / f.s[None, :], stats[n].H) for n in f.group.linears)
    assert loss == pytest.approx(f.loss, rel=1e-4)


def test_awq_on_a_model_type_without_fold_groups_says_so(caplog):
    """A model type missing from the fold table gets no scales: the run says so and the report records it, instead
    of a result labelled awq that is AWQ's saliency alone."""
    model = TINY_MODELS["gpt2"]()
    model.config.model_type = "gpt2-unknown-variant"
    names = [n for n, _ in find_targets(model, QuantConfig().skip)]
    stats = collect_stats(model, names, random_batches(model, n=2), progress=False)
    cfg = QuantConfig(method="awq", bits=4, block_size=32, embedding_bits=None)
    with caplog.at_level("WARNING"):
        report = quantize_model(model, cfg, stats, progress=False)
    assert report.folds == [] and len(report.notes) == 1 and "no scale folds" in report.notes[0]
    assert "gpt2-unknown-variant" in caplog.text
    assert report.to_dict()["notes"] == report.notes
