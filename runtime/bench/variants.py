"""Benchmark: end-to-end fidelity of quantization variants (structure, clipping, embedding bits) in PyTorch.

    python -m svdq_edge.runtime.bench.variants [--task sst2|rte]

Each variant quantizes the fine-tuned MiniLM-L6 classifier from ../shared/models and is evaluated on the full GLUE
dev split: accuracy with a 95% CI, paired McNemar tests against FP32 and `rtn`, agreement and KL with FP32, layer
output error and bits per weight. This is the study behind the defaults (docs/results.md).
"""

from __future__ import annotations

from pathlib import Path

import click

from svdq_edge.config import QuantConfig
from svdq_edge.evaluation.data import read_glue_tsv
from svdq_edge.pipeline.compare import compare_methods, results_table
from svdq_edge.sources.load import load_model

SHARED = Path(__file__).resolve().parents[2].parent / "shared"
FP32_TABLE = {"embedding_bits": None}
VARIANTS = {
    "rtn": QuantConfig(method="rtn", **FP32_TABLE),
    "rtn-clip": QuantConfig(method="rtn", clip=True, **FP32_TABLE),
    "range-ch": QuantConfig(**FP32_TABLE),
    "range-ch-clip": QuantConfig(clip=True, **FP32_TABLE),
    "mag-ch": QuantConfig(method="magnitude", **FP32_TABLE),
    "svd-ch": QuantConfig(method="svd", **FP32_TABLE),
    "range-el": QuantConfig(structure="element", **FP32_TABLE),
    "svd-el": QuantConfig(method="svd", structure="element", **FP32_TABLE),
    "svd-lr": QuantConfig(method="svd", structure="lowrank", **FP32_TABLE),
    "range-ch-emb4": QuantConfig(),
    "rtn-b64": QuantConfig(method="rtn", block_size=64, **FP32_TABLE),
}


@click.command()
@click.option("--task", type=click.Choice(["sst2", "rte"]), default="sst2", show_default=True)
def main(task):
    loaded = load_model(str(SHARED / "models" / f"minilm-l6-{task}"))
    ds = read_glue_tsv(SHARED / "data" / "glue" / task / "dev.tsv")
    results = compare_methods(loaded, ds, VARIANTS, progress=False)
    click.echo(f"{task} dev, n={len(ds)}, W4 block 128 keep 0.01 unless named (ch = channel, el = element, "
               f"lr = lowrank; emb4 = 4-bit word embedding)")
    click.echo(results_table(results))


if __name__ == "__main__":
    main()
