"""Benchmark: what the default candidates of bench_methods cost under ONNX Runtime, in one interleaved run.

    python -m svdq_edge.runtime.bench.structures [--runs 200] [--threads 2] [--accuracy-level 4]

The embedded MiniLM exported as FP32, ORT INT8 dynamic and ours under `range / channel` (today's default),
`proxy / channel` (the channel winner of bench_methods) and `range / element` (the overall winner), W4 block 128,
keep 1%, 4-bit embedding table; cosine to FP32 on the 80 shipped sentences and batch-1 x 128-token latency, timed
interleaved across every backend (runtime/measure/latency.py). Prints one table.
"""

from __future__ import annotations

import tempfile
from pathlib import Path

import click

from svdq_edge.util.logs import configure


@click.command()
@click.option("--runs", type=click.IntRange(min=5), default=200, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--accuracy-level", type=click.IntRange(0, 4), default=4, show_default=True)
def main(runs, threads, accuracy_level):
    configure()
    from svdq_edge.config import QuantConfig
    from svdq_edge.runtime.validation.pipeline import build_backends, shipped_sentences, validate_all
    from svdq_edge.runtime.validation.report import backend_table
    from svdq_edge.sources.load import load_model

    loaded = load_model(None)
    configs = {"range-channel": QuantConfig(), "proxy-channel": QuantConfig(method="proxy"),
               "range-element": QuantConfig(structure="element")}
    with tempfile.TemporaryDirectory() as work:
        built = build_backends(loaded, Path(work), configs, ("ort-int8",), (accuracy_level,))
        validation = validate_all(built, loaded, shipped_sentences(), ["ort-cpu"], threads, [(1, 128)], runs, False)
    click.echo(f"embedded MiniLM, ONNX Runtime CPU, {threads} threads, {runs} timed runs, accuracy level "
               f"{accuracy_level}")
    click.echo(backend_table(validation.results))


if __name__ == "__main__":
    main()
