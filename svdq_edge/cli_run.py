"""`svdq-edge run` (the main job) and `svdq-edge compare` (methods and backends side by side)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from svdq_edge.cli_common import DEFAULTS, make_config, quant_options, require_classifier, user_errors
from svdq_edge.errors import UserError

DEFAULT_METHODS = "rtn,random,magnitude,svd,svd-residual,range,proxy"
DEFAULT_OUT = Path("svdq-edge-out")
LISTED = ("method", "bits", "keep", "seed")  # compare sets these from its lists: they win over a --recipe


def backend_options(fn):
    opts = [
        click.option("--runtimes", default=None,
                     help="comma-separated runtimes, one table across them: ort-cpu, ort-cuda, openvino, "
                          "openvino-f32 (encoders); genai, llamacpp (decoders: beside the ONNX Runtime loop). "
                          "A runtime that cannot run here is skipped with the reason. Default: ort-cpu, plus "
                          "ort-cuda when present"),
        click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True,
                     help="ONNX Runtime intra-op threads"),
        click.option("--runs", type=click.IntRange(min=1), default=30, show_default=True,
                     help="timed runs per latency shape"),
        click.option("--shapes", default="1x128,8x128", show_default=True, help="latency shapes, batch x seq"),
        click.option("--accuracy-levels", default="0,4", show_default=True,
                     help="MatMulNBits accuracy_level of our exports, one backend each (0: FP32 compute, "
                          "bit-faithful to PyTorch; 4: int8 activations on CPU, faster)"),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def model_name(source: str) -> str:
    """A readable name: the folder name, or the embedded default's name."""
    from svdq_edge.sources import default_model_path

    try:
        if Path(source).resolve() == default_model_path().resolve():
            return "all-MiniLM-L6-v2 (embedded)"
    except Exception:  # the default package may be absent: the source is then a path or hub id
        pass
    return Path(source).name if Path(source).exists() else source


def _parse_levels(text: str) -> tuple[int, ...]:
    return tuple(_number_list(text, "--accuracy-levels", int, "0-4", allowed=range(5)))


def _parse_shapes(text: str) -> list[tuple[int, int]]:
    try:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--shapes must look like 1x128,8x128, got {text!r}") from None
    if not shapes or any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise UserError(f"--shapes must look like 1x128,8x128, got {text!r}")
    return shapes


def _runtimes(text: str | None, task: str) -> list[str]:
    """The runtimes to run (names); those that cannot serve here are said on stderr, one line each."""
    from svdq_edge.runtime.runtimes import select_runtimes

    chosen, skipped = select_runtimes(text, task)
    for name, why in skipped.items():
        click.echo(f"note: runtime {name} skipped: {why}", err=True)
    return [r.name for r in chosen]


def _validate_and_report(loaded, built, data, stage, out, title, runtimes, threads, shapes, runs, has_labels,
                         extra_md="", meta=None):
    """Validate, print the table and write the report into `stage` (the folder that becomes `out`)."""
    from svdq_edge.runtime.pipeline import validate_all
    from svdq_edge.runtime.report import backend_table, write_report

    validation = validate_all(built, loaded, data, runtimes, threads, shapes, runs, has_labels)
    click.echo(f"\n{title}: runtimes {', '.join(runtimes)}, {threads} threads, n={len(data)}")
    click.echo(backend_table(validation.results))
    for key, why in validation.skipped.items():
        click.echo(f"skipped {key}: {why}")
    files = write_report(stage, title, validation, extra_md, meta)
    click.echo("\nsizes: " + "; ".join(f"{k} {s.summary()}" for k, s in built.sizes.items() if k != "fp32"))
    click.echo("wrote " + ", ".join(str(out / f.relative_to(stage)) for f in files))
    return validation


@click.command()
@click.argument("model", required=False)
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="GLUE TSV for accuracy (classifiers); default: fidelity on the sentences shipped with svdq-edge")
@click.option("--method", default=DEFAULTS.method, show_default=True, help="saliency method")
@quant_options
@backend_options
@click.option("--baselines", default="ort-int8,ort-rtn4,ort-rtn4-acc4", show_default=True,
              help="ORT baselines to build")
@click.option("--out", type=click.Path(path_type=Path), default=DEFAULT_OUT / "run", show_default=True,
              help="report folder (written whole at the end)")
