"""Analysis: where int8 dynamic quantization loses an encoder's fidelity (weights' scale granularity or outliers).

    python -m svdq_edge.runtime.bench.int8_fidelity [--model FOLDER]

Every linear of the model (default: the embedded MiniLM) is replaced in PyTorch by the arithmetic of ONNX Runtime's
DynamicQuantizeMatMul (`quant.int8`: the input quantized to uint8 with one scale per tensor at run time) on int8
weights with one scale per tensor (what `quantize_dynamic` writes by default) or per output channel; then per
channel with the 1% loudest input channels masked out and added back in FP32 (LLM.int8()), or with SmoothQuant's
scale migration (alpha 0.5 / 0.7; activation maxima estimated on random tokens, no data). Prints the mean cosine of
pooled embeddings to FP32 on the shipped sentences.
"""

from __future__ import annotations

import copy

import click
import torch
from torch import Tensor, nn

from svdq_edge.calib.synthetic_calib import random_tokens
from svdq_edge.quant.int8 import dynamic_quantize
from svdq_edge.util.logs import configure
from svdq_edge.util.table import markdown_table


def int8_weights(W: Tensor, per_channel: bool) -> Tensor:
    """Symmetric int8 round trip of W [N, K] with one scale per row, or one for the tensor."""
    top = W.abs().amax(1, keepdim=True) if per_channel else W.abs().max()
    scale = top.clamp_min(1e-12) / 127
    return torch.round(W / scale).clamp(-127, 127) * scale


def dq(x: Tensor) -> Tensor:
    q, scale, zero = dynamic_quantize(x)
    return ((q - zero) * scale).float()


class DynamicInt8(nn.Module):
    """y = dequant(quant(x * m / s)) @ W_q^T (+ x[:, kept] @ W[:, kept]^T) + b, as ORT would compute it."""

    def __init__(self, linear: nn.Linear, per_channel: bool, keep: Tensor | None = None, s: Tensor | None = None):
        super().__init__()
        W = linear.weight.detach().float()
        self.bias, self.keep = linear.bias, keep
        self.s = torch.ones(W.shape[1]) if s is None else s
        self.mask = torch.ones(W.shape[1])
        if keep is not None:
            self.mask[keep] = 0
            self.W_keep = W[:, keep]
        self.Wq = int8_weights(W * self.mask * self.s, per_channel)

    def forward(self, x: Tensor) -> Tensor:
        y = dq(x * self.mask / self.s) @ self.Wq.T
        if self.keep is not None:
            y = y + x[..., self.keep] @ self.W_keep.T
        return y + self.bias


def activation_stats(model: nn.Module, names: list[str]) -> tuple[dict[str, Tensor], dict[str, Tensor]]:
    """(mean |x|, max |x|) per input channel of each named linear on 8 random token sequences."""
    mean, peak, count = {}, {}, {}
    hooks = []
    for n in names:
        def hook(_m, inputs, _out, n=n):
            x = inputs[0].reshape(-1, inputs[0].shape[-1]).abs()
            mean[n] = mean.get(n, 0) + x.sum(0)
            count[n] = count.get(n, 0) + x.shape[0]
            peak[n] = torch.maximum(peak.get(n, torch.zeros(x.shape[1])), x.amax(0))
        hooks.append(model.get_submodule(n).register_forward_hook(hook))
    ids = random_tokens(model, 8, 128, seed=0)
    with torch.no_grad():
        model(input_ids=ids, attention_mask=torch.ones_like(ids))
    for h in hooks:
        h.remove()
    return {n: mean[n] / count[n] for n in names}, peak


@click.command()
@click.option("--model", default=None, help="encoder folder (default: the embedded MiniLM)")
def main(model):
    configure()
    from svdq_edge.runtime.validation.pipeline import shipped_sentences
    from svdq_edge.sources.load import load_model

    loaded = load_model(model)
    fp32 = loaded.model.eval()
    enc = loaded.tokenizer(shipped_sentences().text_a, padding=True, truncation=True, max_length=128,
                           return_tensors="pt")
    mask = enc["attention_mask"].unsqueeze(-1).float()

    def pooled(m):
        with torch.no_grad():
            return (m(**enc).last_hidden_state * mask).sum(1) / mask.sum(1)

    ref = pooled(fp32)
    names = [n for n, m in fp32.named_modules() if isinstance(m, nn.Linear)]
    mean, peak = activation_stats(fp32, names)

    def variant(make) -> float:
        m = copy.deepcopy(fp32)
        for n in names:
            parent, _, child = n.rpartition(".")
            setattr(m.get_submodule(parent), child, make(n, m.get_submodule(n)))
        return torch.nn.functional.cosine_similarity(pooled(m), ref).mean().item()

    def smooth(alpha: float):
        def make(n, lin):
            w = lin.weight.detach().abs().amax(0).clamp_min(1e-8)
            s = peak[n].clamp_min(1e-8) ** alpha / w ** (1 - alpha)
            return DynamicInt8(lin, True, s=s / s.median())
        return make

    rows = [
        ["per tensor", "as is", variant(lambda n, lin: DynamicInt8(lin, False))],
        ["per output channel", "as is", variant(lambda n, lin: DynamicInt8(lin, True))],
        ["per output channel", "1% loudest input channels in FP32",
         variant(lambda n, lin: DynamicInt8(lin, True, keep=mean[n].topk(max(1, round(0.01 * len(mean[n])))).indices))],
        ["per output channel", "SmoothQuant alpha 0.5", variant(smooth(0.5))],
        ["per output channel", "SmoothQuant alpha 0.7", variant(smooth(0.7))],
    ]
    click.echo(markdown_table(["int8 weight scales", "activations (per tensor, uint8, at run time)", "mean cosine"],
                              [[a, b, f"{c:.4f}"] for a, b, c in rows]))


if __name__ == "__main__":
    main()
