"""The side files that make an exported decoder folder an onnxruntime-genai model folder.

genai_config.json names the graph's inputs and outputs and the KV-cache shape; `past_present_share_buffer` is true
for the fused graph (GroupQueryAttention writes the new keys into the past buffer in place). generation_config.json
and the tokenizer files are what Hugging Face tools and onnxruntime-genai read for decoding defaults and text.
"""

from __future__ import annotations

import json
import logging
from pathlib import Path

log = logging.getLogger(__name__)

GENAI_CONFIG = "genai_config.json"
# onnxruntime-genai picks its model class by `type`. Its "gpt2" class expects an older combined-KV layout; our fused
# GPT-2 graph has the generic decoder-only I/O, which genai runs under "llama" (tokens checked in the tests).
GENAI_TYPE = {"gpt2": "llama"}
# transformers 5 writes this class name into tokenizer_config.json; 4.x (the versions Optimum pins) rejects it,
# and onnxruntime-genai's tokenizer does not know it. The fast tokenizer class reads the same tokenizer.json.
PORTABLE_TOKENIZER_CLASS = {"TokenizersBackend": "PreTrainedTokenizerFast"}


def genai_config(config, onnx_file: str, share_buffer: bool, eos_ids: list[int], pad_id: int | None,
                 bos_id: int | None) -> dict:
    """The genai_config.json dict for a decoder with the fused graph's I/O names."""
    heads = config.num_attention_heads
    head_dim = getattr(config, "head_dim", None) or config.hidden_size // heads
    context = int(config.max_position_embeddings)
    decoder = {
        "session_options": {"log_id": "onnxruntime-genai", "provider_options": []},
        "filename": onnx_file,
        "head_size": head_dim,
        "hidden_size": config.hidden_size,
        "inputs": {"input_ids": "input_ids", "attention_mask": "attention_mask",
                   "past_key_names": "past_key_values.%d.key", "past_value_names": "past_key_values.%d.value"},
        "outputs": {"logits": "logits", "present_key_names": "present.%d.key",
                    "present_value_names": "present.%d.value"},
        "num_attention_heads": heads,
        "num_hidden_layers": config.num_hidden_layers,
        "num_key_value_heads": getattr(config, "num_key_value_heads", None) or heads,
    }
    eos = eos_ids[0] if len(eos_ids) == 1 else eos_ids
    model = {"bos_token_id": bos_id, "context_length": context, "decoder": decoder, "eos_token_id": eos,
             "pad_token_id": pad_id if pad_id is not None else eos_ids[0],
             "type": GENAI_TYPE.get(config.model_type, config.model_type),
             "vocab_size": config.vocab_size}
    search = {"diversity_penalty": 0.0, "do_sample": False, "early_stopping": True, "length_penalty": 1.0,
              "max_length": context, "min_length": 0, "no_repeat_ngram_size": 0, "num_beams": 1,
              "num_return_sequences": 1, "past_present_share_buffer": share_buffer, "repetition_penalty": 1.0,
              "temperature": 1.0, "top_k": 50, "top_p": 1.0}
    return {"model": model, "search": search}


def special_ids(config, tokenizer) -> tuple[list[int], int | None, int | None]:
    """(eos ids, pad id, bos id) from the generation config, the model config or the tokenizer."""
    eos = getattr(config, "eos_token_id", None)
    if eos is None and tokenizer is not None:
        eos = tokenizer.eos_token_id
    eos_ids = [] if eos is None else list(eos) if isinstance(eos, (list, tuple)) else [int(eos)]
    pad = getattr(config, "pad_token_id", None)
    if pad is None and tokenizer is not None:
        pad = tokenizer.pad_token_id
    bos = getattr(config, "bos_token_id", None)
    return eos_ids, pad, bos


def write_genai_files(folder: Path, model, tokenizer, onnx_file: str, share_buffer: bool) -> bool:
    """genai_config.json and generation_config.json in `folder` (tokenizer files are saved by the caller).

    Returns False, writing neither, when the model names no end-of-sequence token: onnxruntime-genai needs one.
    """
    config = model.config
    eos_ids, pad, bos = special_ids(config, tokenizer)
    if not eos_ids:
        log.warning("no end-of-sequence token in the config or tokenizer: genai_config.json not written")
        return False
    cfg = genai_config(config, onnx_file, share_buffer, eos_ids, pad, bos)
    (folder / GENAI_CONFIG).write_text(json.dumps(cfg, indent=4))
    gen = getattr(model, "generation_config", None)
    if gen is not None:
        gen.save_pretrained(folder)
    return True


def make_tokenizer_portable(folder: Path) -> None:
    """Rewrite tokenizer_config.json's class name to one every transformers version and genai reads."""
    path = folder / "tokenizer_config.json"
    if not path.is_file():
        return
    cfg = json.loads(path.read_text())
    cls = cfg.get("tokenizer_class")
    if cls in PORTABLE_TOKENIZER_CLASS:
        cfg["tokenizer_class"] = PORTABLE_TOKENIZER_CLASS[cls]
        path.write_text(json.dumps(cfg, indent=2, ensure_ascii=False))
