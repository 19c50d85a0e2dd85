"""The `svdq-edge` command line."""

from __future__ import annotations

import functools
import json
import logging
from pathlib import Path

import click

from svdq_edge.config import SUPPORTED_BITS, ConfigError, QuantConfig, Structure
from svdq_edge.data import DataError
from svdq_edge.io import OutputExistsError
from svdq_edge.sources import ModelSourceError

DEFAULT_METHODS = "rtn,random,magnitude,svd,svd-residual,range"
DEFAULTS = QuantConfig()
USER_ERRORS = (ConfigError, ModelSourceError, DataError, OutputExistsError, ValueError, FileNotFoundError)


def user_errors(fn):
    """Turn expected failures into one-line `Error: ...` messages (exit code 1) instead of tracebacks."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except USER_ERRORS as e:
            raise click.ClickException(str(e).splitlines()[0] if str(e) else type(e).__name__) from None

    return wrapper


def quant_options(fn):
    """Options shared by every command that quantizes."""
    opts = [
        click.option("--bits", type=int, default=DEFAULTS.bits, show_default=True,
                     help=f"code width, one of {SUPPORTED_BITS}"),
        click.option("--block-size", type=int, default=DEFAULTS.block_size, show_default=True,
                     help="block length along K (power of two, 16-256)"),
        click.option("--keep", type=float, default=DEFAULTS.keep, show_default=True,
                     help="fraction of each layer's weights kept in FP32 (0-0.5)"),
        click.option("--structure", type=click.Choice([s.value for s in Structure]),
                     default=DEFAULTS.structure.value, show_default=True, help="shape of the FP32 part"),
        click.option("--rank", type=float, default=None,
                     help="SVD rank for svd scores (>= 1), or an energy fraction in (0, 1); default per method"),
        click.option("--symmetric", is_flag=True, help="symmetric codes (no per-block zero point search)"),
        click.option("--clip/--no-clip", default=DEFAULTS.clip, show_default=True,
                     help="per-block range shrink search"),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--skip", default=",".join(DEFAULTS.skip), show_default=True,
                     help="comma-separated module-name substrings left in FP32"),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def make_config(method: str, bits, block_size, keep, structure, rank, symmetric, clip, seed, skip) -> QuantConfig:
    if rank is not None and float(rank).is_integer():
        rank = int(rank)
    skip_t = tuple(s for s in skip.split(",") if s)
    return QuantConfig(bits=bits, block_size=block_size, keep=keep, structure=structure, rank=rank,
                       symmetric=symmetric, clip=clip, seed=seed, method=method, skip=skip_t)


@click.group()
@click.option("-v", "--verbose", count=True, help="more logging (-vv for debug)")
@click.version_option(package_name="svdq-edge")
def main(verbose: int) -> None:
    """Data-free SVD mixed-precision quantization, exported to ONNX Runtime."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")


@main.command()
@click.argument("model", required=False)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="quantized model folder")
@click.option("--method", default=DEFAULTS.method, show_default=True, help="saliency method")
@quant_options
@click.option("--overwrite", is_flag=True, help="replace an existing output folder")
@user_errors
def quantize(model, output, method, overwrite, **q):
    """Quantize MODEL (hub id, HF folder; default: the embedded MiniLM) into a folder."""
    from svdq_edge.apply import quantize_model
    from svdq_edge.io import prepare_output, save_quantized
    from svdq_edge.sources import load_model

    config = make_config(method, **q)
    prepare_output(output, overwrite)  # fail before the slow part
    loaded = load_model(model)
    report = quantize_model(loaded.model, config)
    save_quantized(loaded, report, output, overwrite=overwrite)
    click.echo(f"quantized {len(report.layers)} layers in {report.seconds:.1f}s: {report.mean_bits():.2f} bits/weight, "
               f"mean relative weight error {report.mean_rel_error():.4f} -> {output}")


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@user_errors
def inspect(folder):
    """Per-layer table of a quantized folder."""
    from svdq_edge.io import read_quant_meta
    from svdq_edge.table import markdown_table

    meta = read_quant_meta(folder)
    rep = meta["report"]
    rows = [[r["name"], f"{r['shape'][0]}x{r['shape'][1]}", r["structure"] or "-", f"{100 * r['kept']:.2f}",
             f"{r['bits_per_weight']:.2f}", f"{r['rel_error']:.4f}"] for r in rep["layers"]]
    click.echo(json.dumps(meta["config"], sort_keys=True))
    click.echo(markdown_table(["layer", "out x in", "correction", "kept %", "bits/w", "rel err"], rows))
    click.echo(f"{len(rows)} layers, {rep['mean_bits']:.2f} bits/weight, quantized in {rep['seconds']:.1f}s")


def load_any(model: str | None):
    """A quantized folder or an FP32 model."""
    from svdq_edge.io import is_quantized_dir, load_quantized
    from svdq_edge.sources import load_model

    if model is not None and is_quantized_dir(model):
        return load_quantized(model)[0]
    return load_model(model)


