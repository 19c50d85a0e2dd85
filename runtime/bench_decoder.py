"""Benchmark: a decoder LLM under ONNX Runtime, FP32 vs ORT's RTN INT4 vs ours, with the KV cache.

    python -m svdq_edge.runtime.bench_decoder --data ../shared/data/wikitext2/wiki.test.raw [--model smollm2]

Prints one table: file size, WikiText-2 perplexity (standard sliding window, first --ppl-tokens tokens), prefill
latency of a 128-token prompt, decode ms/token with 1 and 128 tokens in the cache (interleaved timing, batch 1),
and the peak RSS of quantize + export of ours, measured in a child process against the model's FP32 weight bytes.
With `smollm2` (a Q4_1 GGUF) the weights already sit on a 4-bit grid: its perplexities flatter every INT4 method.
"""

from __future__ import annotations

import json
import resource
import subprocess
import sys
import time
from pathlib import Path

import click

from svdq_edge.config import QuantConfig
from svdq_edge.table import markdown_table

DECODER_DEFAULTS = {"method": "range", "bits": 4, "block_size": 32, "keep": 0.01, "structure": "channel",
                    "skip": ["lm_head"], "embedding_bits": None}
# The same with the LM head (MatMulNBits) and the embedding table (GatherBlockQuantized) at 4 bits too.
HEAD4 = DECODER_DEFAULTS | {"skip": [], "embedding_bits": 4}
DEFAULT_VARIANTS = {"ours": DECODER_DEFAULTS, "ours-head4": HEAD4}


def _child(args: list[str]) -> dict:
    """Run this module's `child` command in a fresh interpreter; its last stdout line is a JSON result."""
    proc = subprocess.run([sys.executable, "-m", "svdq_edge.runtime.bench_decoder", "child", *args],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"child {' '.join(args[:2])} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


@click.group(invoke_without_command=True)
@click.option("--model", default="smollm2", show_default=True, help="causal LM: hub id, folder, .gguf, smollm2")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False,
              help="raw text for perplexity (WikiText-2 wiki.test.raw)")
@click.option("--variants", default=json.dumps(DEFAULT_VARIANTS), show_default=True,
              help="our exports as JSON {label: QuantConfig fields}")
