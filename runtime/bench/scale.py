"""Benchmark: decoders at 0.5 B and 1.5 B parameters, ours against llama.cpp and onnxruntime-genai, one run per model.

    python -m svdq_edge.runtime.bench.scale [--models 0.5b:q4_0,1.5b:q4_k] [--runs 20] [--no-genai]

Writes synthetic Llama GGUFs (random weights, SmolLM2's tokenizer; svdq_edge/gguf/synthetic.py) under --out once,
transcodes each exactly at accuracy levels 0 and 4, builds onnxruntime-genai's INT4 from its FP32 weights (extra
`genai`) and runs llama.cpp on the file (extra `llamacpp`); prints per model: top-1 agreement with llama.cpp,
prefill, decode ms/token at each context (and the ratio to llama.cpp's), effective memory bandwidth against the
machine's measured read bandwidth, and peak RSS growth while running (runtime/validation/scale.py).
"""

from __future__ import annotations

from pathlib import Path

import click

from svdq_edge.errors import UserError
from svdq_edge.runtime.validation.decoders import parse_contexts
from svdq_edge.runtime.validation.scale import ScaleModel, ScaleSettings, scale_report
from svdq_edge.util.logs import configure


@click.command()
@click.option("--models", default="0.5b:q4_0,1.5b:q4_k", show_default=True,
              help="comma-separated SIZE:TYPE, SIZE in 0.5b/1.5b (tiny: a smoke test), TYPE q4_0 or q4_k")
@click.option("--runs", type=click.IntRange(min=3), default=20, show_default=True,
              help="timed decode steps per backend and context")
@click.option("--prefill-runs", type=click.IntRange(min=1), default=3, show_default=True)
@click.option("--prefill", type=click.IntRange(min=1), default=512, show_default=True, help="prompt tokens")
@click.option("--contexts", default="128,1024", show_default=True, help="cached tokens of the timed decode steps")
@click.option("--threads", type=click.IntRange(min=1), default=2, show_default=True)
@click.option("--genai/--no-genai", default=True, show_default=True,
              help="onnxruntime-genai's INT4 build as a contender (when the extra is installed)")
@click.option("--out", type=click.Path(path_type=Path), default=Path("svdq-edge-out/bench-scale"), show_default=True)
def main(models, runs, prefill_runs, prefill, contexts, threads, genai, out):
    configure()
    settings = ScaleSettings(threads=threads, runs=runs, prefill_runs=prefill_runs, prefill=prefill,
                             contexts=parse_contexts(contexts), genai=genai)
    try:
        chosen = [ScaleModel.parse(m) for m in models.split(",")]
    except UserError as e:
        raise click.BadParameter(str(e), param_hint="--models") from None
    click.echo(scale_report(chosen, out, settings))


if __name__ == "__main__":
    main()
