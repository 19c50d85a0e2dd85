"""`svdq-edge run` (the main job), and the options and reporting that `compare` (cli/compare.py) shares with it."""

from __future__ import annotations

from pathlib import Path

import click

from svdq_edge.cli.common import (
    DEFAULTS,
    METHOD_HELP,
    THREADS,
    deprecated_alias,
    is_causal_lm,
    make_config,
    quant_options,
    require_classifier,
    user_errors,
)
from svdq_edge.errors import UserError
from svdq_edge.runtime.validation.pick import Objective, encoder_candidates, pick, pick_dict

DEFAULT_OUT = Path("svdq-edge-out")


def backend_options(fn):
    opts = [
        click.option("--runtimes", default=None,
                     help="comma-separated runtimes, one table across them: ort-cpu, ort-cuda, ort-node, ort-web, "
                          "ort-web-jsep, openvino, openvino-f32 (encoders); genai, llamacpp (decoders: beside the "
                          "ONNX Runtime loop). "
                          "A runtime that cannot run here is skipped with the reason. Default: ort-cpu, plus "
                          "those of ort-cuda (encoders), genai and llamacpp (decoders) that can run here"),
        click.option("--threads", type=THREADS, default=2, show_default=True,
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
    from svdq_edge.sources.load import default_model_path

    try:
        if Path(source).resolve() == default_model_path().resolve():
            return "all-MiniLM-L6-v2 (embedded)"
    except Exception:  # the default package may be absent: the source is then a path or hub id
        pass
    return Path(source).name if Path(source).exists() else source


def parse_levels(text: str) -> tuple[int, ...]:
    return tuple(number_list(text, "--accuracy-levels", int, "0-4", allowed=range(5)))


def parse_shapes(text: str) -> list[tuple[int, int]]:
    try:
        shapes = [tuple(int(v) for v in s.lower().split("x")) for s in text.split(",") if s.strip()]
    except ValueError:
        raise UserError(f"--shapes must look like 1x128,8x128, got {text!r}") from None
    if not shapes or any(len(s) != 2 or min(s) < 1 for s in shapes):
        raise UserError(f"--shapes must look like 1x128,8x128, got {text!r}")
    return shapes


def runtime_names(text: str | None, task: str) -> list[str]:
    """The runtimes to run (names); those that cannot serve here are said on stderr, one line each."""
    from svdq_edge.runtime.runtimes import select_runtimes

    chosen, skipped = select_runtimes(text, task)
    for name, why in skipped.items():
        click.echo(f"note: runtime {name} skipped: {why}", err=True)
    return [r.name for r in chosen]


def validate_and_report(loaded, built, data, stage, out, title, runtimes, threads, shapes, runs, has_labels,
                        extra_md="", meta=None, sweep=None, shared_artifacts=False, lead=None):
    """Validate, print the tables and write the report into `stage` (the folder that becomes `out`). With a Ray
    `sweep`: on one node of every device kind of the cluster (the first kind's results make the main table).
    `lead(validation)`: lines that open the printed answer and the report (run's pick)."""
    from svdq_edge.runtime.validation.pipeline import validate_all
    from svdq_edge.runtime.validation.report import backend_table, device_table, write_report

    per_device = None
    if sweep is None:
        validation = validate_all(built, loaded, data, runtimes, threads, shapes, runs, has_labels)
    else:
        from svdq_edge.runtime.validation.sweep import validate_per_device

        per_device, failed = validate_per_device(sweep, built.backends, loaded, data, runtimes, threads, shapes,
                                                 runs, has_labels, shared_artifacts)
        for kind, why in failed.items():
            click.echo(f"device {kind}: validation failed after a retry: {why}")
        if not per_device:
            raise UserError("the validation failed on every device kind: " + "; ".join(failed.values()))
        validation = next(iter(per_device.values()))
    lead_lines = lead(validation) if lead is not None else []
    click.echo("\n" + "".join(line + "\n" for line in lead_lines)
               + f"{title}: runtimes {', '.join(runtimes)}, {threads} threads, n={len(data)}"
               + (f", device {next(iter(per_device))}" if per_device else ""))
    click.echo(backend_table(validation.results))
    for key, why in validation.skipped.items():
        click.echo(f"skipped {key}: {why}")
    if per_device:
        click.echo(f"\nlatency per device kind ({', '.join(per_device)}):")
        click.echo(device_table(per_device))
    files = write_report(stage, title, validation, extra_md, meta, per_device, lead="\n".join(lead_lines))
    click.echo("\nsizes: " + "; ".join(f"{k} {s.summary()}" for k, s in built.sizes.items() if k != "fp32"))
    click.echo("wrote " + ", ".join(str(out / f.relative_to(stage)) for f in files))
    return validation


def artifacts_option(fn):
    return click.option("--artifacts", type=click.Path(file_okay=False, path_type=Path), default=None,
                        help="with --ray: build the ONNX folders in this folder, which every node reads (shared "
                             "storage); default: they travel through Ray's object store")(fn)


def backends_folder(stage: Path, out: Path, artifacts: Path | None) -> Path:
    """Where the backends are built: inside the report folder, or in the shared --artifacts folder."""
    return stage / "backends" if artifacts is None else artifacts.resolve() / out.name / "backends"


def ray_sweep(address: str | None, device: str | None = None):
    """A RaySweep for --ray (closed at the end of the with-block), or a null context without it."""
    import contextlib

    if address is None:
        return contextlib.nullcontext()
    from svdq_edge.runtime.validation.cluster import RaySweep

    return RaySweep(address, device)


@click.command()
@click.argument("model", required=False)
@click.option("--data", type=click.Path(path_type=Path), default=None,
              help="GLUE TSV for accuracy (classifiers); default: fidelity on the sentences shipped with svdq-edge")
@click.option("--method", default=DEFAULTS.method, show_default=True, help=METHOD_HELP)
@quant_options
@backend_options
@click.option("--baselines", default="ort-int8,ort-rtn4,ort-rtn4-acc4", show_default=True,
              help="ORT baselines to build")
@click.option("--target", type=click.Choice(["cpu", "web"]), default="cpu", show_default=True,
              help="export target of our candidates (web: no GatherBlockQuantized, for onnxruntime-web's WebGPU/JSEP "
                   "bundle; see `export --target`)")
@click.option("--layout", type=click.Choice(["ort", "transformers.js"]), default="ort", show_default=True,
              help="folder layout of our candidates and so of the shipped folder (see `export --layout`)")
@click.option("--objective", type=click.Choice([o.value for o in Objective]), default="balanced", show_default=True,
              help="how the shipped candidate is picked: balanced = the fastest whose loss (KL, or 1 - cosine) is at "
                   "most the best ORT baseline's; size, speed, fidelity = the best on that axis")
@click.option("--max-size", type=click.FloatRange(min=0, min_open=True), default=0.25, show_default=True,
              help="the pick's file at most this fraction of the FP32 file")
@click.option("--max-loss", type=click.FloatRange(min=0), default=None,
              help="fidelity floor: the pick's loss at most this (KL to FP32 for classifiers, 1 - mean cosine for "
                   "embedders)")
@click.option("-o", "--output", "out", type=click.Path(path_type=Path), default=DEFAULT_OUT / "run", show_default=True,
              help="report folder (written whole at the end); the pick is copied to OUTPUT/ship")
@deprecated_alias("--out", "-o/--output", "out", type=click.Path(path_type=Path))
@click.option("--overwrite", is_flag=True, help="replace an existing report folder")
@click.option("--limit", type=click.IntRange(min=1), default=None, help="first N examples only")
@click.option("--ray", "ray_address", is_flag=False, flag_value="local", default=None, metavar="[ADDRESS]",
              help="validate on one node of every device kind (node label device=KIND) of the Ray cluster at "
                   "ADDRESS (extra `cluster`; put --ray after MODEL, or write --ray local for a local Ray)")
@artifacts_option
@user_errors
def run(model, data, method, runtimes, threads, runs, shapes, accuracy_levels, baselines, target, layout, objective,
        max_size, max_loss, out, overwrite, limit, ray_address, artifacts, **q):
    """The main job: quantize MODEL several ways, export, validate and benchmark every candidate under ONNX Runtime
    beside FP32 and ORT's own quantizers, pick one by --objective and copy it to OUT/ship. With quantization options
    given, the one configuration they describe is the only candidate. With no MODEL: the embedded all-MiniLM-L6-v2
    encoder, offline.

    Examples: svdq-edge run
              svdq-edge run ../shared/models/minilm-l6-sst2 --data ../shared/data/glue/sst2/dev.tsv --objective size"""
    from svdq_edge.artifact.outputs import ship, staged_output
    from svdq_edge.evaluation.data import read_glue_tsv
    from svdq_edge.runtime.validation.pipeline import build_backends, shipped_sentences
    from svdq_edge.sources.load import ModelTask, label2id_of, load_model

    config = make_config(method, **q)
    if is_causal_lm(model):
        from svdq_edge.cli.run_lm import run_causal_lm

        return run_causal_lm(model, data, config, _quant_options_given(q, method), runtime_names(runtimes, "decoder"),
                             threads, runs, objective, max_size, max_loss, out, overwrite, limit)
    levels = parse_levels(accuracy_levels)
    shape_list = parse_shapes(shapes)
    runtime_list = runtime_names(runtimes, "encoder")
    ds = read_glue_tsv(data, limit, label2id_of(model)) if data else shipped_sentences().head(limit)
    names = tuple(b for b in baselines.split(",") if b)
    if artifacts is not None and ray_address is None:
        raise UserError("--artifacts needs --ray")
    with staged_output(out, overwrite, inputs=(model, data)) as stage, ray_sweep(ray_address) as sweep:
        loaded = load_model(model)
        if data:
            require_classifier(loaded, ds)
        work = backends_folder(stage, out, artifacts)
        candidates = {"ours": config} if _quant_options_given(q, method) else encoder_candidates(config)
        built = build_backends(loaded, work, candidates, names, levels, save_quantized_dirs=True,
                               level_of={label: 4 for label in candidates if label != "ours"}, target=target,
                               layout=layout)
        ours = (f"{config.method} W{config.bits} b{config.block_size} keep {config.keep:g} {config.structure.value}, "
                f"embedding {config.embedding_bits or 'FP32'}-bit")
        title = f"svdq-edge run: {model_name(loaded.source)} ({loaded.task.value}), ours = {ours}"
        how = _how_ours_was_made(work / "ours-quantized")
        meta = {"config": config.to_dict(), "data": ds.path,
                "candidates": {label: c.to_dict() for label, c in candidates.items()}}
        chosen = {}

        def lead(validation) -> list[str]:
            chosen["pick"] = pick(points_of(validation, loaded.task, names), Objective(objective), max_size, max_loss)
            meta["pick"] = pick_dict(chosen["pick"], objective)
            shape = "b{}x{}".format(*shape_list[0])
            return pick_lines(chosen["pick"], out / "ship", loaded.task is ModelTask.SEQUENCE_CLASSIFICATION, shape)

        validate_and_report(loaded, built, ds, stage, out, title, runtime_list, threads, shape_list, runs,
                            has_labels=data is not None, extra_md=how, meta=meta,
                            sweep=sweep, shared_artifacts=artifacts is not None, lead=lead)
        best = chosen["pick"].point
        if best is not None:
            ship(work / best.name, stage / "ship")
            click.echo(f"shipped {best.name} -> {out / 'ship'}")


SHARED_OPTIONS = ("block_size", "embedding_bits", "skip", "seed", "recipe")  # settings every default candidate takes


def _quant_options_given(q: dict, method: str) -> bool:
    """Whether the command line chose a quantization (method, bits, budget, kernel, ...): then that configuration is
    the only candidate. Block size, embedding bits, skipped layers, seed and a recipe (the base every candidate is
    derived from) apply to every candidate."""
    ctx = click.get_current_context()
    return any(ctx.get_parameter_source(name) not in (click.core.ParameterSource.DEFAULT, None)
               for name in ("method", *q) if name not in SHARED_OPTIONS)


def points_of(validation, task, baselines: tuple[str, ...]) -> list:
    """The first runtime's rows as pick Points: size over FP32's, p50 at the first shape, KL or 1 - cosine."""
    from svdq_edge.runtime.validation.pick import Point
    from svdq_edge.sources.load import ModelTask

    rows = [r for r in validation.results if r.runtime == validation.results[0].runtime]
    ref = rows[0]
    classifier = task is ModelTask.SEQUENCE_CLASSIFICATION
    points = []
    for i, r in enumerate(rows):
        loss = (r.kl if classifier else None if r.cosine_mean is None else 1.0 - r.cosine_mean)
        points.append(Point(r.backend.name, r.backend.name not in ("fp32", *baselines), r.size_mb / ref.size_mb,
                            r.latency[0].p50_ms if r.latency else float("nan"),
                            0.0 if i == 0 and loss is None else loss))
    return points


def pick_lines(p, ship_dir: Path, classifier: bool, shape: str) -> list[str]:
    """The answer first: what was picked and why, then the runner-up on each axis."""
    if p.point is None:
        return [f"no pick: {p.why}; see the table (loosen --max-size or --max-loss)"]

    def fidelity(q) -> str:
        return f"KL {q.loss:.4f}" if classifier else f"cosine {1 - q.loss:.4f}"

    b = p.point
    lines = [f"pick: {b.name} -> {ship_dir}: {b.size_ratio:.3f}x FP32, {fidelity(b)}, {shape} {b.latency_ms:.2f} ms "
             f"({p.why})"]
    if p.runners_up:
        lines.append("runners-up: " + "; ".join(f"{axis}: {q.name} ({q.size_ratio:.3f}x, {fidelity(q)}, "
                                                 f"{q.latency_ms:.2f} ms)" for axis, q in p.runners_up.items()))
    return lines


def _how_ours_was_made(quantized: Path) -> str:
    """The report's section on our model: method, structure, where H came from (also printed), per-layer table."""
    from svdq_edge.artifact.io import read_quant_meta
    from svdq_edge.evaluation.explain import explain, layer_table

    meta = read_quant_meta(quantized)
    lines = explain(meta["config"])
    click.echo("ours: " + "; ".join(lines))
    return "\n".join(["## How `ours` was made", "", *(f"- {line}" for line in lines), "", layer_table(meta)])


def number_list(text: str, option: str, convert=int, what: str = "integers", allowed=None) -> list:
    """Comma-separated numbers (each through `convert`, optionally within `allowed`), or a one-line error."""
    try:
        values = [convert(v) for v in text.split(",") if v.strip()]
    except ValueError:
        values = []
    if not values or (allowed is not None and any(v not in allowed for v in values)):
        raise UserError(f"{option} must be a comma-separated list of {what}, got {text!r}")
    return values
