"""Decoder validation: build every contender's folder in a fresh child process, then measure them in one run.

FP32, ORT's RTN INT4, onnxruntime-genai's own INT4 build (extra `genai`), our exports and, for a GGUF source, the
exact transcode at two accuracy levels and llama.cpp on the file itself (extra `llamacpp`). Every ONNX folder runs in
one ONNX Runtime loop (perplexity, prefill, decode at 128 and 1024 cached tokens, interleaved; the cache written in
place where the graph allows it, runtime/decode/shared_kv.py); each build's
seconds and peak RSS come from its own process (runtime/validation/build_child.py). Used by `compare` on a causal LM
and by the benchmark `python -m svdq_edge.runtime.bench.decoder`.
"""

from __future__ import annotations

import collections
import gc
import json
import logging
import subprocess
import sys
import time
from pathlib import Path

from svdq_edge.artifact.layout import model_file
from svdq_edge.config import QuantConfig
from svdq_edge.util.table import markdown_table

log = logging.getLogger(__name__)
CONTEXTS = (128, 1024)


def parse_contexts(text: str) -> tuple[int, ...]:
    """"128,1024" -> (128, 1024): the cached-token counts of timed decode steps (a bad list is a one-line error)."""
    import click

    try:
        contexts = tuple(int(c) for c in text.split(","))
    except ValueError:
        raise click.BadParameter(f"{text!r}: comma-separated integers", param_hint="--contexts") from None
    if any(c < 1 for c in contexts):
        raise click.BadParameter(f"{text!r}: every context must be at least 1", param_hint="--contexts")
    return contexts


def build_in_child(args: list[str]) -> dict:
    """Build one contender in a fresh interpreter (build_child); its last stdout line is a JSON result."""
    proc = subprocess.run([sys.executable, "-m", "svdq_edge.runtime.validation.build_child", *args],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"child {' '.join(args[:2])} failed: {proc.stderr.strip().splitlines()[-1:]}")
    return json.loads(proc.stdout.strip().splitlines()[-1])


def build_contenders(source: str, configs: dict[str, QuantConfig], out: Path, accuracy_level: int,
                     genai: bool, gguf: Path | None = None) -> dict[str, dict]:
    """Build every contender's folder under `out`; returns {name: build facts (seconds, peak RSS, ...)}."""
    from svdq_edge.runtime.decode.genai import genai_available
    from svdq_edge.runtime.validation.baselines import copy_side_files, ort_rtn_int4

    builds = {"fp32": build_in_child(["--model", source, "--fp32", "--out", str(out / "fp32")])}
    block = _block(configs)
    rtn = out / "ort-rtn4"
    rtn.mkdir(exist_ok=True)
    start = time.perf_counter()
    ort_rtn_int4(out / "fp32", rtn, block_size=block, accuracy_level=accuracy_level)
    copy_side_files(out / "fp32", rtn)
    builds["ort-rtn4"] = {"seconds": time.perf_counter() - start}
    if genai and genai_available():
        try:
            builds["genai-int4"] = build_in_child(["--model", source, "--genai", "--out", str(out / "genai-int4")])
        except RuntimeError as e:  # its builder does not cover every architecture: a missing row, said so
            log.warning("onnxruntime-genai's builder left out: %s", e)
    for label, c in configs.items():
        builds[label] = build_in_child(["--model", source, "--config", c.to_json(), "--out", str(out / label),
                                "--accuracy-level", str(accuracy_level)])
    if gguf is not None:  # the exact transcode: FP32 compute (its default), and int8 activations
        for label, level in (("gguf", 0), ("gguf-acc4", 4)):
            builds[label] = build_in_child(["--model", str(gguf), "--transcode", "--out", str(out / label),
                                    "--accuracy-level", str(level)])
    return builds


