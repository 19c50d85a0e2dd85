"""The `svdq-edge` command line."""

from __future__ import annotations

import json
from pathlib import Path

import click

from svdq_edge.artifact.layout import find_model_file, model_file
from svdq_edge.cli.common import (
    DEFAULTS,
    METHOD_HELP,
    is_causal_lm,
    make_config,
    quant_options,
    require_classifier,
    user_errors,
)
from svdq_edge.errors import UserError
from svdq_edge.util.logs import configure
from svdq_edge.util.memory import bound_heap
from svdq_edge.util.privacy import no_telemetry


@click.group()
@click.option("-v", "--verbose", count=True, help="more logging (-vv for debug)")
@click.version_option(package_name="svdq-edge")
def main(verbose: int) -> None:
    """Data-free SVD mixed-precision quantization, exported to ONNX Runtime."""
    configure(verbose)
    no_telemetry()
    bound_heap()


@main.command()
@click.argument("model", required=False)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="quantized model folder")
@click.option("--method", default=DEFAULTS.method, show_default=True, help=METHOD_HELP)
@quant_options
@click.option("--requantize", is_flag=True,
              help="GGUF sources: quantize the dequantized weights again (rounds them twice) instead of "
                   "transcoding the file's codes exactly")
@click.option("--overwrite", is_flag=True, help="replace an existing output folder")
@user_errors
def quantize(model, output, method, requantize, overwrite, **q):
    """Quantize MODEL (hub id, HF folder; default: the embedded MiniLM) into a folder.

    A quantized GGUF file (or `smollm2`) is transcoded: its codes, scales and mins are kept exactly.

    Examples: svdq-edge quantize ../shared/models/minilm-l6-sst2 -o out/sst2-w4
              svdq-edge quantize smollm2 -o out/smollm2-q41"""
    from svdq_edge.artifact.io import save_quantized
    from svdq_edge.artifact.outputs import claim_output
    from svdq_edge.sources.load import gguf_path

    gguf = gguf_path(model)
    if requantize and gguf is None:
        raise click.UsageError("--requantize applies to GGUF sources only")
    config = None
    if gguf is None or requantize:
        config = make_config(method, **q)
    else:
        _refuse_quant_options(["method", *q])
    # checked and locked before the slow part: a second writer of the same folder fails at once
    click.get_current_context().with_resource(claim_output(output, overwrite, inputs=(model, gguf)))
    if config is None:
        from svdq_edge.pipeline.transcode import transcode_gguf

        loaded, report = transcode_gguf(gguf)
    else:
        from svdq_edge.pipeline.stream import quantize_any

        if gguf is not None:
            click.echo(f"warning: {gguf.name} is already quantized; --requantize rounds its weights a second time",
                       err=True)
        loaded, report = quantize_any(model, config)
    save_quantized(loaded, report, output, overwrite=overwrite)
    tables = {n for n, m in loaded.model.named_modules() if type(m).__name__ == "QuantEmbedding"}
    n_lin = sum(1 for r in report.layers if r.name not in tables)
    what = f"{n_lin} linear layers" + (" and the token embedding" if tables else "")
    verb = "quantized" if config is not None else f"transcoded ({report.config.file_type})"
    click.echo(f"{verb} {what} in {report.seconds:.1f}s: {report.mean_bits():.2f} bits/weight, "
               f"mean relative weight error {report.mean_rel_error():.4f} -> {output}")


def _refuse_quant_options(names: list[str]) -> None:
    """A GGUF file is transcoded as it is: quantization options given on the command line would be ignored."""
    ctx = click.get_current_context()
    given = [n for n in names if ctx.get_parameter_source(n) is not click.core.ParameterSource.DEFAULT]
    if given:
        flags = ", ".join("--" + n.replace("_", "-") for n in given)
        raise click.UsageError(f"{flags}: a GGUF file is transcoded exactly; add --requantize to quantize its "
                               "weights again with these options")


