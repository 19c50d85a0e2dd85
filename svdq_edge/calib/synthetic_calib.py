"""Calibration inputs the tool makes itself (`--calib-data synthetic[:random|:vocab|:generated]`), so that GPTQ,
SpQR, AWQ and ROSAQ need no user data.

  random     uniform random token ids, --calib-seq-len long (the `proxy` idea)
  vocab      encoders: the model's own vocabulary (no special or unused tokens) in sentence-length sequences,
             [CLS] ... [SEP] with padding, lengths uniform in [8, --calib-seq-len]
  generated  causal LMs: text the model samples itself from its BOS token (top-k 50), --calib-seq-len tokens
  (none)     `synthetic` alone: generated for causal LMs, vocab for other models

Each gives --calib-samples sequences drawn with the config's seed, as the batches `collect_stats` reads.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from svdq_edge.config import ConfigError
from svdq_edge.sources.load import ModelSourceError, ModelTask, detect_task


def random_tokens(model: nn.Module, n_seqs: int, seq_len: int, seed: int) -> Tensor:
    """int64 [n_seqs, L] uniform random token ids, L = seq_len clipped to the model's positions. The data-free
    inputs of the activation-scale estimate, the mixed-precision sensitivity and `synthetic:random`."""
    max_pos = getattr(model.config, "max_position_embeddings", seq_len) or seq_len
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, model.config.vocab_size, (n_seqs, min(seq_len, max_pos)), generator=g)


def synthetic_batches(model: nn.Module, tokenizer, kind: str, n: int, seq_len: int, seed: int,
                      batch_size: int = 16) -> list[dict]:
    """n synthetic sequences as batches {"input_ids", "attention_mask": int64 [b, L]}."""
    causal = detect_task(model.config) is ModelTask.CAUSAL_LM
    if kind == "auto":
        kind = "generated" if causal else "vocab"
    if kind == "generated" and not causal:
        raise ConfigError("synthetic:generated needs a causal LM (encoders: synthetic:vocab or synthetic:random)")
    if kind == "random":
        ids = random_tokens(model, n, seq_len, seed)
        return _split({"input_ids": ids, "attention_mask": torch.ones_like(ids)}, batch_size)
    max_pos = getattr(model.config, "max_position_embeddings", seq_len) or seq_len
    seq_len = min(seq_len, max_pos)
    if kind == "vocab":
        g = torch.Generator().manual_seed(seed)
        return _split(vocab_sequences(tokenizer, model.config.vocab_size, n, seq_len, g), batch_size)
    return _split(generated_sequences(model, tokenizer, n, seq_len, seed, batch_size), batch_size)


def vocab_sequences(tokenizer, vocab: int, n: int, seq_len: int, g: torch.Generator) -> dict[str, Tensor]:
    """[CLS] w_1 .. w_m [SEP] + padding, w uniform over the plain vocabulary, m + 2 uniform in [8, seq_len]."""
    if tokenizer is None:
        raise ModelSourceError("synthetic:vocab needs the model's tokenizer (its special tokens), and there is none")
    special = set(tokenizer.all_special_ids)
    tokens = tokenizer.convert_ids_to_tokens(list(range(vocab)))
    plain = torch.tensor([i for i, t in enumerate(tokens) if i not in special and t is not None and not _marker(t)])
    cls = tokenizer.cls_token_id if tokenizer.cls_token_id is not None else tokenizer.bos_token_id
    sep = tokenizer.sep_token_id if tokenizer.sep_token_id is not None else tokenizer.eos_token_id
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    ids = torch.full((n, seq_len), pad, dtype=torch.long)
    mask = torch.zeros((n, seq_len), dtype=torch.long)
    lengths = torch.randint(min(8, seq_len), seq_len + 1, (n,), generator=g)
    for r, length in enumerate(lengths.tolist()):
        words = plain[torch.randint(0, len(plain), (length,), generator=g)]
        if cls is not None:
            words[0] = cls
        if sep is not None:
            words[-1] = sep
        ids[r, :length], mask[r, :length] = words, 1
    return {"input_ids": ids, "attention_mask": mask}


@torch.no_grad()
def generated_sequences(model: nn.Module, tokenizer, n: int, seq_len: int, seed: int,
                        batch_size: int) -> dict[str, Tensor]:
    """n sequences the model samples from its BOS token (top-k 50, temperature 1), seq_len tokens each."""
    bos = model.config.bos_token_id
    if bos is None and tokenizer is not None:
        bos = tokenizer.bos_token_id
    if bos is None:
        raise ModelSourceError("synthetic:generated needs a BOS token id in the model config or tokenizer")
    torch.manual_seed(seed)  # generate() samples from the global generator
    model.eval()
    rows = []
    for start in range(0, n, batch_size):
        b = min(batch_size, n - start)
        prompt = torch.full((b, 1), bos, dtype=torch.long)
        out = model.generate(prompt, attention_mask=torch.ones_like(prompt), do_sample=True, top_k=50,
                             max_new_tokens=seq_len - 1, min_new_tokens=seq_len - 1, pad_token_id=bos)
        rows.append(out[:, :seq_len])
    ids = torch.cat(rows)
    return {"input_ids": ids, "attention_mask": torch.ones_like(ids)}


def _marker(token: str) -> bool:
    """[unused12], <extra_id_3> and the like: vocabulary slots no text produces."""
    return (token.startswith("[") and token.endswith("]")) or (token.startswith("<") and token.endswith(">"))


def _split(batch: dict[str, Tensor], size: int) -> list[dict]:
    n = batch["input_ids"].shape[0]
    return [{k: v[i : i + size] for k, v in batch.items()} for i in range(0, n, size)]
