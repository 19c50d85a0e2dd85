"""Shared fixtures: tiny models built in code, and paths to the real models and data in ../shared."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=160, max_position_embeddings=64, num_labels=2)
    cfg.architectures = ["BertForSequenceClassification"]
    return BertForSequenceClassification(cfg).eval()


def tiny_llama() -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(vocab_size=128, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64)
    cfg.architectures = ["LlamaForCausalLM"]
    return LlamaForCausalLM(cfg).eval()


def tiny_gpt2() -> GPT2LMHeadModel:
    torch.manual_seed(0)
    cfg = GPT2Config(vocab_size=128, n_embd=64, n_layer=2, n_head=4, n_positions=64)
    cfg.architectures = ["GPT2LMHeadModel"]
    return GPT2LMHeadModel(cfg).eval()


TINY_MODELS = {"bert": tiny_bert, "llama": tiny_llama, "gpt2": tiny_gpt2}


@pytest.fixture(params=sorted(TINY_MODELS))
def tiny_model(request):
    return request.param, TINY_MODELS[request.param]()


@pytest.fixture
def tiny_bert_dir(tmp_path) -> Path:
    path = tmp_path / "tiny-bert"
    tiny_bert().save_pretrained(path)
    return path


def shared_path(*parts: str) -> Path:
    p = SHARED.joinpath(*parts)
    if not p.exists():
        pytest.skip(f"{p} not present (the shared models and data sit beside the project checkout)")
    return p