@main.command()
@click.argument("folder", type=click.Path(exists=True, file_okay=False, path_type=Path))
@user_errors
def inspect(folder):
    """Per-layer table of a quantized folder, or what an ONNX folder holds (ops, layers, sizes).

    Example: svdq-edge inspect out/sst2-w4-onnx"""
    from svdq_edge.artifact.io import QUANT_CONFIG_FILE, read_quant_meta
    from svdq_edge.evaluation.explain import explain, layer_table, onnx_folder_summary

    if not (folder / QUANT_CONFIG_FILE).is_file():
        if find_model_file(folder) is None:
            raise UserError(f"{folder}: neither a quantized folder ({QUANT_CONFIG_FILE}) nor an ONNX folder "
                            "(model.onnx)")
        for line in onnx_folder_summary(folder):
            click.echo(line)
        return
    meta = read_quant_meta(folder)
    config = meta["config"]
    click.echo(json.dumps({k: v for k, v in config.items() if k != "layer_bits"}, sort_keys=True))
    for line in explain(config):
        click.echo(line)
    click.echo(layer_table(meta))


def load_any(model: str | None):
    """A quantized folder or an FP32 model."""
    from svdq_edge.artifact.io import is_quantized_dir, load_quantized
    from svdq_edge.sources.load import load_model

    if model is not None and is_quantized_dir(model):
        return load_quantized(model)[0]
    return load_model(model)


@main.command(name="eval")
@click.argument("model", required=False)
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="GLUE TSV (SST-2, RTE, MRPC, QNLI) for a classifier; a plain text file (e.g. WikiText-2's "
                   "wiki.test.raw) for a causal LM")
@click.option("--limit", type=click.IntRange(min=1), default=None,
              help="first N examples (classifier) or tokens (causal LM) only")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--context", type=click.IntRange(min=2), default=1024, show_default=True,
              help="causal LM: tokens per perplexity window")
@click.option("--stride", type=click.IntRange(min=1), default=512, show_default=True,
              help="causal LM: tokens between window starts (each token is scored once, with at least "
                   "context - stride tokens before it)")
@user_errors
def evaluate(model, data, limit, batch_size, context, stride):
    """Accuracy of a classifier on a GLUE TSV (n and a 95% CI), or perplexity of a causal LM on a text file
    (sliding windows, as llama-perplexity reports it). MODEL: FP32, a quantized folder, a GGUF, or an ONNX folder run
    under ONNX Runtime CPU.

    Examples: svdq-edge eval out/sst2-w4-onnx --data ../shared/data/glue/sst2/dev.tsv
              svdq-edge eval out/smollm2-q41-onnx --data ../shared/data/wikitext2/wiki.test.raw --limit 8192"""
    from svdq_edge.evaluation.data import read_glue_tsv
    from svdq_edge.evaluation.evaluate import accuracy, predict_logits
    from svdq_edge.sources.load import label2id_of

    onnx_folder = model is not None and Path(model).is_dir() and find_model_file(model) is not None
    if is_causal_lm(model):
        return _evaluate_perplexity(model, onnx_folder, data, limit, context, stride)
    if onnx_folder:
        return _evaluate_onnx(Path(model), data, limit, batch_size)
    ds = read_glue_tsv(data, limit, label2id_of(model))
    loaded = load_any(model)
    require_classifier(loaded, ds)
    acc = accuracy(predict_logits(loaded.model, loaded.tokenizer, ds, batch_size), ds.labels)
    click.echo(f"{ds.task} accuracy: {acc}")


@main.command()
@click.argument("model", required=False)
@click.option("-o", "--output", required=True, type=click.Path(path_type=Path), help="ONNX output folder")
@click.option("--fp32", is_flag=True, help="export the FP32 model (MODEL must not be a quantized folder)")
@click.option("--element-form", type=click.Choice(["auto", "ell", "compact"]), default="auto", show_default=True,
              help="ONNX form of an element correction")
