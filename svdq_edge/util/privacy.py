"""Nothing leaves the machine unless the user asks: the telemetry of the runtimes we drive is off before they start.

- ONNX Runtime >= 1.29 uploads usage events from Linux and macOS too (1DS, `mobile.events.data.microsoft.com`, a DNS
  lookup at the first session even offline); `ORT_DISABLE_TELEMETRY=1` set before its first session turns it off
  entirely, in this process and in the children that inherit it (Ray workers, onnxruntime-node).
- OpenVINO sends an event on `import openvino` unless its consent file says no; with the `openvino_telemetry`
  package unimportable, OpenVINO falls back to its own no-op stub.
A user who sets ORT_DISABLE_TELEMETRY themselves keeps their value.
"""

from __future__ import annotations

import os
import sys


def no_telemetry() -> None:
    os.environ.setdefault("ORT_DISABLE_TELEMETRY", "1")
    if "openvino" not in sys.modules:
        sys.modules.setdefault("openvino_telemetry", None)  # None in sys.modules: `import` raises ImportError
