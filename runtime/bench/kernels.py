"""Benchmark: every kernel a quantized linear can run on, on every layer shape we ship, at 1 and 128 tokens.

    python -m svdq_edge.runtime.bench.kernels [--runs 200] [--threads 2] [--shapes 384x1152,1536x384]

One-layer ONNX models of the same random weight [N, K] (timing does not depend on the values): FP32 MatMul, int8
DynamicQuantizeMatMul (what ORT INT8 dynamic and our `--kernel int8` run; alone, and with 1% of the input channels
masked and added back in FP32), MatMulNBits at 4 and 8 bits and accuracy levels 0 and 4 (8 bits at level 0 run as
two exact 4-bit halves, as the exporter emits them), and 4 bits with the channel correction (1%). All variants of one
shape and token count are timed interleaved; the table gives medians and the ratio to the FP32 MatMul. The per-layer
kernel rule follows it (config.Kernel: 8-bit layers on int8 for encoders, docs/results.md).
"""

from __future__ import annotations

import click
import numpy as np
import torch

from svdq_edge.config import QuantConfig
from svdq_edge.exporters.onnx.linear import OnnxFragment, _np, quant_linear_fragment, single_layer_model
from svdq_edge.quant.decompose import decompose
from svdq_edge.runtime.bench.correction import make_cpu_session
from svdq_edge.runtime.measure.latency import time_interleaved
from svdq_edge.saliency import ScoreContext
from svdq_edge.util.logs import configure
from svdq_edge.util.table import markdown_table

# K x N of every linear in the models we ship; q/k/v and gate/up as the fused graphs pack them.
SHAPES = {"MiniLM-L6": ("384x1152", "384x384", "384x1536", "1536x384"),
          "SmolLM2-135M": ("576x960", "576x576", "576x3072", "1536x576")}

VARIANTS = {  # label -> (QuantConfig fields, kernel, accuracy level); None: FP32 MatMul
    "fp32 MatMul": None,
    "int8 DQMM": (dict(bits=8, kernel="int8", method="rtn", keep=0.0), "int8", 0),
    "int8 DQMM + 1% channels": (dict(bits=8, kernel="int8", method="outlier", keep=0.01), "int8", 0),
    "nbits 4 acc0": (dict(bits=4, method="rtn", keep=0.0), "matmulnbits", 0),
    "nbits 4 acc4": (dict(bits=4, method="rtn", keep=0.0), "matmulnbits", 4),
    "nbits 4 acc4 + 1% channels": (dict(bits=4, keep=0.01), "matmulnbits", 4),
    "nbits 8 acc0 (two halves)": (dict(bits=8, method="rtn", keep=0.0), "matmulnbits", 0),
    "nbits 8 acc4": (dict(bits=8, method="rtn", keep=0.0), "matmulnbits", 4),
}


def variant_model(label: str, W: torch.Tensor, block_size: int):
    """The one-layer ModelProto of `label` for W [N, K]."""
    N, K = W.shape
    spec = VARIANTS[label]
    if spec is None:
        f = OnnxFragment()
        f.node("MatMul", ["x", f.init("w.T", _np(W.T.contiguous()))], ["y"])
        return single_layer_model(f, K, N)
    fields, kernel, level = spec
    scale = torch.ones(K)
    scale[:: max(1, K // 8)] = 20.0  # a few loud channels for `outlier` (and `range`) to find
    mixed = decompose(W, QuantConfig(block_size=block_size, embedding_bits=None, **fields),
                      ScoreContext(input_scale=scale))
    return single_layer_model(quant_linear_fragment("w", mixed, "x", "y", accuracy_level=level, kernel=kernel), K, N)


@click.command()
@click.option("--shapes", default=None, help="comma-separated KxN (default: every shape of the shipped models)")
@click.option("--tokens", default="1,128", show_default=True, help="comma-separated token counts (batch 1)")
@click.option("--block-size", type=int, default=32, show_default=True)
@click.option("--runs", type=click.IntRange(min=5), default=200, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
def main(shapes, tokens, block_size, runs, threads):
    configure()
    import onnxruntime as ort

    wanted = [s.strip() for s in shapes.split(",")] if shapes else [s for v in SHAPES.values() for s in v]
    counts = [int(t) for t in tokens.split(",")]
    rng = np.random.default_rng(0)
    rows = []
    for shape in dict.fromkeys(wanted):
        K, N = (int(v) for v in shape.split("x"))
        W = torch.from_numpy(rng.standard_normal((N, K)).astype(np.float32) * 0.02)
        sessions = {label: make_cpu_session(variant_model(label, W, block_size).SerializeToString(), threads)
                    for label in VARIANTS}
        for t in counts:
            x = rng.standard_normal((1, t, K)).astype(np.float32)
            times = time_interleaved(list(sessions.values()), [{"x": x}] * len(sessions), runs=runs, rounds=10)
            base = float(np.median(times[0]))
            rows.append([shape, str(t)] + [f"{1e3 * float(np.median(s)):.3f} ({float(np.median(s)) / base:.2f}x)"
                                           for s in times])
    click.echo(f"onnxruntime {ort.__version__}, CPU EP, {threads} threads, batch 1, median of {runs} interleaved runs, "
               f"block {block_size}; ms (ratio to the FP32 MatMul)")
    click.echo(markdown_table(["K x N", "tokens", *VARIANTS], rows))


if __name__ == "__main__":
    main()
