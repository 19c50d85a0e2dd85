"""Decoders at the sizes users ship: synthetic Llama GGUFs of about 0.5 B and 1.5 B parameters (random weights,
svdq_edge/gguf/synthetic.py), our exact transcode at accuracy levels 0 and 4 against llama.cpp on the same file and
onnxruntime-genai's INT4 build of its FP32 weights, in one interleaved run per model.

Per contender: file size, top-1 agreement with llama.cpp's logits (teacher-forced on random prompts: perplexity
means nothing on random weights), prefill time, decode ms/token at each context, and the effective memory bandwidth
of a decode step: the bytes it must read (every weight once, as the tied head reads the whole token table, plus the
KV cache at that context in the contender's KV dtype) over its time, against the machine's read bandwidth measured
in the same run (runtime/measure/bandwidth.py). Peak RSS is measured per contender in a fresh process that loads it,
fills its cache to the largest context and decodes one token (runtime/validation/run_child.py).
"""

from __future__ import annotations

import gc
import json
import logging
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from svdq_edge.errors import UserError
from svdq_edge.gguf.synthetic import PRESET_VOCAB, PRESETS, LinearType, LlamaShape, describe, write_synthetic_gguf
from svdq_edge.util.table import markdown_table

log = logging.getLogger(__name__)
LLAMACPP = "llamacpp"
KV_BYTES = {"tensor(float)": 4, "tensor(float16)": 2}
LLAMACPP_KV_BYTES = 2  # llama.cpp's default KV cache type is f16
COPY_LOOP = "gguf-acc4"  # also timed in the plain loop, which copies the cache on every call


@dataclass(frozen=True)
class ScaleModel:
    """One synthetic model: a size preset and the GGML type of its linears, written as `0.5b:q4_0`."""

    preset: str
    linear: LinearType

    @classmethod
    def parse(cls, text: str) -> ScaleModel:
        preset, _, linear = text.partition(":")
        if preset not in PRESETS:
            raise UserError(f"model {text!r}: size must be one of {', '.join(PRESETS)}")
        try:
            return cls(preset, LinearType(linear or "q4_0"))
        except ValueError:
            raise UserError(f"model {text!r}: type must be one of "
                            f"{', '.join(t.value for t in LinearType)}") from None

    @property
    def name(self) -> str:
        return f"synthetic-{self.preset}-{self.linear.value}"

    @property
    def shape(self) -> LlamaShape:
        return PRESETS[self.preset]


@dataclass(frozen=True)
class ScaleSettings:
    threads: int = 2
    runs: int = 20  # timed decode steps per contender and context
    prefill_runs: int = 3
    prefill: int = 512  # prompt tokens of the timed prefill
    contexts: tuple[int, ...] = (128, 1024)
    prompts: int = 4  # random prompts scored for top-1 agreement
    prompt_tokens: int = 64
    genai: bool = True
    vocab: int = PRESET_VOCAB


def kv_bytes_per_token(shape: LlamaShape, element_bytes: int) -> int:
    """Bytes of K and V cached per token over all layers."""
    return 2 * shape.layers * shape.kv_heads * shape.head_dim * element_bytes


def top1_agreement(reference: np.ndarray, top1: np.ndarray) -> float:
    """Share of positions whose top-1 token equals the reference's: reference, top1 int64 [...]."""
    return float((reference == top1).mean())


def fill_cache(session, ids: np.ndarray, chunk: int = 128):
    """Feed ids int64 [1, n] in `chunk`-token pieces (as llama.cpp feeds a prompt in batches), so that no call's
    output holds more than `chunk` positions of logits; returns the decoder state after the last piece."""
    from svdq_edge.runtime.decode.session import OnnxDecoder

    decoder = OnnxDecoder(session)
    _, state = decoder.prefill(ids[:, :chunk])
    for a in range(chunk, ids.shape[1], chunk):
        _, state = decoder.extend(ids[:, a:a + chunk], state)
    return state


def synthetic_file(model: ScaleModel, out: Path, tokenizer_gguf: Path) -> Path:
    """The model's GGUF under `out`, written once (same preset, type and seed: the same file)."""
    path = out / f"{model.name}.gguf"
    if not path.is_file():
        log.warning("writing %s (%.2f B parameters)", path, model.shape.parameters(PRESET_VOCAB) / 1e9)
        write_synthetic_gguf(path, model.shape, model.linear, tokenizer_gguf)
    return path


def build(gguf: Path, out: Path, genai: bool) -> dict[str, dict]:
    """Every ONNX contender's folder under `out`, each built in a fresh child process: {name: build facts}."""
    from svdq_edge.runtime.decode.genai import genai_available
    from svdq_edge.runtime.validation.decoders import build_in_child

    builds = {}
    for label, level in (("gguf-acc0", 0), ("gguf-acc4", 4)):
        log.warning("building %s", label)
        builds[label] = build_in_child(["--model", str(gguf), "--transcode", "--out", str(out / label),
                                        "--accuracy-level", str(level)])
    if genai and genai_available():
        from svdq_edge.sources.load import resolve_source

        log.warning("building genai-int4 (from the file's FP32 weights)")
        try:
            builds["genai-int4"] = build_in_child(["--model", resolve_source(str(gguf)), "--genai",
                                                   "--out", str(out / "genai-int4")])
        except RuntimeError as e:  # a missing row, said so
            log.warning("onnxruntime-genai's builder left out: %s", e)
    return builds


