"""The head variants of bench_head: shapes, and that each does what its label says."""

import torch

from svdq_edge.runtime.bench.head import head_variants


def test_head_variants():
    g = torch.Generator().manual_seed(0)
    E = torch.randn(40000, 64, generator=g)
    gain = torch.rand(64, generator=g) + 0.5
    v = {k: f() for k, f in head_variants(E, gain, 32).items()}
    assert all(W.shape == E.shape for W in v.values())
    err = {k: (W - E).norm() for k, W in v.items()}
    assert err["rtn-8"] < err["split-24576"] < err["split-16384"] < err["split-8192"] < err["rtn-4"]
    assert torch.equal(v["split-8192"][:8192], v["rtn-8"][:8192])
    assert torch.equal(v["split-8192"][8192:], v["rtn-4"][8192:])
    keep = gain.topk(23).indices
    assert torch.equal(v["chan-23"][:, keep], E[:, keep]) and err["chan-23"] < err["rtn-4"]
