"""Benchmark: cost of the FP32 correction over plain MatMulNBits, per structure, on MiniLM layer shapes.

    python -m svdq_edge.runtime.bench.correction [--model DIR] [--keep 0.01] [--threads 2]

For each MiniLM linear shape (384->384, 384->1536, 1536->384), the first layer of that shape in the model is quantized
(W4, block 128) with each structure, exported as a one-layer ONNX model, and timed under ONNX Runtime CPU
(median of --runs, interleaved across variants, after warm-up) at batch 1 x seq 128 and batch 8 x seq 128.
Prints one table.
"""

from __future__ import annotations

import click
import numpy as np
import onnxruntime as ort

from svdq_edge.config import QuantConfig
from svdq_edge.exporters.onnx.linear import quant_linear_fragment, single_layer_model
from svdq_edge.model.targets import find_targets, linear_weight
from svdq_edge.quant.decompose import decompose
from svdq_edge.runtime.measure.latency import time_interleaved
from svdq_edge.sources.load import load_model
from svdq_edge.util.table import markdown_table

VARIANTS = [  # label, structure, element form
    ("rtn (MatMulNBits only)", None, None),
    ("channel", "channel", None),
    ("lowrank", "lowrank", None),
    ("element ell", "element", "ell"),
    ("element compact", "element", "compact"),
    ("element auto", "element", "auto"),
]


def make_cpu_session(model_bytes: bytes, threads: int) -> ort.InferenceSession:
    so = ort.SessionOptions()
    so.intra_op_num_threads = threads
    so.inter_op_num_threads = 1
    return ort.InferenceSession(model_bytes, so, providers=["CPUExecutionProvider"])


@click.command()
@click.option("--model", default=None, help="model (default: the embedded MiniLM)")
@click.option("--keep", type=float, default=0.01, show_default=True)
@click.option("--method", default="range", show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--runs", type=click.IntRange(min=1), default=50, show_default=True)
def main(model, keep, method, threads, runs):
    loaded = load_model(model)
    shapes = {}
    for name, m in find_targets(loaded.model, QuantConfig().skip):
        W = linear_weight(m).detach().float()
        shapes.setdefault(tuple(W.shape), (name, W))
    rng = np.random.default_rng(0)
    rows = []
    for (N, K), (name, W) in sorted(shapes.items()):
        variants = []
        for label, structure, form in VARIANTS:
            cfg = QuantConfig(method="rtn" if structure is None else method, keep=keep,
                              structure=structure or "element")
            mixed = decompose(W, cfg)
            frag = quant_linear_fragment(name, mixed, "x", "y", element_form=form or "auto")
            sess = make_cpu_session(single_layer_model(frag, K, N).SerializeToString(), threads)
            variants.append((label, mixed, frag, sess))
        for batch in (1, 8):
            x = rng.standard_normal((batch, 128, K)).astype(np.float32)
            # All variants of one shape are timed interleaved (round-robin), so load drift hits them alike.
            times = time_interleaved([v[3] for v in variants], [{"x": x}] * len(variants), runs=runs, rounds=10)
            base = float(np.median(times[0]))
            for (label, mixed, frag, _), t in zip(variants, times, strict=True):
                med = float(np.median(t))
                extra = [n.op_type for n in frag.nodes[1:]]
                rows.append([f"{K}->{N}", f"{batch}x128", label, f"{1e3 * med:.3f}", f"{100 * (med / base - 1):+.1f}%",
                             f"{mixed.bits_per_weight():.2f}", "+".join(extra) or "-"])
    click.echo(f"onnxruntime {ort.__version__}, CPU EP, {threads} threads, median of {runs} runs, keep {keep}, "
               f"method {method}, W4 block 128")
    click.echo(markdown_table(["K->N", "batch x seq", "variant", "ms", "overhead", "bits/w", "correction ops"], rows))


if __name__ == "__main__":
    main()
