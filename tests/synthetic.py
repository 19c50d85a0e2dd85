"""Synthetic Llama checkpoints written shard by shard (FP16 safetensors + index), never whole in memory: models larger
than a test machine's RAM budget, for the memory tests of lazy quantization and streamed export."""

from __future__ import annotations

import json
from pathlib import Path

import torch
from safetensors.torch import save_file
from transformers import LlamaConfig

# ~1.45 B parameters: 30 layers of hidden 2048 (GQA 32/4 heads), untied 32k head.
LLAMA_1B5 = dict(vocab_size=32000, hidden_size=2048, intermediate_size=5632, num_hidden_layers=30,
                 num_attention_heads=32, num_key_value_heads=4, max_position_embeddings=2048, eos_token_id=2,
                 bos_token_id=1, tie_word_embeddings=False)
SHARD_BYTES = 1 << 30


def llama_tensors(cfg: LlamaConfig):
    """(name, shape) of every tensor of a LlamaForCausalLM checkpoint, in file order."""
    h, inter, kv = cfg.hidden_size, cfg.intermediate_size, cfg.num_key_value_heads * (cfg.hidden_size //
                                                                                        cfg.num_attention_heads)
    yield "model.embed_tokens.weight", (cfg.vocab_size, h)
    for i in range(cfg.num_hidden_layers):
        p = f"model.layers.{i}"
        yield f"{p}.input_layernorm.weight", (h,)
        for n, shape in (("q", (h, h)), ("k", (kv, h)), ("v", (kv, h)), ("o", (h, h))):
            yield f"{p}.self_attn.{n}_proj.weight", shape
        yield f"{p}.post_attention_layernorm.weight", (h,)
        for n, shape in (("gate", (inter, h)), ("up", (inter, h)), ("down", (h, inter))):
            yield f"{p}.mlp.{n}_proj.weight", shape
    yield "model.norm.weight", (h,)
    if not cfg.tie_word_embeddings:
        yield "lm_head.weight", (cfg.vocab_size, h)


def write_synthetic_llama(folder: Path, seed: int = 0, **overrides) -> tuple[Path, int]:
    """A random FP16 Llama (LLAMA_1B5 unless overridden) as sharded safetensors; returns (folder, parameters)."""
    cfg = LlamaConfig(**(LLAMA_1B5 | overrides))
    cfg.architectures = ["LlamaForCausalLM"]
    folder.mkdir(parents=True, exist_ok=True)
    cfg.save_pretrained(folder)
    g = torch.Generator().manual_seed(seed)
    shard: dict[str, torch.Tensor] = {}
    index: dict[str, str] = {}
    count, size, n_params = 0, 0, 0

    def flush() -> None:
        nonlocal shard, size, count
        name = f"model-{count:05d}.safetensors"
        save_file(shard, str(folder / name), metadata={"format": "pt"})
        index.update(dict.fromkeys(shard, name))
        shard, size, count = {}, 0, count + 1

    for name, shape in llama_tensors(cfg):
        t = torch.ones(shape) if name.endswith("norm.weight") else torch.randn(shape, generator=g) * 0.02
        shard[name] = t.to(torch.float16)
        size += shard[name].numel() * 2
        n_params += shard[name].numel()
        if size >= SHARD_BYTES:
            flush()
    if shard:
        flush()
    (folder / "model.safetensors.index.json").write_text(json.dumps({"metadata": {"total_size": 2 * n_params},
                                                                      "weight_map": index}))
    return folder, n_params