@click.option("--overwrite", is_flag=True, help="replace an existing report folder")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="first N examples only")
@user_errors
def run(model, data, method, runtimes, threads, runs, shapes, accuracy_levels, baselines, out, overwrite,
        limit, **q):
    """The main job: quantize MODEL, export it, validate and benchmark it under ONNX Runtime beside FP32 and ORT's
    own quantizers. With no MODEL: the embedded all-MiniLM-L6-v2 encoder, offline."""
    from svdq_edge.data import read_glue_tsv
    from svdq_edge.outputs import staged_output
    from svdq_edge.runtime.pipeline import build_backends, shipped_sentences
    from svdq_edge.sources import (
        ModelTask,
        detect_task,
        gguf_path,
        label2id_of,
        load_config,
        load_model,
        resolve_source,
    )

    if gguf_path(model) is not None or detect_task(load_config(resolve_source(model))) is ModelTask.CAUSAL_LM:
        raise click.UsageError("run validates encoders; for a causal LM use `svdq-edge compare MODEL --data "
                               "wiki.test.raw` (perplexity, latency) or `python -m svdq_edge.runtime.bench_decoder`")
    config = make_config(method, **q)
    levels = _parse_levels(accuracy_levels)
    shape_list = _parse_shapes(shapes)
    runtime_list = _runtimes(runtimes, "encoder")
    ds = read_glue_tsv(data, limit, label2id_of(model)) if data else shipped_sentences().head(limit)
    names = tuple(b for b in baselines.split(",") if b)
    with staged_output(out, overwrite) as stage:
        loaded = load_model(model)
        if data:
            require_classifier(loaded)
        built = build_backends(loaded, stage / "backends", {"ours": config}, names, levels, save_quantized_dirs=True)
        ours = (f"{config.method} W{config.bits} b{config.block_size} keep {config.keep:g} {config.structure.value}, "
                f"embedding {config.embedding_bits or 'FP32'}-bit")
        title = f"svdq-edge run: {model_name(loaded.source)} ({loaded.task.value}), ours = {ours}"
        _validate_and_report(loaded, built, ds, stage, out, title, runtime_list, threads, shape_list, runs,
                             has_labels=data is not None, meta={"config": config.to_dict(), "data": ds.path})


@click.command()
@click.argument("model", required=False)
@click.option("--data", required=True, type=click.Path(path_type=Path),
              help="GLUE TSV (SST-2, RTE, MRPC, QNLI); for a causal LM, raw text for perplexity (WikiText-2)")
@click.option("--methods", default=DEFAULT_METHODS, show_default=True,
              help="comma-separated saliency methods for the PyTorch table (calibrated ones need --calib-data)")
@click.option("--bits-list", default="4,3", show_default=True, help="comma-separated bit widths, one table each")
@click.option("--keep-list", default=None, help="comma-separated FP32 budgets, one table each (default: --keep)")
@click.option("--calib-seeds", default="0", show_default=True,
              help="comma-separated calibration seeds: calibrated methods run once per seed")
@click.option("--ort-check", is_flag=True,
              help="also export every PyTorch-table model and run it under ONNX Runtime CPU (accuracy, agreement)")
@quant_options
@backend_options
@click.option("--backends", default="ort-int8,ort-rtn4,ort-rtn4-acc4,ort-hqq4", show_default=True,
              help="ORT baselines for the ONNX tables ('none' skips the ONNX part)")
@click.option("--onnx-methods", default=DEFAULTS.method, show_default=True,
              help="our methods exported to ONNX (at the first of --bits-list)")
@click.option("--out", type=click.Path(path_type=Path), default=None,
              help="report folder, written whole at the end (default: svdq-edge-out/compare-<task>)")
