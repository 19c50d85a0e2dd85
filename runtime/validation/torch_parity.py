"""PyTorch vs ONNX Runtime on the same quantized model: export it, run it under ORT CPU, compare the logits."""

from __future__ import annotations

import tempfile
from pathlib import Path

import numpy as np
import torch
from torch import Tensor, nn

from svdq_edge.config import QuantConfig
from svdq_edge.evaluation.data import TextDataset
from svdq_edge.evaluation.evaluate import accuracy
from svdq_edge.exporters.export import export_onnx
from svdq_edge.pipeline.compare import OrtCheck, OrtChecker
from svdq_edge.runtime.measure.evaluate import onnx_outputs
from svdq_edge.runtime.runtimes.session import make_session
from svdq_edge.sources.load import LoadedModel


def ort_checker(loaded: LoadedModel, data: TextDataset, work: Path, threads: int | None = 2,
                accuracy_level: int = 0) -> OrtChecker:
    """A checker for `compare_methods`: each quantized model is exported to a temporary folder under `work`
    (removed afterwards), run on `data` under the CPU execution provider, and compared with PyTorch's logits."""

    def check(label: str, model: nn.Module, config: QuantConfig, torch_logits: Tensor) -> OrtCheck:
        work.mkdir(parents=True, exist_ok=True)
        q = LoadedModel(model, loaded.tokenizer, loaded.task, loaded.source)
        with tempfile.TemporaryDirectory(prefix="ort-check-", dir=work) as tmp:
            folder, _, _ = export_onnx(q, Path(tmp) / "model", config.to_dict(), accuracy_level=accuracy_level)
            session = make_session(folder, "cpu", threads)
            logits = torch.from_numpy(np.asarray(onnx_outputs(session, loaded.tokenizer, data, progress=False,
                                                              desc=f"ort {label}")))
            del session
        same = float((logits.argmax(-1) == torch_logits.argmax(-1)).double().mean())
        return OrtCheck(logits, accuracy(logits, data.labels), same,
                        float((logits - torch_logits).abs().max()))

    return check