@main.command(name="eval")
@click.argument("model", required=False)
@click.option("--data", required=True, type=click.Path(path_type=Path), help="GLUE TSV (SST-2, RTE, MRPC, QNLI)")
@click.option("--limit", type=int, default=None, help="first N examples only")
@click.option("--batch-size", type=int, default=32, show_default=True)
@user_errors
def evaluate(model, data, limit, batch_size):
    """Accuracy of MODEL (FP32 or a quantized folder) on a GLUE TSV, with n and a 95% CI."""
    from svdq_edge.data import read_glue_tsv
    from svdq_edge.evaluate import accuracy, predict_logits

    ds = read_glue_tsv(data, limit)
    loaded = load_any(model)
    _require_classifier(loaded)
    acc = accuracy(predict_logits(loaded.model, loaded.tokenizer, ds, batch_size), ds.labels)
    click.echo(f"{ds.task} accuracy: {acc}")


def _require_classifier(loaded) -> None:
    from svdq_edge.sources import ModelTask

    if loaded.task is not ModelTask.SEQUENCE_CLASSIFICATION:
        raise ValueError(f"{loaded.source}: a sequence-classification model is needed for GLUE accuracy")
    if loaded.tokenizer is None:
        raise ValueError(f"{loaded.source}: no tokenizer files")


@main.command()
@click.argument("model", required=False)
@click.option("--data", required=True, type=click.Path(path_type=Path), help="GLUE TSV (SST-2, RTE, MRPC, QNLI)")
@click.option("--methods", default=DEFAULT_METHODS, show_default=True, help="comma-separated saliency methods")
@click.option("--bits-list", default="4,3", show_default=True, help="comma-separated bit widths, one table each")
@quant_options
@click.option("--limit", type=int, default=None, help="first N examples only")
@click.option("--batch-size", type=int, default=32, show_default=True)
@click.option("--json-out", type=click.Path(path_type=Path), default=None, help="also write the results as JSON")
@user_errors
def compare(model, data, methods, bits_list, limit, batch_size, json_out, **q):
    """Compare saliency methods at the same bits and budget on the same examples (PyTorch)."""
    from svdq_edge.compare import compare_methods, results_table
    from svdq_edge.data import read_glue_tsv
    from svdq_edge.sources import load_model

    ds = read_glue_tsv(data, limit)
    names = [m.strip() for m in methods.split(",") if m.strip()]
    bits_values = [int(b) for b in bits_list.split(",") if b.strip()]
    q.pop("bits")
    configs_by_bits = {b: {m: make_config(m, bits=b, **q) for m in names} for b in bits_values}  # validate first
    loaded = load_model(model)
    _require_classifier(loaded)
    dump = {}
    for b, configs in configs_by_bits.items():
        results = compare_methods(loaded, ds, configs, batch_size)
        c0 = next(iter(configs.values()))
        click.echo(f"\n{ds.task} dev, n={len(ds)}: W{b} block {c0.block_size}, keep {c0.keep:g}, "
                   f"structure {c0.structure.value}, clip {c0.clip}")
        click.echo(results_table(results))
        dump[f"W{b}"] = [{"method": r.label, "acc": r.acc.value, "n": r.acc.n, "ci": r.acc.ci, "kl": r.kl,
                          "agree": r.agree, "out_err": r.out_err, "bits": r.bits, "seconds": r.seconds,
                          "config": None if r.config is None else r.config.to_dict()} for r in results]
    if json_out:
        Path(json_out).write_text(json.dumps(dump, indent=2))


@main.command()
@click.argument("model", required=False)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="ONNX output folder")
@click.option("--fp32", is_flag=True, help="export the FP32 model (MODEL must not be a quantized folder)")
@click.option("--element-form", type=click.Choice(["auto", "ell", "compact"]), default="auto", show_default=True,
              help="ONNX form of an element correction")
@click.option("--accuracy-level", type=click.IntRange(0, 4), default=0, show_default=True,
              help="MatMulNBits accuracy_level: 0 computes in FP32 and matches the PyTorch reference; "
                   "4 quantizes activations to int8 on CPU (faster, approximate)")
@click.option("--overwrite", is_flag=True, help="replace an existing output folder")
@user_errors
def export(model, output, fp32, element_form, accuracy_level, overwrite):
    """Export MODEL (a quantized folder, or an FP32 model with --fp32) to ONNX."""
    from svdq_edge.exporters.export import export_onnx
    from svdq_edge.io import is_quantized_dir, load_quantized, prepare_output
    from svdq_edge.sources import load_model

    prepare_output(output, overwrite)
    quantized = model is not None and is_quantized_dir(model)
    if quantized and fp32:
        raise ValueError(f"{model}: a quantized folder has no FP32 weights to export (drop --fp32)")
    if not quantized and not fp32:
        raise ValueError(f"{model or 'the default model'}: not a quantized folder; run `svdq-edge quantize` "
                         "first, or pass --fp32 to export the FP32 model")
    if quantized:
        loaded, config = load_quantized(model)
        cfg = config.to_dict()
    else:
        loaded, cfg = load_model(model), None
    out, sizes, layers = export_onnx(loaded, output, cfg, element_form, accuracy_level, overwrite)
    click.echo(f"exported {'FP32' if cfg is None else f'{len(layers)} quantized layers'} -> {out}/model.onnx: "
               f"{sizes.summary()}")
