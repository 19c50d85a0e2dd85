"""transformers.js (npm `@huggingface/transformers`, pinned in runtime/edge) running one of our folders the way its
users do: `pipeline(task, folder)` in Node (its onnxruntime-node backend), or in headless Chromium from a page
served on 127.0.0.1 (its browser bundle: onnxruntime-web's WebGPU/JSEP build, WASM kernels on the CPU here).

The folder must be in transformers.js's layout (`svdq-edge export --layout transformers.js`). Chromium comes from
the system (Debian's `chromium` package) and is driven by puppeteer-core.
"""

from __future__ import annotations

import json
import subprocess
import tempfile
from enum import Enum
from pathlib import Path

from svdq_edge.artifact.layout import ONNX_SUBFOLDER
from svdq_edge.errors import UserError
from svdq_edge.runtime.runtimes.node import (
    NodeRuntimeError,
    chromium_missing,
    chromium_path,
    install_js,
    node_missing,
)

TASKS = ("feature-extraction", "text-classification", "text-generation")


class Where(str, Enum):
    NODE = "node"
    CHROMIUM = "chromium"

    def __str__(self) -> str:
        return self.value


def missing(where: Where) -> str | None:
    """Why transformers.js cannot run `where` here; None when it can."""
    return chromium_missing() if where is Where.CHROMIUM else node_missing()


def run_transformers_js(folder: str | Path, task: str, inputs: list[str], where: Where | str = Where.NODE,
                        max_new_tokens: int = 32, chat: bool = False, threads: int | None = None,
                        timeout_s: float = 1800) -> dict:
    """Run `task` on `inputs` with transformers.js on `folder`; returns the result dict of runtime/edge/tjs_tasks.mjs
    (embeddings, labels, or prompt and generated token ids) plus the transformers.js version."""
    where = Where(where)
    folder = Path(folder).resolve()
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got {task!r}")
    if not (folder / ONNX_SUBFOLDER).is_dir():
        raise UserError(f"{folder}: not in transformers.js's layout (export it with --layout transformers.js)")
    why = missing(where)
    if why is not None:
        raise NodeRuntimeError(f"transformers.js in {where} cannot run: {why}")
    js = install_js()
    request = {"root": str(folder.parent), "model": folder.name, "task": task, "inputs": list(inputs),
               "max_new_tokens": max_new_tokens, "chat": chat, "threads": threads, "chromium": chromium_path()}
    script = js / ("tjs_node.mjs" if where is Where.NODE else "tjs_browser.mjs")
    with tempfile.TemporaryDirectory(prefix="svdq-edge-tjs-") as tmp:
        req, res = Path(tmp) / "request.json", Path(tmp) / "result.json"
        req.write_text(json.dumps(request))
        try:
            done = subprocess.run(["node", str(script), str(req), str(res)], capture_output=True, text=True,
                                  timeout=timeout_s)
        except subprocess.TimeoutExpired:
            raise NodeRuntimeError(f"transformers.js in {where}: no result within {timeout_s:.0f} s") from None
        if not res.is_file():
            last = (done.stderr.strip().splitlines() or [f"exit code {done.returncode}"])[-1]
            raise NodeRuntimeError(f"transformers.js in {where} exited: {last}")
        result = json.loads(res.read_text())
    if "error" in result:
        raise NodeRuntimeError(f"transformers.js in {where}: {result['error']}")
    return result
