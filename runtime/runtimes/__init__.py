"""Runtimes that serve an exported folder, by name: `ort-cpu`, `ort-cuda`, `ort-node`, `ort-web`, `ort-web-jsep`,
`ort-web-chromium`, `ort-web-jsep-chromium`, `openvino`, `openvino-f32` (encoders); `genai`, `llamacpp` (decoders,
timed by runtime/validation/decoders.py).

An encoder runtime opens a folder as a session with ONNX Runtime's calling shape (`get_inputs()`, `run(None,
feed)`), so the same evaluation and the same interleaved timing serve every runtime. An optional runtime whose extra
is missing is skipped with the reason, never silently.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from svdq_edge.errors import UserError

ENCODER, DECODER = "encoder", "decoder"


class RuntimeSelectionError(UserError, ValueError):
    """--runtimes names an unknown runtime, or none of the named runtimes can run here."""


@dataclass(frozen=True)
class Runtime:
    name: str
    summary: str
    tasks: frozenset[str]
    missing: Callable[[], str | None]  # why it cannot run on this machine; None when it can
    # (folder holding model.onnx, intra-op threads) -> session; None: a decoder runtime (validation/decoders.py)
    open: Callable[[Path, int | None], object] | None = None
    default: bool = False  # run without --runtimes wherever it can run


def _module_missing(module: str, extra: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        if importlib.util.find_spec(module) is None:
            return f"{module} is not installed (pip install 'svdq-edge[{extra}]')"
        return None
    return missing


def _ort_missing(provider: str) -> Callable[[], str | None]:
    def missing() -> str | None:
        from svdq_edge.runtime.runtimes.session import ProviderError, resolve_provider

        try:
            resolve_provider(provider)
        except ProviderError as e:
            return str(e)
        return None
    return missing


def _open_ort(provider: str) -> Callable[[Path, int | None], object]:
    def open_(folder: Path, threads: int | None):
        from svdq_edge.runtime.runtimes.session import make_session

        return make_session(folder, provider, threads)
    return open_


def _open_openvino(precision: str | None) -> Callable[[Path, int | None], object]:
    def open_(folder: Path, threads: int | None):
        from svdq_edge.runtime.runtimes.openvino import OpenVinoSession

        return OpenVinoSession(folder, threads, precision)
    return open_


def _open_node(package: str) -> Callable[[Path, int | None], object]:
    def open_(folder: Path, threads: int | None):
        from svdq_edge.runtime.runtimes.node import NodeSession

        return NodeSession(folder, threads, package)
    return open_


def _node_missing() -> str | None:
    from svdq_edge.runtime.runtimes.node import node_missing

    return node_missing()


def _open_chromium(package: str) -> Callable[[Path, int | None], object]:
    def open_(folder: Path, threads: int | None):
        from svdq_edge.runtime.runtimes.node import NodeSession, chromium_path

        return NodeSession(folder, threads, package, chromium=chromium_path())
    return open_


def _chromium_missing() -> str | None:
    from svdq_edge.runtime.runtimes.node import chromium_missing

    return chromium_missing()


def runtimes() -> dict[str, Runtime]:
    """Every runtime svdq-edge knows, by name (built on call: no module-level state)."""
    ov_missing = _module_missing("openvino", "openvino")
    return {r.name: r for r in (
        Runtime("ort-cpu", "ONNX Runtime, CPU execution provider", frozenset({ENCODER, DECODER}),
                _ort_missing("cpu"), _open_ort("cpu"), default=True),
        Runtime("ort-cuda", "ONNX Runtime, CUDA execution provider", frozenset({ENCODER}),
                _ort_missing("cuda"), _open_ort("cuda"), default=True),
        Runtime("ort-node", "onnxruntime-node (npm, pinned in runtime/edge), CPU, in a Node.js child process",
                frozenset({ENCODER}), _node_missing, _open_node("onnxruntime-node")),
        Runtime("ort-web", "onnxruntime-web's WASM build (npm, pinned in runtime/edge; what a web page runs), in a "
                "Node.js child process", frozenset({ENCODER}), _node_missing, _open_node("onnxruntime-web")),
        Runtime("ort-web-jsep", "onnxruntime-web's WebGPU/JSEP bundle (what transformers.js loads in browsers), its "
                "WASM CPU kernels, in a Node.js child process", frozenset({ENCODER}), _node_missing,
                _open_node("onnxruntime-web/webgpu")),
        Runtime("ort-web-chromium", "onnxruntime-web's WASM build in a headless Chromium page (Debian's chromium; "
                "threads through cross-origin isolation)", frozenset({ENCODER}), _chromium_missing,
                _open_chromium("onnxruntime-web")),
        Runtime("ort-web-jsep-chromium", "onnxruntime-web's WebGPU/JSEP bundle (transformers.js's browser build) in a "
                "headless Chromium page, its WASM EP", frozenset({ENCODER}), _chromium_missing,
                _open_chromium("onnxruntime-web/webgpu")),
        Runtime("openvino", "OpenVINO CPU plugin, its default inference precision (bf16 where the CPU has it)",
                frozenset({ENCODER}), ov_missing, _open_openvino(None)),
        Runtime("openvino-f32", "OpenVINO CPU plugin, inference precision f32", frozenset({ENCODER}), ov_missing,
                _open_openvino("f32")),
        Runtime("genai", "onnxruntime-genai's Generator on each genai folder", frozenset({DECODER}),
                _module_missing("onnxruntime_genai", "genai"), default=True),
        Runtime("llamacpp", "llama.cpp (llama-cpp-python) on the GGUF source", frozenset({DECODER}),
                _module_missing("llama_cpp", "llamacpp"), default=True),
    )}


def default_runtimes(task: str) -> str:
    """Without --runtimes: ort-cpu, plus what can run here of ort-cuda (encoders), genai and llamacpp (decoders).
    OpenVINO runs only when named."""
    return ",".join(r.name for r in runtimes().values() if r.default and task in r.tasks and r.missing() is None)


def select_runtimes(text: str | None, task: str) -> tuple[list[Runtime], dict[str, str]]:
    """The runtimes of a comma-separated list (None: the defaults) that can serve `task` here, and {name: why
    skipped} for the rest. Unknown names, and a list of which none can run, are one-line errors."""
    known = runtimes()
    names = [n.strip() for n in (text or default_runtimes(task)).split(",") if n.strip()]
    unknown = [n for n in names if n not in known]
    if unknown or not names:
        raise RuntimeSelectionError(f"unknown runtime {unknown[0] if unknown else text!r}; choose from "
                                    f"{', '.join(known)}")
    chosen, skipped = [], {}
    for name in dict.fromkeys(names):
        r = known[name]
        why = f"serves {' and '.join(sorted(r.tasks))} models, not {task} models" if task not in r.tasks else \
            r.missing()
        if why is None:
            chosen.append(r)
        else:
            skipped[name] = why
    if not chosen:
        raise RuntimeSelectionError("no requested runtime can run here: " +
                                    "; ".join(f"{n}: {why}" for n, why in skipped.items()))
    return chosen, skipped