@click.option("--overwrite", is_flag=True, help="replace an existing report folder")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="first N examples only")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@user_errors
def compare(model, data, methods, bits_list, keep_list, calib_seeds, ort_check, runtimes, threads, runs,
            shapes, accuracy_levels, backends, onnx_methods, out, overwrite, limit, batch_size, **q):
    """Compare saliency methods (PyTorch, optionally checked under ONNX Runtime) and ONNX backends on the same
    examples. For a causal LM: perplexity on --data (first --limit tokens) and prefill/decode latency of FP32 ONNX,
    ORT RTN INT4 and our --onnx-methods exports, with the KV cache."""
    from svdq_edge.compare import compare_methods, results_table, seed_summary_table
    from svdq_edge.data import read_glue_tsv
    from svdq_edge.outputs import staged_output
    from svdq_edge.runtime.pipeline import build_backends
    from svdq_edge.runtime.torch_parity import ort_checker
    from svdq_edge.sources import label2id_of, load_model

    names = [m.strip() for m in methods.split(",") if m.strip()]
    bits_values = _number_list(bits_list, "--bits-list")
    keeps = _number_list(keep_list, "--keep-list", float, "numbers") if keep_list else [q["keep"]]
    seeds = _number_list(calib_seeds, "--calib-seeds")
    q.pop("bits"), q.pop("keep"), q.pop("seed")
    if _is_causal_lm(model):  # decoders: perplexity on raw text + prefill/decode latency, FP32 vs ORT RTN vs ours
        from svdq_edge.runtime.bench_decoder import decoder_report

        runtime_list = _runtimes(runtimes, "decoder")

        configs = {f"ours-{m.strip()}": make_config(m.strip(), bits=bits_values[0], keep=keeps[0], seed=seeds[0],
                                                    forced=LISTED, **q)
                   for m in onnx_methods.split(",") if m.strip()}
        with staged_output(out or DEFAULT_OUT / "compare-causal-lm", overwrite) as stage:
            table = decoder_report(model, configs, Path(data), ppl_tokens=limit or 16384, runs=runs, threads=threads,
                                   out=stage, genai="genai" in runtime_list, llamacpp="llamacpp" in runtime_list)
        click.echo(table)
        return
    ds = read_glue_tsv(data, limit, label2id_of(model))
    grid = {(b, k): _method_configs(names, seeds, bits=b, keep=k, **q) for b in bits_values for k in keeps}
    onnx_configs = {f"ours-{m}": make_config(m.strip(), bits=bits_values[0], keep=keeps[0], seed=seeds[0],
                                             forced=LISTED, **q)
                    for m in onnx_methods.split(",") if m.strip()}
    do_onnx = backends.strip().lower() != "none"
    levels = _parse_levels(accuracy_levels)
    shape_list, runtime_list = (_parse_shapes(shapes), _runtimes(runtimes, "encoder")) if do_onnx else ([], [])
    out = out or DEFAULT_OUT / f"compare-{ds.task}"
    with staged_output(out, overwrite) as stage:
        loaded = load_model(model)
        require_classifier(loaded)
        checker = ort_checker(loaded, ds, stage / "ort-check", threads) if ort_check else None
        md, dump = [], {}
        for (b, k), configs in grid.items():
            results = compare_methods(loaded, ds, configs, batch_size, ort_check=checker)
            c0 = next(iter(configs.values()))
            head = (f"{ds.task} dev, n={len(ds)}, PyTorch{' + ONNX Runtime CPU' if ort_check else ''}: W{b} block "
                    f"{c0.block_size}, keep {k:g}, structure {c0.structure.value}, embedding "
                    f"{c0.embedding_bits or 'FP32'}, calibration seeds {','.join(map(str, seeds))}")
            tables = [results_table(results)]
            if len(seeds) > 1 and any(c.calib_data for c in configs.values()):
                tables.append("mean over calibration seeds:\n\n" + seed_summary_table(results))
            click.echo(f"\n{head}\n" + "\n\n".join(tables))
            md += [f"## {head}", "", *tables, ""]
            dump[f"W{b} keep {k:g}"] = [_result_dict(r) for r in results]
        (stage / "pytorch.json").write_text(json.dumps(dump, indent=2))
        if not do_onnx:
            (stage / "report.md").write_text("\n".join(md))
        else:
            baseline_names = tuple(x.strip() for x in backends.split(",") if x.strip())
            built = build_backends(loaded, stage / "backends", onnx_configs, baseline_names, levels)
            title = f"svdq-edge compare: {model_name(loaded.source)} on {ds.task} dev"
            _validate_and_report(loaded, built, ds, stage, out, title, runtime_list, threads, shape_list, runs,
                                 True, extra_md="\n".join(md),
                                 meta={"data": ds.path, "ours": {k: c.to_dict() for k, c in onnx_configs.items()}})
    if not do_onnx:
        click.echo(f"\nwrote {out / 'pytorch.json'}, {out / 'report.md'}")


def _is_causal_lm(model: str | None) -> bool:
    from svdq_edge.sources import ModelTask, detect_task, load_config, resolve_source

    return detect_task(load_config(resolve_source(model))) is ModelTask.CAUSAL_LM


def _method_configs(names: list[str], seeds: list[int], **q) -> dict:
    """Labelled configs: calibrated methods once per seed ('awq s1'), data-free ones once (first seed)."""
    from svdq_edge.saliency import available, get

    configs = {}
    for m in names:
        if m in available() and get(m).needs_calibration:
            configs.update({f"{m} s{s}": make_config(m, seed=s, forced=LISTED, **q) for s in seeds})
        else:
            configs[m] = make_config(m, seed=seeds[0], forced=LISTED, **q)
    return configs


def _result_dict(r) -> dict:
    d = {"label": r.label, "method": r.method, "acc": r.acc.value, "n": r.acc.n, "ci95": r.acc.ci, "kl": r.kl,
         "agree": r.agree, "out_err": r.out_err, "bits": r.bits, "seconds": r.seconds,
         "config": None if r.config is None else r.config.to_dict()}
    for ref in ("vs_fp32", "vs_rtn", "vs_svd"):
        p = getattr(r, ref)
        if p is not None:
            d[ref] = {"diff": p.diff, "ci95": list(p.ci), "mcnemar_p": p.p_value}
    if r.ort is not None:
        d["ort_cpu"] = {"acc": r.ort.acc.value, "agree_with_torch": r.ort.agree_with_torch,
                        "max_abs_diff": r.ort.max_abs_diff}
    return d


def _number_list(text: str, option: str, convert=int, what: str = "integers", allowed=None) -> list:
    """Comma-separated numbers (each through `convert`, optionally within `allowed`), or a one-line error."""
    try:
        values = [convert(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or (allowed is not None and any(v not in allowed for v in values)):
        raise UserError(f"{option} must be a comma-separated list of {what}, got {text!r}")
    return values
