"""`svdq-edge tune`: search quantization settings under ONNX Runtime, write the Pareto frontier, export the pick."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import click

from svdq_edge.cli.common import THREADS, deprecated_alias, user_errors

DEFAULT_OUT = Path("svdq-edge-out/tune")


@click.command()
@click.argument("model", required=False)
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), default=None,
              help="GLUE dev TSV for a classifier (a feature extractor uses the shipped sentences)")
@click.option("--metric", type=click.Choice(["kl", "accuracy", "cosine"]), default=None,
              help="fidelity to minimise the loss of (default: kl for a classifier, cosine for a feature extractor)")
@click.option("--max-size", type=click.FloatRange(0.0, 1.0, min_open=True), default=0.25, show_default=True,
              help="largest file to pick, as a ratio to the FP32 file")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), default=DEFAULT_OUT, show_default=True,
              help="work folder: cached candidates (an interrupted tune resumes from them), report, plot, best/")
@deprecated_alias("--out", "-o/--output", "out", type=click.Path(path_type=Path))
@click.option("--limit", type=click.IntRange(min=1), default=None, help="evaluate on the first N rows only")
@click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True, help="timed runs per shape")
@click.option("--threads", type=THREADS, default=2, show_default=True, help="ONNX Runtime intra-op threads")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="build the candidates as one Ray task each (extra `cluster`; OUT must be reachable by every "
                   "node): a local Ray when no ADDRESS follows (put --ray after MODEL, or write --ray local)")
@user_errors
def tune(model, data, metric, max_size, out, limit, runs, threads, ray_address):
    """Quantize MODEL (default: the embedded MiniLM) several ways, measure each candidate under ONNX Runtime with
    FP32 and INT8 dynamic in one interleaved run, write the size x latency x fidelity frontier (report.json,
    report.md, frontier.png) and export the least-loss candidate within --max-size to OUT/best.

    Example: svdq-edge tune ../shared/models/minilm-l6-sst2 --data ../shared/data/glue/sst2/dev.tsv --max-size 0.22"""
    from svdq_edge.artifact.outputs import MARKER, MARKER_TEXT, claim_output
    from svdq_edge.cli.common import require_classifier, require_labels
    from svdq_edge.evaluation.data import read_glue_tsv
    from svdq_edge.runtime.validation.pipeline import shipped_sentences
    from svdq_edge.runtime.validation.tune import default_space
    from svdq_edge.runtime.validation.tune import tune as run_tune
    from svdq_edge.sources.load import ModelTask, load_model

    # OUT is a cache that a later tune reuses (not replaced): locked for the whole search, and marked as ours
    click.get_current_context().with_resource(claim_output(out, overwrite=True, inputs=(model, data)))
    loaded = load_model(model)
    feature = loaded.task is ModelTask.FEATURE_EXTRACTION
    if not feature:
        require_classifier(loaded)
        if data is None:
            raise click.UsageError("a classifier needs --data (a GLUE dev TSV)")
    metric = metric or ("cosine" if feature else "kl")
    if feature and metric != "cosine" or not feature and metric == "cosine":
        raise click.UsageError(f"--metric {metric} does not apply to a {loaded.task.value} model")
    ds = shipped_sentences() if feature else read_glue_tsv(data, limit, loaded.model.config.label2id)
    if not feature:
        require_labels(ds, loaded.model.config.num_labels)
    from svdq_edge.cli.run import ray_sweep

    out.mkdir(parents=True, exist_ok=True)
    (out / MARKER).write_text(MARKER_TEXT)
    with ray_sweep(ray_address) as sweep:
        result = run_tune(loaded, ds, metric, max_size, out, default_space(), runs=runs, threads=threads,
                          has_labels=not feature, sweep=sweep)
    write_report(out, result)
    for label, why in result["failed"].items():
        click.echo(f"candidate {label} failed after a retry (left out): {why}", err=True)
    chosen = result["chosen"]
    if chosen is None:
        smallest = min((r for r in result["rows"] if r["ours"]), key=lambda r: r["size_ratio"])
        raise click.ClickException(f"no candidate within --max-size {max_size:g}: the smallest is "
                                   f"{smallest['label']} at {smallest['size_ratio']:.3f}x (see {out}/report.md)")
    export_best(Path(chosen["path"]), out / "best")
    click.echo((out / "report.md").read_text())
    click.echo(f"picked {chosen['label']} ({chosen['size_ratio']:.3f}x FP32, {metric} loss {chosen['loss']:.5f}) "
               f"-> {out / 'best'}")


def write_report(out: Path, result: dict) -> None:
    from svdq_edge.util.table import markdown_table

    (out / "report.json").write_text(json.dumps(result, indent=2))
    shape = result["latency_shape"]
    fp32 = result["rows"][0]["latency_ms"]
    shapes = list(fp32)
    chosen = result["chosen"] and result["chosen"]["label"]
    accuracy = all(r["accuracy"] is not None for r in result["rows"])
    rows = [[r["label"] + (" (picked)" if r["label"] == chosen else ""), f"{r['size_mb']:.1f}",
             f"{r['size_ratio']:.3f}x", *(f"{r['latency_ms'][s]:.2f} ({r['latency_ms'][s] / fp32[s]:.2f}x)"
                                          for s in shapes),
             f"{r['loss']:.5f}", *([f"{100 * r['accuracy']:.2f}"] if accuracy else []), "yes" if r["frontier"] else ""]
            for r in result["rows"]]
    loss = {"kl": "KL to FP32", "cosine": "1 - mean cosine", "accuracy": "- accuracy"}[result["metric"]]
    head = (f"{result['graph']} graphs, ONNX Runtime CPU; frontier over size, {shape} latency and {loss}; "
            f"pick: least loss within {result['max_size']:g}x the FP32 file\n\n")
    failed = "".join(f"\nfailed after a retry (left out): {label}: {why}" for label, why in result["failed"].items())
    (out / "report.md").write_text(head + markdown_table(
        ["candidate", "MB", "size", *(f"{s} ms" for s in shapes), loss, *(["accuracy %"] if accuracy else []),
         "frontier"], rows) + "\n" + failed)
    plot_frontier(out / "frontier.png", result)


def plot_frontier(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    shape = result["latency_shape"]
    fig, axes = plt.subplots(1, 2, figsize=(11, 4.4))
    for ax, x, label in ((axes[0], "size_ratio", "size (x FP32 file)"), (axes[1], None, f"{shape} latency (ms)")):
        for r in result["rows"]:
            xv = r[x] if x else r["latency_ms"][shape]
            ax.plot(xv, r["loss"], "o" if r["frontier"] else "x", color="C0" if r["ours"] else "C3")
            ax.annotate(r["label"], (xv, r["loss"]), fontsize=7, xytext=(3, 3), textcoords="offset points")
        ax.set_xlabel(label)
        ax.set_ylabel(f"loss ({result['metric']})")
    fig.suptitle("tune: o = on the frontier, x = dominated; red = FP32 / ORT INT8 dynamic")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def export_best(src: Path, dst: Path) -> None:
    """Copy the chosen ONNX folder to `dst`, replacing an older pick only once the copy is complete."""
    from svdq_edge.artifact.outputs import staged_output

    with staged_output(dst, overwrite=True) as tmp:
        shutil.copytree(src, tmp, dirs_exist_ok=True)
