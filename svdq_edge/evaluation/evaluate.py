"""PyTorch-side evaluation: logits on a GLUE dataset, accuracy with a CI, fidelity against a reference model."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor, nn
from tqdm.auto import tqdm

from svdq_edge.evaluation.data import TextDataset
from svdq_edge.evaluation.stats import wilson_interval


def batches(tokenizer, data: TextDataset, batch_size: int = 32, max_length: int = 128):
    """Tokenized batches (dicts of int64 tensors) over the dataset, in order."""
    for i in range(0, len(data), batch_size):
        a = data.text_a[i : i + batch_size]
        b = None if data.text_b is None else data.text_b[i : i + batch_size]
        enc = tokenizer(a, b, padding=True, truncation=True, max_length=max_length, return_tensors="pt")
        yield dict(enc)


@torch.no_grad()
def predict_logits(model: nn.Module, tokenizer, data: TextDataset, batch_size: int = 32, max_length: int = 128,
                   progress: bool = True, desc: str = "eval") -> Tensor:
    """Logits [n, classes] of a sequence-classification model."""
    model.eval()
    out = []
    n_batches = -(-len(data) // batch_size)
    for batch in tqdm(batches(tokenizer, data, batch_size, max_length), total=n_batches, desc=desc,
                      disable=not progress, leave=False):
        out.append(model(**batch).logits.float())
    return torch.cat(out)


@dataclass(frozen=True)
class Accuracy:
    correct: int
    n: int

    @property
    def value(self) -> float:
        return self.correct / self.n

    @property
    def ci(self) -> tuple[float, float]:
        return wilson_interval(self.correct, self.n)

    def __str__(self) -> str:
        lo, hi = self.ci
        return f"{100 * self.value:.2f}% (n={self.n}, 95% CI {100 * lo:.2f}-{100 * hi:.2f})"


def correct_mask(logits: Tensor, labels: list[int]) -> list[bool]:
    return (logits.argmax(-1) == torch.tensor(labels)).tolist()


def accuracy(logits: Tensor, labels: list[int]) -> Accuracy:
    c = correct_mask(logits, labels)
    return Accuracy(sum(c), len(c))


def kl_divergence(ref_logits: Tensor, logits: Tensor) -> float:
    """Mean KL(softmax(ref) || softmax(logits)) over rows, in nats."""
    p = torch.log_softmax(ref_logits.double(), -1)
    q = torch.log_softmax(logits.double(), -1)
    return float((p.exp() * (p - q)).sum(-1).mean())


def top1_agreement(ref_logits: Tensor, logits: Tensor) -> float:
    return float((ref_logits.argmax(-1) == logits.argmax(-1)).double().mean())
