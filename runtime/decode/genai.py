"""onnxruntime-genai (extra `genai`): its own INT4 build as a contender, and its Generator as a runtime.

`build_genai_int4` runs onnxruntime-genai's model builder (`-p int4 -e cpu`) on a Hugging Face folder: what a user
of that tool ships. `GenaiDecoder` streams greedy or sampled tokens through `onnxruntime_genai.Generator` from any
folder with a genai_config.json (ours included, with the shared past/present buffer).
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import runpy
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import onnx

from svdq_edge.artifact.layout import model_file
from svdq_edge.errors import UserError

GENAI_MODULE = "onnxruntime_genai"


class GenaiError(UserError, RuntimeError):
    """onnxruntime-genai is missing or its builder failed; the message is one line."""


def genai_available() -> bool:
    return importlib.util.find_spec(GENAI_MODULE) is not None


def is_genai_folder(folder: Path) -> bool:
    return (Path(folder) / "genai_config.json").is_file()


def build_genai_int4(hf_folder: Path, out: Path, cache: Path, in_process: bool = False) -> Path:
    """onnxruntime-genai's INT4 CPU build of `hf_folder` into `out`, with its KV dims pinned (see `pin_kv_dims`).

    `in_process` runs the builder in this interpreter (its output sent to stderr), so that this process's peak RSS
    is the builder's; otherwise it runs in a child process.
    """
    if not genai_available():
        raise GenaiError("onnxruntime-genai is not installed: pip install 'svdq-edge[genai]'")
    args = ["-i", str(hf_folder), "-o", str(out), "-p", "int4", "-e", "cpu", "-c", str(cache)]
    if in_process:
        argv = sys.argv
        try:
            sys.argv = ["builder", *args]
            with contextlib.redirect_stdout(sys.stderr):
                runpy.run_module("onnxruntime_genai.models.builder", run_name="__main__")
        except SystemExit as e:
            if e.code:
                raise GenaiError(f"onnxruntime-genai builder exited with {e.code}") from None
        finally:
            sys.argv = argv
    else:
        proc = subprocess.run([sys.executable, "-m", "onnxruntime_genai.models.builder", *args], capture_output=True,
                              text=True)
        if proc.returncode:
            tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
            raise GenaiError(f"onnxruntime-genai builder failed: {tail}")
    pin_kv_dims(out)
    return out


def pin_kv_dims(folder: Path) -> None:
    """Give the graph's symbolic KV head dimension its value from genai_config.json, so a plain ONNX Runtime loop
    can allocate an empty cache. Only the declared shapes change (the weights stay in their external file)."""
    head = json.loads((folder / "genai_config.json").read_text())["model"]["decoder"]["head_size"]
    path = model_file(folder)
    model = onnx.load(str(path), load_external_data=False)
    changed = False
    for v in [*model.graph.input, *model.graph.output]:
        dims = v.type.tensor_type.shape.dim
        if (v.name.startswith(("past_key_values.", "present.")) and len(dims) == 4 and dims[3].dim_param):
            dims[3].dim_value = head  # setting the value clears dim_param
            changed = True
    if changed:
        onnx.save(model, str(path))


def set_session_threads(folder: Path, threads: int) -> None:
    """Write ONNX Runtime's intra-op thread count into the folder's genai_config.json (genai's default is its own)."""
    path = Path(folder) / "genai_config.json"
    cfg = json.loads(path.read_text())
    cfg["model"]["decoder"]["session_options"]["intra_op_num_threads"] = threads
    path.write_text(json.dumps(cfg, indent=4))


def decode_ms_interleaved(folders: dict[str, Path], prompt_ids: list[int], new_tokens: int = 64,
                          rounds: int = 3) -> dict[str, float]:
    """Per folder, the median over `rounds` of GenaiDecoder.decode_ms, the folders taking turns in every round."""
    decoders = {name: GenaiDecoder(folder) for name, folder in folders.items()}
    times: dict[str, list[float]] = {name: [] for name in folders}
    for _ in range(rounds):
        for name, dec in decoders.items():
            times[name].append(dec.decode_ms(prompt_ids, new_tokens))
    return {name: sorted(t)[len(t) // 2] for name, t in times.items()}


class GenaiDecoder:
    """Token generation through onnxruntime-genai's Generator (its KV cache handling, its sampling)."""

    def __init__(self, folder: Path):
        if not genai_available():
            raise GenaiError("onnxruntime-genai is not installed: pip install 'svdq-edge[genai]'")
        import onnxruntime_genai as og

        self.og = og
        self.model = og.Model(str(folder))

    def generate_ids(self, prompt_ids: list[int], max_new_tokens: int, temperature: float = 0.0, top_k: int = 0,
                     top_p: float = 1.0, seed: int = 0) -> Iterator[int]:
        """Yield up to `max_new_tokens` ids after the prompt; stops at end-of-sequence as the folder's config says."""
        params = self.og.GeneratorParams(self.model)
        opts = {"max_length": len(prompt_ids) + max_new_tokens, "do_sample": temperature > 0}
        if temperature > 0:
            opts |= {"temperature": temperature, "top_p": top_p, "random_seed": seed}
            if top_k:
                opts["top_k"] = top_k
        params.set_search_options(**opts)
        gen = self.og.Generator(self.model, params)
        gen.append_tokens(prompt_ids)
        while not gen.is_done():
            gen.generate_next_token()
            yield int(gen.get_next_tokens()[0])

    def decode_ms(self, prompt_ids: list[int], new_tokens: int) -> float:
        """Median ms per generated token after the prompt (greedy; end-of-sequence ignored by taking a
        min_length)."""
        params = self.og.GeneratorParams(self.model)
        n = len(prompt_ids) + new_tokens
        params.set_search_options(max_length=n, min_length=n, do_sample=False)
        gen = self.og.Generator(self.model, params)
        gen.append_tokens(prompt_ids)
        times = []
        while not gen.is_done():
            t = time.perf_counter()
            gen.generate_next_token()
            times.append(time.perf_counter() - t)
        times = sorted(times[1:])  # the first call still holds prompt work done lazily
        return 1e3 * times[len(times) // 2]
