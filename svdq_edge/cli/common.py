"""Option helpers shared by the `svdq-edge` commands."""

from __future__ import annotations

import functools
from pathlib import Path

import click

from svdq_edge.config import (
    SUPPORTED_BITS,
    ConfigError,
    Int8Scale,
    QuantConfig,
    Structure,
    lowrank_ignores,
    synthetic_kind,
)
from svdq_edge.errors import UserError, first_line
from svdq_edge.sources.load import ModelSourceError

DEFAULTS = QuantConfig.defaults()
# The registered saliency methods (svdq_edge.saliency.available(); a test keeps this list equal to the registry),
# spelled out here because --help must not import the methods (and torch) to list them.
DATA_FREE_METHODS = ("range", "svd", "svd-residual", "magnitude", "outlier", "proxy", "random", "rtn")
CALIBRATED_METHODS = ("awq", "spqr", "gptq", "rosaq")
METHOD_HELP = (f"saliency method. Data-free: {', '.join(DATA_FREE_METHODS)} (rtn keeps no FP32 weights); "
               f"calibrated (with --calib-data): {', '.join(CALIBRATED_METHODS)}")
# a user's mistake (UserError) or the system's answer about a file (OSError: missing, unreadable, disk full)
USER_ERRORS = (UserError, OSError)


# intra-op threads: ONNX Runtime creates them all up front (100000 crashed it); 256 is beyond any CPU we target
THREADS = click.IntRange(1, 256)


def deprecated_alias(old: str, new: str, dest: str, **kw):
    """Keep the spelling `old` working for one release as a hidden alias of the option `new` (parameter `dest`):
    its value goes to `dest`, with a one-line note on stderr; both at once is a usage error."""
    hidden = f"{dest}_via_{old.lstrip('-').replace('-', '_')}"

    def deco(fn):
        @functools.wraps(fn)
        def wrapper(*args, **kwargs):
            value = kwargs.pop(hidden)
            if value is not None:
                if click.get_current_context().get_parameter_source(dest) is not click.core.ParameterSource.DEFAULT:
                    raise click.UsageError(f"{old} is the old spelling of {new}: give {new} only")
                click.echo(f"note: {old} is now {new}; {old} goes away in the next release", err=True)
                kwargs[dest] = value
            return fn(*args, **kwargs)
        return click.option(old, hidden, default=None, hidden=True, **kw)(wrapper)
    return deco


def user_errors(fn):
    """User errors become one-line `Error: ...` messages (exit code 1). Anything else is a bug: one line with its
    type and a hint, or the full traceback when the user asked for -v."""

    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except click.ClickException:
            raise
        except USER_ERRORS as e:
            raise click.ClickException(first_line(e)) from None
        except Exception as e:
            ctx = click.get_current_context(silent=True)
            if ctx is not None and ctx.find_root().params.get("verbose"):
                raise
            raise click.ClickException(f"{type(e).__name__}: {first_line(e)} (unexpected: run with -v for the "
                                       "traceback)") from None

    return wrapper


