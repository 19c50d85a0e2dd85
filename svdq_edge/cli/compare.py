"""`svdq-edge compare`: saliency methods side by side in PyTorch, then ONNX backends under every runtime; on a Ray
cluster with `--ray` (runtime/validation/sweep.py)."""

from __future__ import annotations

import json
from pathlib import Path

import click

from svdq_edge.cli.common import (
    DEFAULTS,
    deprecated_alias,
    make_config,
    quant_options,
    require_classifier,
    user_errors,
)
from svdq_edge.cli.run import (
    DEFAULT_OUT,
    artifacts_option,
    backend_options,
    backends_folder,
    model_name,
    number_list,
    parse_levels,
    parse_shapes,
    ray_sweep,
    runtime_names,
    validate_and_report,
)
from svdq_edge.errors import UserError

DEFAULT_METHODS = "rtn,random,magnitude,svd,svd-residual,range,proxy"
# QuantConfig field -> the options that set it from compare's command line. Over a --recipe, a field is taken from
# compare's lists only when one of its options was given (the method always: it names every row).
LISTED = {"method": (), "bits": ("bits_list", "bits"), "keep": ("keep_list", "keep"), "seed": ("calib_seeds", "seed")}


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
@click.option("--baselines", "backends", default="ort-int8,ort-rtn4,ort-rtn4-acc4,ort-hqq4", show_default=True,
              help="ORT baselines for the ONNX tables ('none' skips the ONNX part)")
@deprecated_alias("--backends", "--baselines", "backends")
@click.option("--onnx-methods", default=DEFAULTS.method, show_default=True,
              help="our methods exported to ONNX (at the first of --bits-list)")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), default=None,
              help="report folder, written whole at the end (default: svdq-edge-out/compare-<task>)")
@deprecated_alias("--out", "-o/--output", "out", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="replace an existing report folder")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="first N examples only")
@click.option("--batch-size", type=click.IntRange(min=1), default=32, show_default=True)
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="run every PyTorch candidate as one Ray task (extra `cluster`): a local Ray when no ADDRESS "
                   "follows (put --ray after MODEL, or write --ray local), else the cluster at ADDRESS")
@click.option("--device", default=None, metavar="KIND",
              help="with --ray: run the candidates on nodes labelled device=KIND (ray start --labels device=KIND)")
@click.option("--per-device", is_flag=True,
              help="with --ray: validate the ONNX backends on one node of every device kind in the cluster "
                   "(one latency column group per device)")