def decoder_report(model: str, configs: dict[str, QuantConfig], data: Path, ppl_tokens: int = 4096,
                   max_length: int = 1024, stride: int = 512, runs: int = 200, threads: int = 2,
                   out: Path = Path("svdq-edge-out/bench-decoder"), accuracy_level: int = 4,
                   genai: bool = True, gguf_contenders: bool = True, llamacpp: bool = True,
                   contexts: tuple[int, ...] = CONTEXTS) -> str:
    """Build every contender; return the table (also saved as bench.json).

    Runtimes: every ONNX folder runs in one ONNX Runtime loop (perplexity, prefill, decode); `genai` adds
    onnxruntime-genai's INT4 build as a contender and its Generator's ms/token for every genai folder; `llamacpp`
    adds llama.cpp on a GGUF source (each when its extra is installed)."""
    from svdq_edge.evaluation.data import read_text_ids
    from svdq_edge.runtime.decode.latency import measure_decoders
    from svdq_edge.runtime.decode.llamacpp import LlamaCppDecoder, llamacpp_available
    from svdq_edge.runtime.runtimes.session import make_session
    from svdq_edge.sources.load import gguf_path, load_config, load_tokenizer, resolve_source

    out.mkdir(parents=True, exist_ok=True)
    source = resolve_source(model)  # converts a GGUF once, outside the measured children
    gguf = gguf_path(model) if gguf_contenders else None
    max_pos = getattr(load_config(source), "max_position_embeddings", None) or max(contexts) + 1
    contexts = tuple(c for c in contexts if c < max_pos)
    builds = build_contenders(source, configs, out, accuracy_level, genai, gguf)
    names = list(builds)
    llama = gguf if llamacpp and gguf is not None and llamacpp_available() else None
    tok = load_tokenizer(source)
    ids = read_text_ids(tok, data, ppl_tokens)
    gen_ms = genai_decode_ms(names, out, ids, threads) if genai else {}
    ppl, run_rss = _perplexities(names, out, ids, max_length, stride, threads, llama)
    if llama is not None:
        builds["llamacpp"] = {"seconds": 0.0}  # runs the file as it is: nothing to build
        names.append("llamacpp")
    # Folders whose graph appends to its cache in place (ours fused, genai's) decode so, as the Generator runs them;
    # others (traced graphs) in the plain loop, which copies the cache into a new present on every call.
    sessions = [_timer(make_session(out / n, "cpu", threads), out / n, max(contexts) + 2)
                for n in names if n != "llamacpp"]
    if llama is not None:
        sessions.append(LlamaCppDecoder(llama, threads, n_ctx=max(contexts) + 2))
    lat = measure_decoders(sessions, len(tok), contexts=contexts, runs=runs)
    del sessions
    dump = {"configs": {k: c.to_dict() for k, c in configs.items()}, "builds": builds}
    rows = []
    for n, p, ls, rss in zip(names, ppl, lat, run_rss, strict=True):
        row, dump[n] = _row(n, p, ls, rss, builds, gen_ms, gguf, out, contexts, ppl[0].ppl)
        rows.append(row)
    (out / "bench.json").write_text(json.dumps(dump, indent=2))
    _plot(out / "decode_vs_ppl.png", dump, names)
    ours = "; ".join(f"{k} = {c.method} W{c.bits} b{c.block_size} keep {c.keep:g} {c.structure.value} head "
                     f"{c.head_bits or 'FP32'}" for k, c in configs.items())
    header = (f"{model}: {len(ids)} tokens of {data.name} -> {ppl[0].tokens} scored (window {max_length}, stride "
              f"{stride}); ONNX Runtime CPU, {threads} threads, batch 1, {runs} timed steps; "
              f"{ours or 'no re-quantized contender'}; MatMulNBits "
              f"accuracy_level {accuracy_level} (ours and ORT RTN block {_block(configs)}); "
              f"FP32 weights {builds['fp32']['weight_mb']:.0f} MiB")
    cols = ["backend", "MB", "nodes", "ppl", "Δ ppl", "prefill 128 ms", *(f"decode ms/tok @{c}" for c in contexts),
            "p90 @128", "tok/s @128", "genai Generator ms/tok", "run RSS MiB", "build s", "build peak RSS MiB"]
    return "\n".join([header, markdown_table(cols, rows)])


def _timer(session, folder: Path, max_length: int):
    """The session's decoder for measure_decoders: in place where its graph allows it, else the session itself."""
    from svdq_edge.runtime.decode.shared_kv import InPlaceTimer, shares_buffer

    return InPlaceTimer(session, max_length) if shares_buffer(folder) else session


def genai_decode_ms(names: list[str], out: Path, ids, threads: int) -> dict[str, float]:
    """onnxruntime-genai's Generator ms/token on every genai folder, first, before any other session exists (idle
    threads would skew it), with the same thread count written into every genai folder."""
    from svdq_edge.runtime.decode.genai import (
        decode_ms_interleaved,
        genai_available,
        is_genai_folder,
        set_session_threads,
    )

    dirs = {n: out / n for n in names if genai_available() and is_genai_folder(out / n)}
    for folder in dirs.values():
        set_session_threads(folder, threads)
    return decode_ms_interleaved(dirs, ids[:128].tolist(), 64) if dirs else {}


