"""Calibration: run a model on N samples and keep, per linear layer, the input statistics the calibrated methods need.

Per layer with inputs X [rows, K] (padding tokens dropped), two statistics are kept and nothing else, so memory is
bounded by sum(K^2) floats whatever N is:
  mean_abs = mean |x_k| over rows      (AWQ's activation magnitude)
  H        = X^T X / rows              (GPTQ/SpQR's Hessian up to a factor 2; ROSAQ's uncentered PCA matrix)
Layers fed the very same input tensor one after the other (q/k/v after one norm, gate/up) share one accumulator.
Causal LMs are run with `logits_to_keep=1`: calibration needs no [batch, seq, vocab] logits.
"""

from __future__ import annotations

import inspect
import random
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from svdq_edge.evaluation.data import DataError, TextDataset, read_glue_tsv, read_text_ids
from svdq_edge.evaluation.evaluate import batches


@dataclass(frozen=True)
class LayerStats:
    """Calibration statistics of one linear layer's input.

    mean_abs: float32 [K] mean |x_k| over calibration rows.
    H:        float32 [K, K] X^T X / rows, or None (activation-scale-only statistics, e.g. the data-free proxy).
    rows:     number of token rows seen.
    """

    mean_abs: Tensor
    H: Tensor | None
    rows: int

    def scaled(self, s: Tensor) -> LayerStats:
        """Statistics of x / s (the input after a per-channel scale s [K] was folded into the previous op)."""
        H = None if self.H is None else self.H / (s[:, None] * s[None, :])
        return LayerStats(self.mean_abs / s, H, self.rows)


@torch.no_grad()
def collect_stats(model: nn.Module, names: list[str], batches_: Iterable[dict], total: int | None = None,
                  progress: bool = True) -> dict[str, LayerStats]:
    """Run `model` on the batches (dicts with input_ids and attention_mask) and return each named layer's stats."""
    sums: dict[str, Tensor] = {}
    grams: dict[str, Tensor] = {}
    rows: dict[str, int] = {}
    alias: dict[str, str] = {}  # layer -> the layer whose accumulator it shares
    first_batch = [True]
    last: list = [None, None]  # the previous hooked layer's input tensor (held: its memory cannot be reused) and name
    mask: list[Tensor] = []

    def hook(name):
        def fn(_m, inputs, _out):
            x_in = inputs[0]
            if first_batch[0]:
                if last[0] is x_in:
                    alias[name] = alias.get(last[1], last[1])
                last[:] = [x_in, name]
            if name in alias:
                return
            x = x_in.detach().reshape(-1, x_in.shape[-1]).float()
            keep = mask[0].reshape(-1).bool()
            if keep.numel() == x.shape[0]:
                x = x[keep]
            sums[name] = sums.get(name, 0) + x.abs().sum(0)
            grams[name] = grams.get(name, 0) + x.T @ x
            rows[name] = rows.get(name, 0) + x.shape[0]

        return fn

    handles = [model.get_submodule(n).register_forward_hook(hook(n)) for n in names]
    extra = {"logits_to_keep": 1} if "logits_to_keep" in inspect.signature(model.forward).parameters else {}
    try:
        model.eval()
        for batch in tqdm(batches_, total=total, desc="calibrate", disable=not progress, leave=False):
            mask[:] = [batch["attention_mask"]]
            model(**batch, **extra)
            first_batch[0] = False
            last[:] = [None, None]
    finally:
        for h in handles:
            h.remove()
    out = {n: LayerStats(sums[n] / rows[n], grams[n] / rows[n], rows[n]) for n in sums}
    for n, src in alias.items():
        out[n] = out[src]
    missing = [n for n in names if n not in out]
    if missing:
        raise RuntimeError(f"calibration never reached layer {missing[0]}")
    return out


def sample_rows(data: TextDataset, n: int, seed: int) -> TextDataset:
    """n rows drawn without replacement (seeded) from a labelled dataset."""
    idx = sorted(random.Random(seed).sample(range(len(data)), min(n, len(data))))
    tb = None if data.text_b is None else [data.text_b[i] for i in idx]
    return TextDataset(data.task, [data.text_a[i] for i in idx], tb, [data.labels[i] for i in idx], data.path)


def text_windows(tokenizer, path: Path, n: int, seq_len: int, seed: int) -> list[Tensor]:
    """n random windows int64 [1, seq_len] of token ids from a plain text file (for causal LMs)."""
    ids = read_text_ids(tokenizer, path)
    if ids.numel() <= seq_len:
        raise DataError(f"{path}: {ids.numel()} tokens, need more than --calib-seq-len {seq_len}")
    rng = random.Random(seed)
    starts = [rng.randrange(0, ids.numel() - seq_len) for _ in range(n)]
    return [ids[s : s + seq_len].unsqueeze(0) for s in starts]


def calibration_batches(tokenizer, path: str | Path, n: int, seq_len: int, seed: int,
                        batch_size: int = 16) -> list[dict]:
    """Tokenized calibration batches from a GLUE TSV (n seeded rows) or a text file (n seeded windows)."""
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: no such calibration file")
    if tokenizer is None:
        raise DataError("calibration needs the model's tokenizer, and this model folder has none")
    if path.suffix.lower() == ".tsv":
        rows = sample_rows(read_glue_tsv(path), n, seed)
        return list(batches(tokenizer, rows, batch_size, seq_len))
    windows = text_windows(tokenizer, path, n, seq_len, seed)
    return [{"input_ids": w, "attention_mask": torch.ones_like(w)} for w in windows]