@click.option("--accuracy-level", default=None,
              help="MatMulNBits accuracy_level: 0 computes in FP32 and matches the PyTorch reference; 4 quantizes "
                   "activations to int8 on CPU (faster, approximate); \"0,8:4\" sets 8-bit layers apart. Default: "
                   "4 for causal LMs (decode speed; a transcoded GGUF then computes as llama.cpp does, on int8 "
                   "activations), 0 for encoders and for --target web (the browser computes in FP32 at any level)")
@click.option("--exact", is_flag=True, help="accuracy level 0: compute in FP32, bit-faithful to the PyTorch reference "
                                            "(a transcoded GGUF: its dequantized weights exactly)")
@click.option("--graph", type=click.Choice(["auto", "fused", "traced"]), default="auto", show_default=True,
              help="fused = graph built directly with ORT's fused ops (decoders: Llama, Mistral, Qwen2, GPT-2, Gemma 3 "
                   "in onnxruntime-genai's layout; encoders: BERT), traced = torch.onnx trace in Optimum's layout (any "
                   "architecture); auto = fused where the family is covered, traced otherwise")
@click.option("--target", type=click.Choice(["cpu", "web"]), default="cpu", show_default=True,
              help="web: the quantized token embedding in standard ONNX ops (onnxruntime-web's WebGPU/JSEP bundle, "
                   "which transformers.js loads in browsers, has no GatherBlockQuantized); same numbers")
@click.option("--ort-format", type=click.Choice(["arm", "amd64"]), default=None,
              help="also write model.ort (ORT format, for ONNX Runtime's mobile and minimal builds) optimized for this "
                   "CPU family, and the required_operators.config a minimal build is compiled with")
@click.option("--layout", type=click.Choice(["ort", "transformers.js"]), default="ort", show_default=True,
              help="transformers.js: the model as onnx/model_<dtype>.onnx with the dtype (and external data) named in "
                   "config.json and the chat template in tokenizer_config.json, so transformers.js's "
                   "pipeline(task, folder) loads it with no options; every svdq-edge command reads both layouts")
@click.option("--overwrite", is_flag=True, help="replace an existing output folder")
@user_errors
def export(model, output, fp32, element_form, accuracy_level, exact, graph, target, ort_format, layout, overwrite):
    """Export MODEL (a quantized folder, or an FP32 model with --fp32) to ONNX.

    Examples: svdq-edge export out/sst2-w4 -o out/sst2-w4-onnx
              svdq-edge export out/sst2-w4 -o out/sst2-w4-web --target web --layout transformers.js"""
    from svdq_edge.artifact.io import is_quantized_dir, load_quantized
    from svdq_edge.artifact.outputs import claim_output
    from svdq_edge.exporters.export import EXPORT_REPORT, export_onnx
    from svdq_edge.exporters.onnx.linear import AccuracyLevels
    from svdq_edge.sources.load import ModelTask, load_model

    if exact and accuracy_level is not None:
        raise click.UsageError("--exact is --accuracy-level 0: give one of them")
    levels = AccuracyLevels(0) if exact else None if accuracy_level is None else AccuracyLevels.of(accuracy_level)
    click.get_current_context().with_resource(claim_output(output, overwrite, inputs=(model,)))
    quantized = model is not None and is_quantized_dir(model)
    if quantized and fp32:
        raise UserError(f"{model}: a quantized folder has no FP32 weights to export (drop --fp32)")
    if not quantized and not fp32:
        raise UserError(f"{model or 'the default model'}: not a quantized folder; run `svdq-edge quantize` "
                         "first, or pass --fp32 to export the FP32 model")
    config = None
    if quantized:
        loaded, config = load_quantized(model)
        cfg = config.to_dict()
    else:
        loaded, cfg = load_model(model), None
    if levels is None:
        levels = AccuracyLevels.default_for(loaded.task is ModelTask.CAUSAL_LM, target)
    out, sizes, layers = export_onnx(loaded, output, cfg, element_form, levels, overwrite, graph=graph,
                                     ort_target=ort_format, target=target, layout=layout)
    path = json.loads((out / EXPORT_REPORT).read_text())["graph"]
    click.echo(f"exported {'FP32' if cfg is None else f'{len(layers)} quantized layers'} ({path} graph, "
               f"accuracy level {levels}) -> {model_file(out)}{' + model.ort' if ort_format else ''}: "
               f"{sizes.summary()}")


