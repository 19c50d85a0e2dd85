"""Benchmark: what each data-free quantization of a causal LM's output head costs in perplexity.

    python -m svdq_edge.runtime.bench.head --data ../shared/data/wikitext2/wiki.test.raw \
        [--recipe models/smollm2-135m.json]

The body is quantized once by the recipe (its head left FP32); then only the head's weight changes between rows, the
input embedding held at 8 bits, and the PyTorch model scores the first --ppl-tokens tokens (sliding window, as
`bench.decoder`; PyTorch computes in FP32, so figures sit ~0.1 below ONNX Runtime's int8-activation ones). At one
token per step a head's cost is its bytes (49152 x 576 on SmolLM2: 8 bits cost ~0.3-0.4 ms/token more than 4,
docs/decoders.md), so the question is which 4-bit head, or which share of 8-bit rows, keeps the perplexity.

Rows: rtn-8 (the recipe's head); rtn-4 asymmetric / symmetric / with range clipping; awq-a: columns scaled by
(gamma / mean gamma)^a of the final norm's gain before rounding, divided back after (the data-free activation proxy
the norm gives); chan-k: 4-bit plus the k input channels of largest gain kept in FP32; split-V: rows below V at 8 bits,
the rest at 4 (BPE ids are merge order, so low ids are the frequent tokens).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path

import click
import torch
from torch import Tensor

from svdq_edge.util.logs import configure
from svdq_edge.util.table import markdown_table


def head_variants(E: Tensor, gain: Tensor, block_size: int) -> dict[str, Callable[[], Tensor]]:
    """{label: () -> the head weight [vocab, hidden] as the model will use it (dequantized)}."""
    from svdq_edge.quant.blockwise import dequantize_blockwise, quantize_blockwise

    def q(W: Tensor, bits: int, **kw) -> Tensor:
        return dequantize_blockwise(quantize_blockwise(W, bits, block_size, **kw))

    def awq(a: float) -> Tensor:
        s = (gain / gain.mean()).clamp_min(1e-3) ** a  # [hidden]
        return q(E * s, 4) / s

    def chan(k: int) -> Tensor:
        W = q(E, 4)
        keep = gain.topk(k).indices
        W[:, keep] = E[:, keep]
        return W

    def split(v: int) -> Tensor:
        return torch.cat([q(E[:v], 8), q(E[v:], 4)])

    return {"rtn-8": lambda: q(E, 8), "rtn-4": lambda: q(E, 4), "rtn-4 symmetric": lambda: q(E, 4, symmetric=True),
            "rtn-4 clip": lambda: q(E, 4, clip=True), "awq-0.25": lambda: awq(0.25), "awq-0.5": lambda: awq(0.5),
            "chan-6": lambda: chan(6), "chan-23": lambda: chan(23),
            **{f"split-{v}": (lambda v=v: split(v)) for v in (8192, 16384, 24576)}}


@click.command()
@click.option("--model", default="smollm2", show_default=True,
              help="causal LM with a tied head: folder, .gguf, smollm2")
@click.option("--data", type=click.Path(exists=True, dir_okay=False, path_type=Path), required=True,
              help="raw text for perplexity (WikiText-2 wiki.test.raw)")
@click.option("--recipe", type=click.Path(exists=True, dir_okay=False, path_type=Path),
              default=Path("models/smollm2-135m.json"), show_default=True, help="the body's quantization")
@click.option("--ppl-tokens", type=click.IntRange(min=16), default=4096, show_default=True)
def main(model, data, recipe, ppl_tokens):
    from svdq_edge.config import QuantConfig
    from svdq_edge.evaluation.data import read_text_ids
    from svdq_edge.model.lm import target_nll
    from svdq_edge.pipeline.stream import quantize_any
    from svdq_edge.quant.blockwise import dequantize_blockwise, quantize_blockwise
    from svdq_edge.runtime.decode.perplexity import perplexity
    from svdq_edge.sources.load import resolve_source

    configure()
    config = QuantConfig.from_dict(json.loads(recipe.read_text())["config"]).replace(head_bits=None,
                                                                                    embedding_bits=None)
    loaded, _ = quantize_any(resolve_source(model), config, progress=True)
    lm = loaded.model.eval()
    emb, head = lm.get_input_embeddings(), lm.get_output_embeddings()
    if head is None or head.weight is not emb.weight:
        raise click.UsageError("this benchmark studies a head tied to the input embedding")
    E = emb.weight.detach().float().clone()
    gain = lm.get_decoder().norm.weight.detach().float().abs()
    ids = read_text_ids(loaded.tokenizer, data, ppl_tokens)
    emb.weight = torch.nn.Parameter(dequantize_blockwise(quantize_blockwise(E, 8, config.block_size)),
                                    requires_grad=False)

    def score(window: Tensor, n: int) -> float:
        with torch.no_grad():
            return target_nll(lm(window[None]).logits[0], window, n)

    rows = []
    for label, make in head_variants(E, gain, config.block_size).items():
        head.weight = torch.nn.Parameter(make(), requires_grad=False)
        p = perplexity(score, ids, 1024, 512, desc=label)
        rows.append([label, f"{p.ppl:.3f}"])
    click.echo(f"{model}: body {recipe.name} ({config.method} W{config.bits} b{config.block_size} keep {config.keep:g}"
               f" on {','.join(config.correct) or 'every layer'}), embedding 8-bit, PyTorch FP32 compute; "
               f"{p.tokens} tokens of {data.name} (window 1024, stride 512)")
    click.echo(markdown_table(["head", "ppl"], rows))


if __name__ == "__main__":
    main()