def quant_options(fn):
    """Options shared by every command that quantizes."""
    opts = [
        click.option("--bits", type=click.Choice([*map(str, SUPPORTED_BITS), "auto"]), default=str(DEFAULTS.bits),
                     show_default=True, help="code width; auto: 4 or 8 per layer under --bits-budget"),
        click.option("--bits-budget", type=float, default=None,
                     help="mixed precision: average storage bits per weight of the quantized linears (scales, zero "
                          "points and corrections counted); each layer gets --bits or 8, the most sensitive first"),
        click.option("--block-size", type=int, default=DEFAULTS.block_size, show_default=True,
                     help="block length along K (power of two, 16-256)"),
        click.option("--keep", type=float, default=DEFAULTS.keep, show_default=True,
                     help="fraction of each layer's weights kept in FP32 (0-0.5)"),
        click.option("--structure", type=click.Choice([s.value for s in Structure.choices()]),
                     default=DEFAULTS.structure.value, show_default=True, help="shape of the FP32 part"),
        click.option("--rank", type=float, default=None,
                     help="SVD rank for svd scores (>= 1), or an energy fraction in (0, 1); default per method"),
        click.option("--symmetric", is_flag=True, help="symmetric codes (no per-block zero point search)"),
        click.option("--clip/--no-clip", default=DEFAULTS.clip, show_default=True,
                     help="per-block range shrink search"),
        click.option("--seed", type=int, default=0, show_default=True),
        click.option("--skip", default=",".join(DEFAULTS.skip), show_default=True,
                     help="comma-separated module-name substrings left in FP32"),
        click.option("--correct", default="", show_default="every quantized layer",
                     help="comma-separated module-name substrings of the layers that get the FP32 correction "
                          "(e.g. o_proj,down_proj); the others are plain block-quantized codes"),
        click.option("--embedding-bits", type=click.Choice(["none", "2", "4", "8"]),
                     default=str(DEFAULTS.embedding_bits), show_default=True,
                     help="block-quantize the input token embedding (GatherBlockQuantized in ONNX); none keeps FP32"),
        click.option("--head-bits", type=click.Choice(["none", "4", "8"]), default="none", show_default=True,
                     help="block-quantize a causal LM's output head (MatMulNBits; a tied embedding shares its codes)"),
        click.option("--calib-data", default=None,
                     help="calibration data for awq/spqr/gptq/rosaq: a GLUE train TSV, a text file (causal LMs), or "
                          "synthetic[:random|:vocab|:generated] (made by the tool: no user data)"),
        click.option("--calib-samples", type=int, default=DEFAULTS.calib_samples, show_default=True,
                     help="calibration rows (TSV) or token windows (text), drawn with --seed"),
        click.option("--calib-seq-len", type=int, default=DEFAULTS.calib_seq_len, show_default=True,
                     help="maximum tokens per calibration sample"),
        click.option("--kernel", type=click.Choice(["matmulnbits", "int8"]), default="matmulnbits", show_default=True,
                     help="ONNX Runtime kernel of the quantized linears: block-wise MatMulNBits, or int8 "
                          "DynamicQuantizeMatMul (with --bits 8 --method outlier: the outlier input channels stay "
                          "FP32, out of the int8 input)"),
        click.option("--int8-scale", type=click.Choice([v.value for v in Int8Scale]), default="column",
                     show_default=True,
                     help="int8 kernel weight scales: per column, per tensor (ORT's fast path), or auto: per tensor "
                          "where it moves the output least (data-free, measured per layer group)"),
        click.option("--recipe", default=None, metavar="NAME|FILE",
                     help="a recipe shipped with svdq-edge (e.g. smollm2-135m; see models/) or a JSON recipe file: "
                          "its config replaces the defaults; options given on the command line still win"),
    ]
    for opt in reversed(opts):
        fn = opt(fn)
    return fn


def make_config(method: str, bits, block_size, keep, structure, rank, symmetric, clip, seed, skip, correct="",
                embedding_bits=None, head_bits=None, calib_data=None, calib_samples=DEFAULTS.calib_samples,
                calib_seq_len=DEFAULTS.calib_seq_len, recipe: str | None = None,
                kernel: str = "matmulnbits", bits_budget: float | None = None, int8_scale: str = "column",
                forced: tuple[str, ...] = ()) -> QuantConfig:
    """A validated QuantConfig from the options, on top of a recipe's config when one is given.

    Over a recipe, an option wins when it was given on the command line, or when it is in `forced`: values the
    command derived itself (compare's --methods, --bits-list, --keep-list, --calib-seeds), which its tables are
    labelled with."""
    if rank is not None and float(rank).is_integer():
        rank = int(rank)
    if bits == "auto":
        if bits_budget is None:
            raise ConfigError("--bits auto needs --bits-budget (average bits per weight, e.g. 6)")
        bits = 4
    given = {"method": method, "bits": int(bits), "bits_budget": bits_budget, "block_size": block_size, "keep": keep,
             "structure": structure,
             "rank": rank, "symmetric": symmetric, "clip": clip, "seed": seed,
             "skip": tuple(s for s in skip.split(",") if s),
             "correct": tuple(s for s in (correct or "").split(",") if s),
             "embedding_bits": None if embedding_bits in (None, "none") else int(embedding_bits),
             "head_bits": None if head_bits in (None, "none") else int(head_bits),
             "calib_data": None if calib_data is None else str(calib_data), "calib_samples": calib_samples,
             "calib_seq_len": calib_seq_len, "kernel": kernel, "int8_scale": int8_scale}
    if structure == Structure.LOWRANK.value and _named("method", forced) and lowrank_ignores(method):
        raise ConfigError(f"--structure lowrank keeps the top-r SVD branch: --method {method} would rank nothing; "
                          "use svd, rosaq (its own basis) or gptq/spqr (error feedback on the residual)")
    if recipe is None:
        return _require_calibration(QuantConfig(**given))
    from svdq_edge.recipes import read_recipe

    base = read_recipe(recipe)["config"]
    base.update({key: value for key, value in given.items() if _named(key, forced)})
    return _require_calibration(QuantConfig.from_dict(base))