@artifacts_option
@user_errors
def compare(model, data, methods, bits_list, keep_list, calib_seeds, ort_check, runtimes, threads, runs,
            shapes, accuracy_levels, backends, onnx_methods, out, overwrite, limit, batch_size, ray_address, device,
            per_device, artifacts, **q):
    """Compare saliency methods (PyTorch, optionally checked under ONNX Runtime) and ONNX backends on the same
    examples. For a causal LM: perplexity on --data (first --limit tokens) and prefill/decode latency of FP32 ONNX,
    ORT RTN INT4 and our --onnx-methods exports, with the KV cache.

    Examples: svdq-edge compare ../shared/models/minilm-l6-sst2 --data ../shared/data/glue/sst2/dev.tsv
              svdq-edge compare smollm2 --data ../shared/data/wikitext2/wiki.test.raw --limit 4096"""
    from svdq_edge.artifact.outputs import staged_output
    from svdq_edge.evaluation.data import read_glue_tsv
    from svdq_edge.evaluation.explain import explain
    from svdq_edge.runtime.validation.pipeline import build_backends
    from svdq_edge.runtime.validation.torch_parity import ort_checker
    from svdq_edge.sources.load import label2id_of, load_model

    _check_ray_options(ray_address, device, per_device, artifacts, ort_check)
    forced = _forced()
    names = [m.strip() for m in methods.split(",") if m.strip()]
    bits_values = number_list(bits_list, "--bits-list")
    keeps = number_list(keep_list, "--keep-list", float, "numbers") if keep_list else [q["keep"]]
    seeds = number_list(calib_seeds, "--calib-seeds")
    q.pop("bits"), q.pop("keep"), q.pop("seed")
    onnx_configs = {f"ours-{m.strip()}": make_config(m.strip(), bits=bits_values[0], keep=keeps[0], seed=seeds[0],
                                                     forced=forced, **q)
                    for m in onnx_methods.split(",") if m.strip()}
    if _is_causal_lm(model):  # decoders: perplexity on raw text + prefill/decode latency, FP32 vs ORT RTN vs ours
        _compare_decoder(model, data, onnx_configs, runtime_names(runtimes, "decoder"), out, overwrite, limit, runs,
                         threads)
        return
    ds = read_glue_tsv(data, limit, label2id_of(model))
    # the PyTorch tables are one per listed bit width: bits always come from the list there
    grid = [_method_configs(names, seeds, tuple({*forced, "bits"}), bits=b, keep=k, **q)
            for b in bits_values for k in keeps]
    do_onnx = backends.strip().lower() != "none"
    levels = parse_levels(accuracy_levels)
    shape_list, runtime_list = (parse_shapes(shapes), runtime_names(runtimes, "encoder")) if do_onnx else ([], [])
    out = out or DEFAULT_OUT / f"compare-{ds.task}"
    with staged_output(out, overwrite, inputs=(model, data)) as stage, ray_sweep(ray_address, device) as sweep:
        loaded = load_model(model)
        require_classifier(loaded, ds)
        checker = ort_checker(loaded, ds, stage / "ort-check", threads) if ort_check else None
        md, dump = [], {}
        for configs in grid:
            lines, key, rows = _method_table(configs, loaded, ds, batch_size, checker, sweep, len(seeds) > 1)
            md += lines
            dump[key] = rows
        (stage / "pytorch.json").write_text(json.dumps(dump, indent=2))
        if not do_onnx:
            (stage / "report.md").write_text("\n".join(md))
        else:
            baseline_names = tuple(x.strip() for x in backends.split(",") if x.strip())
            built = build_backends(loaded, backends_folder(stage, out, artifacts), onnx_configs, baseline_names,
                                   levels)
            title = f"svdq-edge compare: {model_name(loaded.source)} on {ds.task} dev"
            meta = {"data": ds.path, "ours": {k: c.to_dict() for k, c in onnx_configs.items()}}
            md += [f"## How `{label}` was made\n\n" + "\n".join(f"- {line}" for line in explain(c.to_dict()))
                   for label, c in onnx_configs.items()]
            validate_and_report(loaded, built, ds, stage, out, title, runtime_list, threads, shape_list, runs,
                                True, extra_md="\n".join(md), meta=meta,
                                sweep=sweep if per_device else None, shared_artifacts=artifacts is not None)
    if not do_onnx:
        click.echo(f"\nwrote {out / 'pytorch.json'}, {out / 'report.md'}")


def _check_ray_options(ray_address, device, per_device, artifacts, ort_check) -> None:
    if ray_address is None and (device or per_device or artifacts):
        raise UserError("--device, --per-device and --artifacts need --ray")
    if ray_address is not None and ort_check:
        raise UserError("--ort-check runs in this process: leave it out with --ray")


def _compare_decoder(model, data, configs, runtime_list, out, overwrite, limit, runs, threads) -> None:
    """A causal LM: perplexity on --data and prefill/decode latency of FP32, ORT RTN INT4 and ours (and genai's and
    llama.cpp's where installed), each built in its own process."""
    from svdq_edge.artifact.outputs import staged_output
    from svdq_edge.runtime.validation.decoders import decoder_report

    with staged_output(out or DEFAULT_OUT / "compare-causal-lm", overwrite, inputs=(model, data)) as stage:
        table = decoder_report(model, configs, Path(data), ppl_tokens=limit or 16384, runs=runs, threads=threads,
                               out=stage, genai="genai" in runtime_list, llamacpp="llamacpp" in runtime_list)
    click.echo(table)