def scale_report(models: list[ScaleModel], out: Path, s: ScaleSettings) -> str:
    """One table per model (also saved as scale.json); llama.cpp rows need the `llamacpp` extra."""
    from svdq_edge.gguf.convert import smollm2_gguf
    from svdq_edge.runtime.decode.llamacpp import llamacpp_available

    out.mkdir(parents=True, exist_ok=True)
    if not llamacpp_available():
        log.warning("llama.cpp is not installed (extra `llamacpp`): agreement is taken against gguf-acc0")
    tables, dump = [], {}
    for m in models:
        gguf = synthetic_file(m, out, smollm2_gguf())
        table, dump[m.name] = _model_report(m, gguf, out / m.name, s, llamacpp_available())
        tables.append(table)
        (out / "scale.json").write_text(json.dumps(dump, indent=2))
    return "\n\n".join(tables)


def _model_report(m: ScaleModel, gguf: Path, out: Path, s: ScaleSettings, llama: bool) -> tuple[str, dict]:
    from svdq_edge.runtime.decode.latency import measure_decoders
    from svdq_edge.runtime.measure.bandwidth import read_bandwidth_gbs
    from svdq_edge.runtime.measure.latency import model_size_mb
    from svdq_edge.runtime.validation.decoders import genai_decode_ms

    builds = build(gguf, out, s.genai)
    names = list(builds)
    sizes = {n: model_size_mb(out / n) * 1e6 for n in names}
    if llama:
        names.append(LLAMACPP)
        sizes[LLAMACPP] = float(gguf.stat().st_size)
    prompts = np.random.default_rng(0).integers(100, s.vocab, (s.prompts, s.prompt_tokens), dtype=np.int64)
    gen_ms = genai_decode_ms(names, out, prompts.reshape(-1), s.threads) if s.genai else {}
    top1, kv = _score(names, out, gguf, prompts, s)
    rss = {n: run_rss_mb(n, out, gguf, s) for n in names}
    reference = top1[LLAMACPP if llama else "gguf-acc0"]
    bandwidth = [read_bandwidth_gbs(s.threads)]
    labels, timers = _timers(names, out, gguf, s)
    lat = measure_decoders(timers, s.vocab, contexts=s.contexts, prompt=s.prefill, runs=s.runs,
                           prefill_runs=s.prefill_runs, warmup=2)
    del timers
    gc.collect()
    bandwidth.append(read_bandwidth_gbs(s.threads))
    peak = max(bandwidth)  # the probe's best, before and after the timed calls
    base = {x.context: x.p50_ms for x in lat[labels.index(LLAMACPP)] if x.phase == "decode"} if llama else {}
    # Random weights give small logit margins: how often our two accuracy levels (the same weights, FP32 or int8
    # activations) agree with each other is the scale against which agreement with llama.cpp reads.
    levels = top1_agreement(top1["gguf-acc0"], top1["gguf-acc4"])
    rows, facts = [], {"shape": describe(m.shape, s.vocab), "bandwidth_gbs": bandwidth, "builds": builds,
                       "agreement_acc0_acc4": levels}
    for label, ls in zip(labels, lat, strict=True):
        n = label.split(" ")[0]  # "gguf-acc4 (copying loop)" is gguf-acc4's file
        dec = {x.context: x.p50_ms for x in ls if x.phase == "decode"}
        pre = next(x.p50_ms for x in ls if x.phase == "prefill")
        gbs = {c: (sizes[n] + c * kv_bytes_per_token(m.shape, kv[n])) / (dec[c] / 1e3) / 1e9 for c in s.contexts}
        agree = top1_agreement(reference, top1[n])
        facts[label] = {"size_bytes": sizes[n], "agreement": agree, "prefill_ms": pre, "decode_ms": dec,
                        "effective_gbs": gbs, "run_peak_rss_mb": rss[n], "kv_bytes": kv[n],
                        "genai_decode_ms": gen_ms.get(n)}
        rows.append([label, f"{sizes[n] / 1e6:.0f}", "reference" if reference is top1[n] else f"{100 * agree:.1f}%",
                     f"{pre:.0f}",
                     *(f"{dec[c]:.1f}" + (f" ({dec[c] / base[c]:.2f}x)" if base and n != LLAMACPP else "")
                       for c in s.contexts),
                     *(f"{gbs[c]:.1f} ({100 * gbs[c] / peak:.0f}%)" for c in s.contexts),
                     f"{gen_ms[n]:.1f}" if n in gen_ms and label == n else "-",
                     f"{rss[n]:.0f} ({rss[n] * 2**20 / sizes[n]:.2f}x)"])
    return "\n".join([_header(m, s, llama, peak, levels), markdown_table(_columns(s), rows)]), facts