def _named(key: str, forced: tuple[str, ...]) -> bool:
    """Whether option `key` was given on the command line (not left at its default), or derived by the command."""
    ctx = click.get_current_context(silent=True)
    src = None if ctx is None else ctx.get_parameter_source(key)
    return key in forced or (src is not None and src is not click.core.ParameterSource.DEFAULT)


def _require_calibration(config: QuantConfig) -> QuantConfig:
    from svdq_edge.saliency import get

    if get(config.method).needs_calibration:
        if config.calib_data is None:
            raise ConfigError(f"method {config.method!r} needs calibration data: give --calib-data (a GLUE train "
                              "TSV, or a text file for causal LMs)")
        if synthetic_kind(config.calib_data) is None and not Path(config.calib_data).is_file():
            raise ConfigError(f"{config.calib_data}: no such calibration file")
    return config


def require_classifier(loaded, data=None) -> None:
    """A classifier with a tokenizer; with `data`, every label one of its classes (else accuracy would read 0%)."""
    from svdq_edge.sources.load import ModelTask

    if loaded.task is not ModelTask.SEQUENCE_CLASSIFICATION:
        raise ModelSourceError(f"{loaded.source}: a sequence-classification model is needed for GLUE accuracy")
    if loaded.tokenizer is None:
        raise ModelSourceError(f"{loaded.source}: no tokenizer files")
    if data is not None:
        require_labels(data, loaded.model.config.num_labels)


def require_labels(data, num_labels: int) -> None:
    bad = sorted({y for y in data.labels if not 0 <= y < num_labels})
    if bad:
        raise UserError(f"{data.path}: label{'s' * (len(bad) > 1)} {', '.join(map(str, bad[:5]))} not among the "
                        f"model's {num_labels} classes (0-{num_labels - 1}): the wrong data for this model?")


def is_causal_lm(model: str | None) -> bool:
    """Whether MODEL (hub id, folder, GGUF, quantized or ONNX folder; None: the embedded default) is a causal LM: from
    what svdq-edge saved (a quantized folder's task, an ONNX file's metadata), else from config.json (folders written
    before config.json named the architecture of a GGUF model have none)."""
    import onnx

    from svdq_edge.artifact.io import is_quantized_dir, read_quant_meta
    from svdq_edge.artifact.layout import find_model_file
    from svdq_edge.sources.load import ModelTask, detect_task, gguf_path, load_config, resolve_source

    if gguf_path(model) is not None:
        return True
    if model is not None and is_quantized_dir(model):
        return read_quant_meta(model)["task"] == ModelTask.CAUSAL_LM.value
    path = None if model is None or not Path(model).is_dir() else find_model_file(model)
    if path is not None:
        meta = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        if "svdq_edge.task" in meta:
            return meta["svdq_edge.task"] == ModelTask.CAUSAL_LM.value
    return detect_task(load_config(resolve_source(model))) is ModelTask.CAUSAL_LM