def _method_table(configs, loaded, ds, batch_size, checker, sweep, many_seeds: bool) -> tuple[list[str], str, list]:
    """One grid point's PyTorch comparison (locally, or one Ray task per method): printed, and returned as
    (report.md lines, its pytorch.json key, its pytorch.json rows)."""
    from svdq_edge.pipeline.compare import compare_methods, results_table, seed_summary_table

    if sweep is None:
        results, failed, placed = compare_methods(loaded, ds, configs, batch_size, ort_check=checker), {}, {}
    else:
        from svdq_edge.runtime.validation.sweep import sweep_methods

        swept = sweep_methods(sweep, loaded, ds, configs, batch_size)
        results, failed, placed = swept.results, swept.failed, swept.placed
    c0 = next(iter(configs.values()))
    b, k = c0.bits, c0.keep
    head = (f"{ds.task} dev, n={len(ds)}, PyTorch{' + ONNX Runtime CPU' if checker else ''}: W{b} block "
            f"{c0.block_size}, keep {k:g}, structure {c0.structure.value}, embedding "
            f"{c0.embedding_bits or 'FP32'}, calibration seeds "
            f"{','.join(map(str, sorted({c.seed for c in configs.values()})))}")
    tables = [results_table(results)] + [f"failed after a retry: {label}: {why}"
                                         for label, why in failed.items()]
    if many_seeds and any(c.calib_data for c in configs.values()):
        tables.append("mean over calibration seeds:\n\n" + seed_summary_table(results))
    click.echo(f"\n{head}\n" + "\n\n".join(tables))
    key = f"W{b} keep {k:g}"
    rows = [_result_dict(r) | ({"ran_on": placed[r.label]} if r.label in placed else {}) for r in results]
    return [f"## {head}", "", *tables, ""], key, rows + [{"label": lb, "failed": why} for lb, why in failed.items()]


def _is_causal_lm(model: str | None) -> bool:
    from svdq_edge.sources.load import ModelTask, detect_task, load_config, resolve_source

    return detect_task(load_config(resolve_source(model))) is ModelTask.CAUSAL_LM


def _forced() -> tuple[str, ...]:
    """The QuantConfig fields compare's command line sets over a recipe (see LISTED)."""
    from click.core import ParameterSource

    ctx = click.get_current_context()
    given = {p for p in ctx.params if ctx.get_parameter_source(p) is not ParameterSource.DEFAULT}
    return tuple(field for field, options in LISTED.items() if not options or given & set(options))


def _method_configs(names: list[str], seeds: list[int], forced: tuple[str, ...], **q) -> dict:
    """Labelled configs: calibrated methods once per seed ('awq s1'), data-free ones once (first seed)."""
    from svdq_edge.saliency import available, get

    configs = {}
    for m in names:
        if m in available() and get(m).needs_calibration:
            per_seed = tuple({*forced, "seed"})  # one row per listed seed: the seed names the row
            configs.update({f"{m} s{s}": make_config(m, seed=s, forced=per_seed, **q) for s in seeds})
        else:
            configs[m] = make_config(m, seed=seeds[0], forced=forced, **q)
    return configs


def _result_dict(r) -> dict:
    d = {"label": r.label, "method": r.method, "acc": r.acc.value, "n": r.acc.n, "ci95": r.acc.ci, "kl": r.kl,
         "agree": r.agree, "out_err": r.out_err, "bits": r.bits, "seconds": r.seconds,
         "config": None if r.config is None else r.config.to_dict()}
    for ref in ("vs_fp32", "vs_rtn", "vs_svd"):
        p = getattr(r, ref)
        if p is not None:
            d[ref] = {"diff": p.diff, "ci95": list(p.ci), "mcnemar_p": p.p_value, "b_only": p.b_only,
                      "a_only": p.a_only}
    if r.ort is not None:
        d["ort_cpu"] = {"acc": r.ort.acc.value, "agree_with_torch": r.ort.agree_with_torch,
                        "max_abs_diff": r.ort.max_abs_diff}
    return d