def _timers(names: list[str], out: Path, gguf: Path, s: ScaleSettings) -> tuple[list[str], list]:
    """(labels, decoders) timed together: ONNX folders that allow it decode in place (the KV cache written into one
    buffer, as onnxruntime-genai's Generator runs them), gguf-acc4 also in the plain loop that copies the cache
    into a new present on every call; llama.cpp on the file."""
    from svdq_edge.runtime.decode.llamacpp import LlamaCppDecoder
    from svdq_edge.runtime.decode.shared_kv import InPlaceTimer, shares_buffer
    from svdq_edge.runtime.runtimes.session import make_session

    labels, timers = [], []
    n_ctx = max(max(s.contexts), s.prefill) + 2
    for n in names:
        if n == LLAMACPP:
            labels.append(n)
            timers.append(LlamaCppDecoder(gguf, s.threads, n_ctx=n_ctx))
            continue
        session = make_session(out / n, "cpu", s.threads)
        labels.append(n)
        timers.append(InPlaceTimer(session, n_ctx) if shares_buffer(out / n) else session)
        if n == COPY_LOOP:
            labels.append(f"{n} (copying loop)")
            timers.append(session)
    return labels, timers


def _header(m: ScaleModel, s: ScaleSettings, llama: bool, bandwidth: float, levels: float) -> str:
    return (f"{m.name}: {m.shape.parameters(s.vocab) / 1e9:.2f} B parameters ({m.shape.layers} layers, hidden "
            f"{m.shape.hidden}, FFN {m.shape.intermediate}, {m.shape.heads}/{m.shape.kv_heads} heads), random "
            f"{m.linear.value.upper()} linears, Q8_0 tied token table; CPU, {s.threads} threads, batch 1; ONNX "
            f"folders decode in place (KV cache in one buffer), `{COPY_LOOP} (copying loop)` is the plain loop; "
            f"decode p50 of {s.runs} steps, prefill p50 of {s.prefill_runs}; top-1 agreement on "
            f"{s.prompts} x {s.prompt_tokens} random-prompt positions vs {'llama.cpp' if llama else 'gguf-acc0'} "
            f"(gguf-acc0 and gguf-acc4 agree on {100 * levels:.1f}% with each other); "
            f"machine read bandwidth {bandwidth:.1f} GB/s ({s.threads} threads, best of probes before and after)")


def _columns(s: ScaleSettings) -> list[str]:
    return ["backend", "MB", "top-1 agree", f"prefill {s.prefill} ms",
            *(f"decode ms/tok @{c}" for c in s.contexts), *(f"GB/s @{c} (of machine)" for c in s.contexts),
            "genai Generator ms/tok", "run peak RSS MiB (x file)"]


def _score(names: list[str], out: Path, gguf: Path, prompts: np.ndarray, s: ScaleSettings
           ) -> tuple[dict[str, np.ndarray], dict[str, int]]:
    """Per contender, one at a time (each freed before the next loads): top-1 tokens [prompts, tokens] of every
    prompt position, and its KV element bytes."""
    from svdq_edge.runtime.decode.llamacpp import LlamaCppDecoder
    from svdq_edge.runtime.decode.session import decoder_feed
    from svdq_edge.runtime.runtimes.session import make_session

    top1, kv = {}, {}
    for n in names:
        gc.collect()
        if n == LLAMACPP:
            window = LlamaCppDecoder.window_logits(gguf, s.threads, s.prompt_tokens)
            top1[n], kv[n] = np.stack([window(p).argmax(-1) for p in prompts]), LLAMACPP_KV_BYTES
            del window
            continue
        session = make_session(out / n, "cpu", s.threads)
        top1[n] = np.stack([session.run(["logits"], decoder_feed(session, p[None], np.ones_like(p[None])))[0][0]
                            .argmax(-1) for p in prompts])
        past = next(i for i in session.get_inputs() if i.name.startswith("past_key_values"))
        kv[n] = KV_BYTES[past.type]
        del session
    return top1, kv


def run_rss_mb(name: str, out: Path, gguf: Path, s: ScaleSettings) -> float:
    """MiB a contender's process grows by (peak over its imports) to load, fill its cache to the largest context in
    128-token chunks and decode one token: measured in a fresh child process (run_child)."""
    where = ["--gguf", str(gguf)] if name == LLAMACPP else ["--folder", str(out / name)]
    proc = subprocess.run([sys.executable, "-m", "svdq_edge.runtime.validation.run_child", *where, "--context",
                           str(max(s.contexts)), "--threads", str(s.threads), "--vocab", str(s.vocab)],
                          capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"run_child {name} failed: {proc.stderr.strip().splitlines()[-1:]}")
    facts = json.loads(proc.stdout.strip().splitlines()[-1])
    return facts["peak_rss_mb"] - facts["baseline_rss_mb"]
