"""OpenVINO (extra `openvino`) as a runtime of our ONNX folders, in ONNX Runtime's calling shape.

Two loading routes: `Core.read_model` on the .onnx file, and `openvino.convert_model` (the model conversion API).
OpenVINO 2026.4's `read_model` rejects our `GatherBlockQuantized` embedding (its GatherCompressed transformation
wants a constant it does not find), while `convert_model` reads the same file; so read_model is tried first and
convert_model second, and the session says which route it took.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from svdq_edge.artifact.layout import model_file
from svdq_edge.errors import UserError, first_line

log = logging.getLogger(__name__)


class OpenVinoLoadError(UserError, RuntimeError):
    """Neither loading route of OpenVINO accepts the model; the message names both failures."""


@dataclass(frozen=True)
class _Input:
    name: str


class OpenVinoSession:
    """A compiled OpenVINO CPU model with `get_inputs()` and `run(None, feed)` like an ONNX Runtime session.

    `precision`: OpenVINO's INFERENCE_PRECISION_HINT (None keeps the plugin's default: bf16 on CPUs with bf16
    support, which is what a user of OpenVINO gets)."""

    def __init__(self, folder: Path, threads: int | None = None, precision: str | None = None):
        import openvino as ov

        path = model_file(folder)
        core = ov.Core()
        config = {"PERFORMANCE_HINT": "LATENCY"}
        if threads is not None:
            config["INFERENCE_NUM_THREADS"] = threads
        if precision is not None:
            config["INFERENCE_PRECISION_HINT"] = precision
        errors = []
        for route, load in (("read_model", core.read_model), ("convert_model", ov.convert_model)):
            try:
                self.compiled = core.compile_model(load(str(path)), "CPU", config)
                self.route = route
                break
            except Exception as e:  # OpenVINO raises plain RuntimeError/Exception subclasses per frontend
                errors.append(f"{route}: {first_line(e)}")
                log.debug("openvino %s failed on %s: %s", route, path, e)
        else:
            raise OpenVinoLoadError(f"OpenVINO cannot load {path}: " + "; ".join(errors))
        self.precision = self.compiled.get_property("INFERENCE_PRECISION_HINT").get_type_name()  # "bf16", "f32"
        self._request = self.compiled.create_infer_request()
        self._inputs = [_Input(p.get_any_name()) for p in self.compiled.inputs]

    @property
    def note(self) -> str:
        return f"{self.route}, {self.precision}"

    def get_inputs(self) -> list[_Input]:
        return list(self._inputs)

    def run(self, output_names, feed: dict[str, np.ndarray]) -> list[np.ndarray]:
        """Every output (`output_names` must be None, as the evaluation passes it), copied: the request reuses its
        output buffers on the next call."""
        if output_names is not None:
            raise ValueError("OpenVinoSession.run returns every output; pass None")
        result = self._request.infer(feed)
        return [np.array(result[o]) for o in self.compiled.outputs]