def _perplexities(names: list[str], out: Path, ids, max_length: int, stride: int, threads: int,
                  llama: Path | None) -> tuple[list, list]:
    """Perplexity and the peak RSS growth of running it, one contender at a time, each session freed after: a
    1024-token window of a large vocabulary is GBs of logits, which every live session's arena would keep."""
    from svdq_edge.runtime.decode.llamacpp import LlamaCppDecoder
    from svdq_edge.runtime.decode.perplexity import onnx_window_scorer, perplexity
    from svdq_edge.runtime.measure.latency import PeakRssGrowth
    from svdq_edge.runtime.runtimes.session import make_session

    scorers = [(n, lambda n=n: onnx_window_scorer(make_session(out / n, "cpu", threads))) for n in names]
    if llama is not None:
        scorers.append(("llamacpp", lambda: LlamaCppDecoder.window_scorer(llama, threads, max_length)))
    ppl, run_rss = [], []
    for n, scorer in scorers:
        gc.collect()
        with PeakRssGrowth() as rss:  # the session's load and its perplexity windows
            ppl.append(perplexity(scorer(), ids, max_length, stride, desc=f"ppl {n}"))
        run_rss.append(rss.mb)
    return ppl, run_rss


def _row(n: str, p, ls, rss_run, builds: dict, gen_ms: dict, gguf: Path | None, out: Path, contexts,
         ppl0: float) -> tuple[list[str], dict]:
    """One contender's table row, and its facts for bench.json."""
    from svdq_edge.runtime.measure.latency import model_size_mb

    d = {x.phase + str(x.context): x for x in ls}
    b = builds[n]
    size = gguf.stat().st_size / 1e6 if n == "llamacpp" else model_size_mb(out / n)
    rss = f"{b['peak_rss_mb']:.0f} ({b['peak_rss_mb'] / builds['fp32']['weight_mb']:.2f}x)" \
        if "peak_rss_mb" in b else "-"
    counts = {} if n == "llamacpp" else _op_counts(out / n)
    facts = {"ppl": p.to_dict(), "latency": [x.to_dict() for x in ls], "size_mb": size,
             "genai_decode_ms": gen_ms.get(n), "nodes": counts, "run_peak_rss_mb": rss_run}
    row = [n, f"{size:.1f}", str(sum(counts.values())) if counts else "-", f"{p.ppl:.3f}",
           f"{100 * (p.ppl / ppl0 - 1):+.2f}%",
           f"{d['prefill128'].p50_ms:.0f}", *(f"{d[f'decode{c}'].p50_ms:.2f}" for c in contexts),
           f"{d['decode128'].p90_ms:.2f}", f"{d['decode128'].tokens_per_s:.0f}",
           f"{gen_ms[n]:.2f}" if n in gen_ms else "-", "-" if rss_run is None else f"{rss_run:.0f}",
           f"{b['seconds']:.0f}" if n != "llamacpp" else "-", rss]
    return row, facts


def _plot(path: Path, dump: dict, names: list[str]) -> None:
    """Perplexity against decode ms/token at 128 cached tokens, one point per backend."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.4))
    for n in names:
        ms = next(x["p50_ms"] for x in dump[n]["latency"] if x["phase"] == "decode" and x["context"] == 128)
        ax.plot(ms, dump[n]["ppl"]["ppl"], "o")
        ax.annotate(n, (ms, dump[n]["ppl"]["ppl"]), textcoords="offset points", xytext=(4, 4), fontsize=8)
    ax.set_xlabel("decode ms/token at 128 cached tokens (p50)")
    ax.set_ylabel("perplexity")
    ax.set_title("Decoder backends: speed against quality")
    ax.grid(alpha=0.3)
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def _block(configs: dict[str, QuantConfig]) -> int:
    """ORT RTN's block size: our first variant's (32, GGUF's block, without variants)."""
    return next(iter(configs.values())).block_size if configs else 32


def _op_counts(folder: Path) -> dict[str, int]:
    import onnx

    return dict(collections.Counter(n.op_type for n in onnx.load(str(model_file(folder)),
                                                                  load_external_data=False).graph.node))
