"""Logging for the command lines (`svdq-edge`, the benchmarks): the only place logging is configured.

Other libraries log things that are not the user's business at WARNING: torch.onnx's "torchvision is not
installed. Skipping torchvision::nms" (one line per torchvision op, on every export) and onnxruntime's quantizer's
"Please consider to run pre-processing before quantization" (on every baseline build). They are dropped unless the
user asks for debug output (-vv).
"""

from __future__ import annotations

import logging

QUIET_LOGGERS = ("torch.onnx._internal.exporter._registration",)
QUIET_MESSAGES = ("Please consider to run pre-processing before quantization",
                  "Please consider pre-processing before quantization")


class _DropKnownNoise(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not any(str(record.msg).startswith(m) for m in QUIET_MESSAGES)


def configure(verbose: int = 0) -> None:
    """WARNING by default, INFO with -v, DEBUG (and the libraries' noise) with -vv."""
    level = logging.WARNING - 10 * min(verbose, 2)
    logging.basicConfig(level=level, format="%(levelname)s %(name)s: %(message)s")
    if verbose >= 2:
        return
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.ERROR)
    for handler in logging.getLogger().handlers:
        handler.addFilter(_DropKnownNoise())
