"""Benchmark: a decoder LLM under ONNX Runtime: FP32, ORT's RTN INT4, onnxruntime-genai's own INT4 build, ours.

    python -m svdq_edge.runtime.bench.decoder --data ../shared/data/wikitext2/wiki.test.raw [--model smollm2]

Prints one table: file size, graph nodes, WikiText-2 perplexity (standard sliding window, first --ppl-tokens tokens),
prefill of a 128-token prompt, decode ms/token with 128 and 1024 tokens in the cache (one ONNX Runtime loop for
every contender, the cache written in place where the graph allows it, interleaved, batch 1), decode ms/token
through onnxruntime-genai's Generator for the folders it runs (shared KV buffer), and per contender the build time
and peak RSS of building it (quantize + export for ours, the builder for genai's), each in a fresh child process,
against the model's FP32 weight bytes.
The genai contender is there when the `genai` extra is installed. With a GGUF source (`smollm2` is a Q4_1 GGUF) the
weights already sit on a quantized grid, so its perplexities flatter every re-quantizing method; two more pairs of
contenders then run: the file transcoded exactly (`gguf`: FP32 compute; `gguf-acc4`: int8 activations), and
llama.cpp on the file itself (`llamacpp`, when the `llamacpp` extra is installed), timed in the same interleaved run.
"""

from __future__ import annotations

import json
from pathlib import Path

import click

from svdq_edge.config import QuantConfig
from svdq_edge.recipes import read_recipe
from svdq_edge.runtime.validation.decoders import decoder_report, parse_contexts
from svdq_edge.util.logs import configure


def default_variants() -> dict[str, dict]:
    """Ours: the SmolLM2 recipe (8-bit shared head) and the same with a 4-bit head."""
    base = read_recipe("smollm2-135m")["config"]
    return {"ours": base, "ours-head4": base | {"head_bits": 4}}


@click.command()
@click.option("--model", default="smollm2", show_default=True, help="causal LM: hub id, folder, .gguf, smollm2")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=False,
              help="raw text for perplexity (WikiText-2 wiki.test.raw)")
@click.option("--variants", default=None, help="our exports as JSON {label: QuantConfig fields} "
              "(default: the SmolLM2 recipe, and the same with a 4-bit head)")
@click.option("--ppl-tokens", type=click.IntRange(min=16), default=4096, show_default=True,
              help="score the first N tokens")
@click.option("--max-length", type=click.IntRange(min=2), default=1024, show_default=True)
@click.option("--stride", type=click.IntRange(min=1), default=512, show_default=True)
@click.option("--runs", type=click.IntRange(min=5), default=200, show_default=True,
              help="timed decode steps per backend and context")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--contexts", default="128,1024", show_default=True, help="cached tokens of the timed decode steps")
@click.option("--accuracy-level", type=click.IntRange(0, 4), default=4, show_default=True,
              help="MatMulNBits accuracy_level of our exports and ORT's RTN (4: int8 activations on CPU)")
@click.option("--genai/--no-genai", default=True, show_default=True,
              help="onnxruntime-genai's INT4 build as a contender (when the extra is installed)")
@click.option("--gguf/--no-gguf", "gguf_contenders", default=True, show_default=True,
              help="GGUF sources: our exact transcode of the file, and llama.cpp on it (when installed)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("svdq-edge-out/bench-decoder"), show_default=True)
def main(model, data, variants, ppl_tokens, max_length, stride, runs, threads, contexts, accuracy_level, genai,
         gguf_contenders, out):
    configure()  # ORT's quantizer logs a line per MatMul at INFO: WARNING only
    if data is None:
        raise click.UsageError("--data is required (e.g. ../shared/data/wikitext2/wiki.test.raw)")
    raw = default_variants() if variants is None else json.loads(variants)
    configs = {label: QuantConfig.from_dict(d) for label, d in raw.items()}
    click.echo(decoder_report(model, configs, data, ppl_tokens, max_length, stride, runs, threads, out,
                              accuracy_level, genai, gguf_contenders, contexts=parse_contexts(contexts)))


if __name__ == "__main__":
    main()
