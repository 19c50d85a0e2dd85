"""Benchmark: the fused encoder graph's effect on FP32, ORT INT8 dynamic and ours, side by side.

    python -m svdq_edge.runtime.bench.encoder [--model FOLDER --data dev.tsv] [--runs 200]

Each of FP32, INT8 dynamic (onnxruntime.quantization.quantize_dynamic of that FP32 graph) and ours (the default
config, or --config) is built twice: from the traced graph (torch.onnx dynamo export) and from the fused graph
(exporters/fused/bert.py: MultiHeadAttention, SkipLayerNormalization, Gelu, packed q/k/v). One interleaved
validation then measures them all: size, fidelity to the traced FP32 graph (mean cosine of pooled embeddings on the
shipped sentences for a feature extractor; agreement and KL of logits on --data for a classifier) and latency at
batch 1 and 8 x 128 tokens.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from svdq_edge.config import QuantConfig
from svdq_edge.util.logs import configure
from svdq_edge.util.table import markdown_table


def build(model: str | None, configs: dict[str, QuantConfig], out: Path, accuracy_level: int) -> tuple:
    """(the FP32 model, the six backends built under `out`, traced FP32 first: the reference)."""
    import copy

    from svdq_edge.exporters.export import export_onnx
    from svdq_edge.pipeline.apply import quantize_model
    from svdq_edge.runtime.validation.baselines import build_baseline
    from svdq_edge.runtime.validation.validate import Backend
    from svdq_edge.sources.load import LoadedModel, load_model

    loaded = load_model(model)
    quantized, resolved = {}, {}
    for label, config in configs.items():
        quantized[label] = LoadedModel(copy.deepcopy(loaded.model), loaded.tokenizer, loaded.task, loaded.source)
        resolved[label] = quantize_model(quantized[label].model, config, progress=False).config  # widths, scales
    backends = []
    for graph in ("traced", "fused"):
        fp32, _, _ = export_onnx(loaded, out / f"fp32-{graph}", overwrite=True, graph=graph)
        backends.append(Backend(f"fp32-{graph}", fp32))
        backends.append(Backend(f"ort-int8-{graph}", build_baseline("ort-int8", fp32, out / f"ort-int8-{graph}")))
        for label, q in quantized.items():
            name = f"{label}-{graph}"
            ours, _, _ = export_onnx(q, out / name, resolved[label].to_dict(), accuracy_level=accuracy_level,
                                     overwrite=True, graph=graph)
            backends.append(Backend(name, ours))
    return loaded, backends


@click.command()
@click.option("--model", default=None, help="BERT-family folder or hub id (default: the embedded MiniLM)")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="GLUE dev TSV for a classifier (a feature extractor uses the shipped sentences)")
@click.option("--config", "config_json", default=None,
              help="our QuantConfig as JSON, or {label: QuantConfig} for several (default: the defaults, as ours)")
@click.option("--accuracy-level", type=click.IntRange(0, 4), default=4, show_default=True)
@click.option("--runs", type=click.IntRange(min=5), default=200, show_default=True)
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--out", type=click.Path(path_type=Path), default=Path("svdq-edge-out/bench-encoder"),
              show_default=True)
def main(model, data, config_json, accuracy_level, runs, threads, out):
    configure()
    from svdq_edge.evaluation.data import read_glue_tsv
    from svdq_edge.runtime.validation.pipeline import shipped_sentences
    from svdq_edge.runtime.validation.validate import validate
    from svdq_edge.sources.load import ModelTask

    raw = {"ours": {}} if config_json is None else json.loads(config_json)
    if not all(isinstance(v, dict) for v in raw.values()):
        raw = {"ours": raw}
    configs = {label: QuantConfig.from_dict(d) for label, d in raw.items()}
    loaded, backends = build(model, configs, out, accuracy_level)
    feature = loaded.task is ModelTask.FEATURE_EXTRACTION
    if not feature and data is None:
        raise click.UsageError("a classifier needs --data (a GLUE dev TSV)")
    ds = shipped_sentences() if feature else read_glue_tsv(data, label2id=loaded.model.config.label2id)
    results = validate(backends, loaded.tokenizer, ds, loaded.task.value, loaded.model.config.vocab_size,
                       threads=threads, runs=runs, has_labels=not feature).results
    fp32_ms = {r.backend.name: {lat.batch: lat.p50_ms for lat in r.latency} for r in results}["fp32-traced"]
    rows = []
    for r in results:
        fid = (f"{r.cosine_mean:.5f}" if r.cosine_mean is not None else "-") if feature else \
            (f"{100 * r.agree:.1f}% / {r.kl:.5f}" if r.kl is not None else "-")
        lat = {x.batch: x.p50_ms for x in r.latency}
        rows.append([r.backend.name, f"{r.size_mb:.1f}", fid,
                     *(f"{lat[b]:.2f} ({lat[b] / fp32_ms[b]:.2f}x)" for b in sorted(lat))])
    cols = ["backend", "MB", "mean cosine" if feature else "agree / KL", "b1x128 ms (vs fp32-traced)",
            "b8x128 ms (vs fp32-traced)"]
    ours = "; ".join(f"{k} = {c.method} W{c.bits} {c.kernel.value} keep {c.keep:g} {c.structure.value}"
                     f"{' on ' + ','.join(c.correct) if c.correct else ''}, embedding {c.embedding_bits}"
                     for k, c in configs.items())
    click.echo(f"{loaded.source}: n = {len(ds)}; {ours}; accuracy_level {accuracy_level}; ONNX Runtime CPU, "
               f"{threads} threads, {runs} interleaved runs")
    click.echo(markdown_table(cols, rows))
    (out / "bench.json").write_text(json.dumps([r.to_dict() for r in results], indent=2, default=str))


if __name__ == "__main__":
    main()
