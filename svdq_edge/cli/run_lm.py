"""`svdq-edge run` on a causal LM: the candidates (a GGUF's exact transcodes at accuracy levels 0 and 4; otherwise our
method with an 8- and a 4-bit head) validated beside FP32, ORT RTN INT4, onnxruntime-genai's INT4 build and llama.cpp
(where installed) in one run (runtime/validation/decoders.py: perplexity, prefill, decode at 128 and 1024 cached
tokens, memory), then one pick by the objective, copied to OUT/ship."""

from __future__ import annotations

import json
from pathlib import Path

import click

from svdq_edge.config import QuantConfig
from svdq_edge.errors import UserError


def run_causal_lm(model: str, data: Path | None, config: QuantConfig, single: bool, runtime_list: list[str],
                  threads: int | None, runs: int, objective: str, max_size: float, max_loss: float | None,
                  out: Path, overwrite: bool, limit: int | None) -> None:
    """`single`: the command line chose one configuration, the only candidate besides a GGUF's transcodes."""
    from svdq_edge.artifact.outputs import ship, staged_output
    from svdq_edge.runtime.validation.decoders import decoder_report
    from svdq_edge.runtime.validation.pick import Objective, decoder_candidates, decoder_points, pick, pick_dict
    from svdq_edge.sources.load import gguf_path

    if data is None:
        raise click.UsageError("a causal LM is measured by perplexity on a text file: give --data FILE (e.g. "
                               "WikiText-2's wiki.test.raw)")
    if not Path(data).is_file():
        raise UserError(f"{data}: no such text file")
    gguf = gguf_path(model)
    configs = {"ours": config} if single else {} if gguf is not None else decoder_candidates(config)
    candidates = [*configs, *(("gguf", "gguf-acc4") if gguf is not None else ())]
    with staged_output(out, overwrite, inputs=(model, data)) as stage:
        work = stage / "backends"
        table = decoder_report(model, configs, Path(data), ppl_tokens=limit or 8192, runs=runs, threads=threads or 2,
                               out=work, genai="genai" in runtime_list, llamacpp="llamacpp" in runtime_list)
        bench = json.loads((work / "bench.json").read_text())
        chosen = pick(decoder_points(bench, candidates), Objective(objective), max_size, max_loss)
        lines = _pick_lines(chosen, out / "ship")
        report = "\n".join([*lines, "", table, ""])
        (stage / "report.md").write_text(f"# svdq-edge run: {model}\n\n{report}")
        (stage / "report.json").write_text(json.dumps({"meta": {"pick": pick_dict(chosen, objective),
                                                                "candidates": candidates}, "results": bench},
                                                      indent=2))
        click.echo(report)
        if chosen.point is not None:
            ship(work / chosen.point.name, stage / "ship")
            click.echo(f"shipped {chosen.point.name} -> {out / 'ship'}")


def _pick_lines(p, ship_dir: Path) -> list[str]:
    """The answer first, in a decoder's units (perplexity change, decode ms/token at 128 cached tokens)."""
    if p.point is None:
        return [f"no pick: {p.why}; see the table (loosen --max-size or --max-loss)"]

    def facts(q) -> str:
        return f"{q.size_ratio:.3f}x FP32, perplexity {100 * q.loss:+.2f}% vs FP32, {q.latency_ms:.2f} ms/token @128"

    lines = [f"pick: {p.point.name} -> {ship_dir}: {facts(p.point)} ({p.why})"]
    if p.runners_up:
        lines.append("runners-up: " + "; ".join(f"{axis}: {q.name} ({facts(q)})" for axis, q in p.runners_up.items()))
    return lines