def _evaluate_perplexity(model: str, onnx_folder: bool, data: Path, limit: int | None, context: int,
                         stride: int) -> None:
    """eval on a causal LM: perplexity of the text file, the ONNX file under ONNX Runtime CPU or the model in
    PyTorch."""
    from svdq_edge.evaluation.data import read_text_ids
    from svdq_edge.model.lm import torch_window_nll
    from svdq_edge.runtime.decode.perplexity import onnx_window_scorer, perplexity
    from svdq_edge.sources.load import load_tokenizer

    if not data.is_file():
        raise UserError(f"{data}: no such text file")
    if onnx_folder:
        from svdq_edge.runtime.runtimes.session import make_session

        tokenizer, where = load_tokenizer(str(model)), "ONNX Runtime CPU"
        score = onnx_window_scorer(make_session(Path(model), "cpu", None))
    else:
        loaded = load_any(model)
        tokenizer, where = loaded.tokenizer, "PyTorch"
        score = lambda ids, n: torch_window_nll(loaded.model, ids, n)  # noqa: E731
    if tokenizer is None:
        raise UserError(f"{model}: no tokenizer files (perplexity needs the model's tokenizer)")
    ids = read_text_ids(tokenizer, data, limit)
    if ids.shape[0] < 2:
        raise UserError(f"{data}: fewer than 2 tokens of text")
    p = perplexity(score, ids, context, min(stride, context - 1))
    click.echo(f"perplexity ({where}): {p.ppl:.4f} over {p.tokens} tokens of {data.name} ({p.windows} windows of "
               f"up to {context} tokens, stride {min(stride, context - 1)}; mean NLL {p.nll:.4f} nats)")


def _evaluate_onnx(folder: Path, data: Path, limit: int | None, batch_size: int) -> None:
    """eval on an ONNX folder: the file itself under ONNX Runtime (CPU), labels from its config.json."""
    import torch

    from svdq_edge.cli.common import require_labels
    from svdq_edge.evaluation.data import read_glue_tsv
    from svdq_edge.evaluation.evaluate import accuracy
    from svdq_edge.runtime.measure.evaluate import onnx_outputs
    from svdq_edge.runtime.runtimes.session import make_session
    from svdq_edge.sources.load import ModelTask, detect_task, load_config, load_tokenizer

    config = load_config(str(folder))
    if detect_task(config) is not ModelTask.SEQUENCE_CLASSIFICATION:
        raise UserError(f"{folder}: not a sequence classifier (eval measures accuracy on labelled GLUE data)")
    tokenizer = load_tokenizer(str(folder))
    if tokenizer is None:
        raise UserError(f"{folder}: no tokenizer files beside the ONNX model")
    ds = read_glue_tsv(data, limit, config.label2id)
    require_labels(ds, config.num_labels)
    logits = onnx_outputs(make_session(folder, "cpu", None), tokenizer, ds, batch_size=batch_size, desc="eval")
    click.echo(f"{ds.task} accuracy (ONNX Runtime CPU): {accuracy(torch.from_numpy(logits), ds.labels)}")


def _register() -> None:
    from svdq_edge.cli.compare import compare
    from svdq_edge.cli.generate import generate
    from svdq_edge.cli.run import run
    from svdq_edge.cli.tune import tune

    main.add_command(compare)
    main.add_command(tune)
    main.add_command(run)
    main.add_command(generate)


_register()


if __name__ == "__main__":
    main()
