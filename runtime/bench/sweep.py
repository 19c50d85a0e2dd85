"""Benchmark: the seed papers' method comparison in one process, and the same sweep on a local Ray cluster of N
single-CPU nodes (extra `cluster`), timed on the same machine; the figures of both must agree.

    python -m svdq_edge.runtime.bench.sweep --model ../shared/models/minilm-l6-rte \\
        --data ../shared/data/glue/rte/dev.tsv --calib-data ../shared/data/glue/rte/train.tsv

Candidates: rtn and svd (data-free), awq, spqr, gptq with every calibration seed: the rows of docs/seed-comparison.md
at one setting. The local run is `compare_methods` (torch on every core, calibration statistics shared between methods
of the same seed); the Ray run is `sweep_methods` (one task per candidate, each calibrating itself).
"""

from __future__ import annotations

import time
from pathlib import Path

import click

from svdq_edge.util.logs import configure


@click.command()
@click.option("--model", required=True, help="a GLUE classifier folder (e.g. ../shared/models/minilm-l6-rte)")
@click.option("--data", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("--calib-data", required=True, type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="the train split")
@click.option("--methods", default="rtn,svd,awq,spqr,gptq", show_default=True)
@click.option("--seeds", default="0,1,2", show_default=True, help="calibration seeds of the calibrated methods")
@click.option("--bits", type=click.IntRange(2, 8), default=4, show_default=True)
@click.option("--keep", type=float, default=0.01, show_default=True)
@click.option("--calib-samples", type=click.IntRange(min=1), default=256, show_default=True)
@click.option("--nodes", type=click.IntRange(min=1), default=2, show_default=True,
              help="Ray nodes of one CPU each (a head node without CPUs schedules them)")
def main(model, data, calib_data, methods, seeds, bits, keep, calib_samples, nodes):
    configure()
    import ray
    from ray.cluster_utils import Cluster

    from svdq_edge.config import QuantConfig
    from svdq_edge.evaluation.data import read_glue_tsv
    from svdq_edge.pipeline.compare import compare_methods
    from svdq_edge.runtime.validation.cluster import RaySweep
    from svdq_edge.runtime.validation.sweep import sweep_methods
    from svdq_edge.saliency import get
    from svdq_edge.sources.load import label2id_of, load_model
    from svdq_edge.util.table import markdown_table

    loaded = load_model(model)
    ds = read_glue_tsv(data, label2id=label2id_of(model))
    base = dict(bits=bits, keep=keep, structure="element", embedding_bits=None, calib_data=str(calib_data),
                calib_samples=calib_samples)
    configs = {}
    for m in (x.strip() for x in methods.split(",") if x.strip()):
        if get(m).needs_calibration:
            configs.update({f"{m} s{s}": QuantConfig(method=m, seed=int(s), **base) for s in seeds.split(",")})
        else:
            configs[m] = QuantConfig(method=m, **base)

    start = time.perf_counter()
    local = compare_methods(loaded, ds, configs, progress=False)
    local_s = time.perf_counter() - start

    start = time.perf_counter()
    cluster = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})
    for i in range(nodes):
        cluster.add_node(num_cpus=1, labels={"device": f"local-{i}"})
    ray.init(address=cluster.address, logging_level="WARNING", log_to_driver=False)
    up_s = time.perf_counter() - start
    try:
        start = time.perf_counter()
        with RaySweep() as sweep:
            swept = sweep_methods(sweep, loaded, ds, configs)
        ray_s = time.perf_counter() - start
    finally:
        ray.shutdown()
        cluster.shutdown()

    by_label = {r.label: r for r in swept.results}
    same = sum(by_label[r.label].acc.correct == r.acc.correct for r in local if r.label in by_label)
    kl_diff = max(abs(by_label[r.label].kl - r.kl) for r in local if r.label in by_label)
    click.echo(f"{model} on {data.name} (n={len(ds)}): {len(configs)} candidates ({methods}; seeds {seeds}), W{bits} "
               f"keep {keep:g} element, {calib_samples} calibration rows; this machine's {_cpus()} CPUs")
    click.echo(markdown_table(
        ["run", "wall s", "speed-up", "candidates done", "failed"],
        [["one process (torch on every core)", f"{local_s:.1f}", "1.00x", str(len(local) - 1), "0"],
         [f"Ray, {nodes} nodes x 1 CPU (cluster start {up_s:.1f} s not counted)", f"{ray_s:.1f}",
          f"{local_s / ray_s:.2f}x", str(len(swept.results) - 1), str(len(swept.failed))]]))
    click.echo(f"identical correct counts: {same}/{len(local)} rows; max |KL difference| {kl_diff:.2e}; tasks ran on "
               + ", ".join(sorted({p['device'] for p in swept.placed.values()})))


def _cpus() -> int:
    import os

    return os.cpu_count() or 1


if __name__ == "__main__":
    main()
