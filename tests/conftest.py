"""Shared fixtures: tiny models built in code, and paths to the real models and data in ../shared."""

from __future__ import annotations

import contextvars
import importlib.util
import os
from pathlib import Path

import pytest
import torch
from transformers import (
    BertConfig,
    BertForSequenceClassification,
    Gemma3ForCausalLM,
    Gemma3TextConfig,
    GPT2Config,
    GPT2LMHeadModel,
    LlamaConfig,
    LlamaForCausalLM,
    MistralConfig,
    MistralForCausalLM,
    Qwen2Config,
    Qwen2ForCausalLM,
)

ROOT = Path(__file__).resolve().parents[1]
SHARED = Path(__file__).resolve().parents[1].parent / "shared"


def tiny_bert() -> BertForSequenceClassification:
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=120, hidden_size=64, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=160, max_position_embeddings=64, num_labels=2)
    cfg.architectures = ["BertForSequenceClassification"]
    return BertForSequenceClassification(cfg).eval()


def tiny_llama(**overrides) -> LlamaForCausalLM:
    torch.manual_seed(0)
    cfg = LlamaConfig(**(dict(vocab_size=128, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                              num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                              eos_token_id=2) | overrides))
    cfg.architectures = ["LlamaForCausalLM"]
    return LlamaForCausalLM(cfg).eval()


def tiny_llama_tied() -> LlamaForCausalLM:
    """A Llama whose LM head is the input embedding (as SmolLM2's)."""
    return tiny_llama(tie_word_embeddings=True, bos_token_id=1)


def tiny_qwen2() -> Qwen2ForCausalLM:
    """Qwen2: biases on q/k/v."""
    torch.manual_seed(0)
    cfg = Qwen2Config(vocab_size=128, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                      num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64, eos_token_id=2)
    cfg.architectures = ["Qwen2ForCausalLM"]
    model = Qwen2ForCausalLM(cfg).eval()
    with torch.no_grad():  # random init leaves biases at 0: make them matter
        for layer in model.model.layers:
            for m in (layer.self_attn.q_proj, layer.self_attn.k_proj, layer.self_attn.v_proj):
                m.bias.normal_(0, 0.5)
    return model


def tiny_mistral(window: int = 5) -> MistralForCausalLM:
    """Mistral with a sliding window shorter than the test sequences."""
    torch.manual_seed(0)
    cfg = MistralConfig(vocab_size=128, hidden_size=64, intermediate_size=176, num_hidden_layers=2,
                        num_attention_heads=4, num_key_value_heads=2, max_position_embeddings=64,
                        sliding_window=window, eos_token_id=2)
    cfg.architectures = ["MistralForCausalLM"]
    return MistralForCausalLM(cfg).eval()


def tiny_gemma3(window: int = 5) -> Gemma3ForCausalLM:
    """Gemma 3: scaled embedding, (1 + w) norms, q/k norms, local layers (window shorter than the test sequences,
    their own rotary base) and a global one; norm weights drawn away from their zero init so they matter."""
    torch.manual_seed(0)
    cfg = Gemma3TextConfig(vocab_size=128, hidden_size=64, intermediate_size=128, num_hidden_layers=4,
                           num_attention_heads=4, num_key_value_heads=1, head_dim=32, max_position_embeddings=64,
                           sliding_window=window, query_pre_attn_scalar=32, eos_token_id=2,
                           layer_types=["sliding_attention"] * 3 + ["full_attention"])
    cfg.architectures = ["Gemma3ForCausalLM"]
    model = Gemma3ForCausalLM(cfg).eval()
    with torch.no_grad():
        for name, p in model.named_parameters():
            if "norm" in name:
                p.normal_(0, 0.3)
    return model


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
    tiny_bert_tokenizer(path).save_pretrained(path)
    return path


def tiny_bert_tokenizer(folder: Path):
    """A WordPiece tokenizer over tiny_bert's 120 ids: special tokens, a few words, letters and digits."""
    from transformers import BertTokenizer

    words = "the film fine good bad movie number is was not very".split()  # "a" is among the letters
    chars = list("abcdefghijklmnopqrstuvwxyz0123456789")
    vocab = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]", *words, *chars, *(f"##{c}" for c in chars)]
    assert len(vocab) <= 120
    folder.mkdir(parents=True, exist_ok=True)
    (folder / "vocab.txt").write_text("\n".join(vocab) + "\n")
    return BertTokenizer(str(folder / "vocab.txt"))


def missing(reason: str) -> None:
    """A real model, dataset or package an integration test needs is absent: skip locally, fail under CI (CI=true),
    where every fixture must be there and a skip would pass a check that never ran."""
    if os.environ.get("CI", "").lower() in ("1", "true", "yes"):
        pytest.fail(f"{reason} (CI has every fixture: a skip here would hide a check)")
    pytest.skip(reason)


def require_package(module: str, install: str) -> None:
    if importlib.util.find_spec(module) is None:
        missing(f"{module} not installed ({install})")


def pytest_collection_modifyitems(config, items):
    """Tiers: a test marked neither integration, slow nor gpu is a unit test (`make test-fast` runs those)."""
    for item in items:
        if not any(item.get_closest_marker(m) for m in ("integration", "slow", "gpu")):
            item.add_marker(pytest.mark.unit)


CURRENT_TEST: contextvars.ContextVar = contextvars.ContextVar("current_test", default=None)


@pytest.fixture(autouse=True)
def _current_test(request):
    """Lets shared_path see which test asks (fixtures of wider scope run outside any test: None)."""
    token = CURRENT_TEST.set(request.node)
    yield
    CURRENT_TEST.reset(token)


def shared_path(*parts: str) -> Path:
    """A real model or dataset in ../shared. Only integration tests may read them (the unit tier must run without)."""
    test = CURRENT_TEST.get()
    if test is not None and test.get_closest_marker("integration") is None:
        pytest.fail(f"{test.name} reads ../shared: mark it @pytest.mark.integration")
    p = SHARED.joinpath(*parts)
    if not p.exists():
        missing(f"{p} not present (the shared models and data sit beside the project checkout)")
    return p
