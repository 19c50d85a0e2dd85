"""Benchmark: layer-output error of each saliency method and structure on a real model (PyTorch, no ONNX).

    python -m svdq_edge.runtime.bench.layer_error [--model DIR] [--data TSV] [--rows 200]

Inputs X of every linear are captured on the first --rows sentences of a GLUE TSV (SST-2 train by default: not the
evaluation split); for each variant, every linear is quantized on its own and the mean over layers of
||X (W - W_hat)^T|| / ||X W^T|| is printed with the mean storage bits per weight. The error is a diagnostic for
choosing defaults: it does not always rank methods as end-to-end KL does (see docs/results.md).
"""

from __future__ import annotations

import time
from pathlib import Path

import click
import torch

from svdq_edge.config import QuantConfig
from svdq_edge.evaluation.data import read_glue_tsv
from svdq_edge.evaluation.evaluate import batches
from svdq_edge.evaluation.fidelity import capture_inputs, output_error
from svdq_edge.model.targets import find_targets, linear_weight
from svdq_edge.quant.decompose import decompose
from svdq_edge.sources.load import load_model
from svdq_edge.util.table import markdown_table

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
VARIANTS = [  # method, structure, clip
    ("rtn", "element", False), ("rtn", "element", True), ("random", "element", False),
    ("magnitude", "element", False), ("svd", "element", False), ("svd-residual", "element", False),
    ("range", "element", False), ("range", "element", True),
    ("magnitude", "channel", False), ("svd", "channel", False), ("range", "channel", False),
    ("svd", "lowrank", False),
]


@click.command()
@click.option("--model", default=str(SHARED / "models" / "minilm-l6-sst2"), show_default=True)
@click.option("--data", default=str(SHARED / "data" / "glue" / "sst2" / "train.tsv"), show_default=True)
@click.option("--rows", type=int, default=200, show_default=True, help="sentences whose activations are used")
@click.option("--bits-list", default="4,3", show_default=True)
@click.option("--block-size", type=int, default=128, show_default=True)
@click.option("--keep", type=float, default=0.01, show_default=True)
def main(model, data, rows, bits_list, block_size, keep):
    torch.set_num_threads(2)
    loaded = load_model(model)
    ds = read_glue_tsv(data, rows)
    names = [n for n, _ in find_targets(loaded.model, QuantConfig().skip)]
    X = capture_inputs(loaded.model, names, batches(loaded.tokenizer, ds, 25))
    weights = {n: linear_weight(loaded.model.get_submodule(n)).detach().float() for n in names}
    table = []
    for bits in (int(b) for b in bits_list.split(",")):
        for method, structure, clip in VARIANTS:
            cfg = QuantConfig(method=method, structure=structure, clip=clip, bits=bits, block_size=block_size,
                              keep=keep)
            start = time.perf_counter()
            errs, bpw = [], []
            for n in names:
                mixed = decompose(weights[n], cfg)
                errs.append(output_error(weights[n], mixed.dequantize(), X[n]))
                bpw.append(mixed.bits_per_weight())
            table.append([f"W{bits}", method, structure, "yes" if clip else "no", f"{sum(errs) / len(errs):.4f}",
                          f"{sum(bpw) / len(bpw):.2f}", f"{time.perf_counter() - start:.1f}"])
    click.echo(f"{Path(model).name}: {len(names)} linears, X from the first {len(ds)} rows of {data}, "
               f"block {block_size}, keep {keep}")
    click.echo(markdown_table(["bits", "method", "structure", "clip", "layer out err", "bits/w", "s"], table))


if __name__ == "__main__":
    main()