@click.option("--ppl-tokens", type=int, default=16384, show_default=True, help="score the first N tokens")
@click.option("--max-length", type=int, default=1024, show_default=True)
@click.option("--stride", type=int, default=512, show_default=True)
@click.option("--runs", type=int, default=40, show_default=True, help="timed decode steps per backend and context")
@click.option("--threads", type=int, default=2, show_default=True)
@click.option("--accuracy-level", type=click.IntRange(0, 4), default=0, show_default=True,
              help="MatMulNBits accuracy_level of our exports (4: int8 activations on CPU)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("svdq-edge-out/bench-decoder"), show_default=True)
@click.pass_context
def main(ctx, model, data, variants, ppl_tokens, max_length, stride, runs, threads, accuracy_level, out):
    if ctx.invoked_subcommand is not None:
        return
    if data is None:
        raise click.UsageError("--data is required (e.g. ../shared/data/wikitext2/wiki.test.raw)")
    configs = {label: QuantConfig.from_dict(d) for label, d in json.loads(variants).items()}
    click.echo(decoder_report(model, configs, data, ppl_tokens, max_length, stride, runs, threads, out,
                              accuracy_level))


def decoder_report(model: str, configs: dict[str, QuantConfig], data: Path, ppl_tokens: int = 16384,
                   max_length: int = 1024, stride: int = 512, runs: int = 40, threads: int = 2,
                   out: Path = Path("svdq-edge-out/bench-decoder"), accuracy_level: int = 0) -> str:
    """Build FP32, ORT RTN INT4 and one export per labelled config; return the table (also saved as JSON)."""
    from svdq_edge.data import read_text_ids
    from svdq_edge.runtime.baselines import copy_side_files, ort_rtn_int4
    from svdq_edge.runtime.decode_latency import measure_decoders
    from svdq_edge.runtime.latency import model_size_mb
    from svdq_edge.runtime.perplexity import onnx_window_scorer, perplexity
    from svdq_edge.runtime.session import make_session
    from svdq_edge.sources import load_tokenizer, resolve_source

    out.mkdir(parents=True, exist_ok=True)
    source = resolve_source(model)  # converts a GGUF once, outside the measured children
    children = {label: _child(["--model", source, "--config", c.to_json(), "--out", str(out / label),
                               "--accuracy-level", str(accuracy_level)])
                for label, c in configs.items()}
    fp32 = _child(["--model", source, "--fp32", "--out", str(out / "fp32")])
    block = next(iter(configs.values())).block_size
    rtn_dir = out / "ort-rtn4"
    rtn_dir.mkdir(exist_ok=True)
    ort_rtn_int4(out / "fp32", rtn_dir, block_size=block)
    copy_side_files(out / "fp32", rtn_dir)
    names = ["fp32", "ort-rtn4", *configs]
    sessions = [make_session(out / n, "cpu", threads) for n in names]
    tok = load_tokenizer(source)
    ids = read_text_ids(tok, data, ppl_tokens)
    ppl = [perplexity(onnx_window_scorer(s), ids, max_length, stride, desc=f"ppl {n}")
           for n, s in zip(names, sessions, strict=True)]
    lat = measure_decoders(sessions, len(tok), runs=runs)
    dump = {"configs": {k: c.to_dict() for k, c in configs.items()}, "fp32": fp32, "children": children}
    rows = []
    base = {x.phase + str(x.context): x.p50_ms for x in lat[0]}
    for n, p, ls in zip(names, ppl, lat, strict=True):
        d = {x.phase + str(x.context): x for x in ls}
        size = model_size_mb(out / n)
        rows.append([n, f"{size:.1f}", f"{p.ppl:.3f}", f"{100 * (p.ppl / ppl[0].ppl - 1):+.2f}%",
                     f"{d['prefill128'].p50_ms:.1f}", f"{d['decode1'].p50_ms:.2f}", f"{d['decode128'].p50_ms:.2f}",
                     f"{base['decode128'] / d['decode128'].p50_ms:.2f}x", f"{d['decode128'].tokens_per_s:.1f}"])
        dump[n] = {"ppl": p.to_dict(), "latency": [x.to_dict() for x in ls], "size_mb": size}
    (out / "bench.json").write_text(json.dumps(dump, indent=2))
    ours = "; ".join(f"{k} = {c.method} W{c.bits} b{c.block_size} keep {c.keep:g} {c.structure.value}"
                     for k, c in configs.items())
    lines = [f"{model}: {len(ids)} tokens of {data.name} -> {ppl[0].tokens} scored (window {max_length}, stride "
             f"{stride}); ONNX Runtime CPU, {threads} threads, batch 1; {ours}; MatMulNBits accuracy_level "
             f"{accuracy_level}; ORT RTN block {block}",
             markdown_table(["backend", "MB", "ppl", "Δ ppl", "prefill 128 ms", "decode ms/tok @1",
                             "decode ms/tok @128", "decode speed-up @128", "tok/s @128"], rows)]
    for k, c in children.items():
        lines.append(f"peak RSS, quantize + export of {k} (one process): {c['peak_rss_mb']:.0f} MiB = "
                     f"{c['peak_rss_mb'] / fp32['weight_mb']:.2f}x the FP32 weights ({fp32['weight_mb']:.0f} MiB), "
                     f"of which interpreter + imports {c['baseline_rss_mb']:.0f} MiB; {c['seconds']:.0f} s")
    lines.append(f"peak RSS, FP32 export alone: {fp32['peak_rss_mb']:.0f} MiB")
    return "\n".join(lines)


@main.command()
@click.option("--model", required=True)
@click.option("--config", "config_json", default=None)
@click.option("--fp32", is_flag=True)
@click.option("--accuracy-level", type=int, default=0)
@click.option("--out", type=click.Path(path_type=Path), required=True)
def child(model, config_json, fp32, accuracy_level, out):
    """(internal) Quantize + export, or export FP32, in this process; print peak RSS as JSON."""
    import torch

    from svdq_edge.apply import calibrate_model, quantize_model
    from svdq_edge.exporters.export import export_onnx
    from svdq_edge.sources import load_model

    baseline = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
    start = time.perf_counter()
    loaded = load_model(model)
    seen, weight_bytes = set(), 0
    for p in loaded.model.parameters():
        if p.data_ptr() not in seen:  # tied tensors once
            seen.add(p.data_ptr())
            weight_bytes += p.numel() * p.element_size()
    config = None if fp32 else QuantConfig.from_dict(json.loads(config_json))
    if config is not None:
        stats = calibrate_model(loaded.model, loaded.tokenizer, config, progress=False)
        quantize_model(loaded.model, config, stats, progress=False)
    with torch.no_grad():
        export_onnx(loaded, out, None if config is None else config.to_dict(), accuracy_level=accuracy_level,
                    overwrite=True)
    click.echo(json.dumps({"peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                           "baseline_rss_mb": baseline, "weight_mb": weight_bytes / 2**20,
                           "seconds": time.perf_counter() - start}))


if __name__ == "__main__":
    main()
