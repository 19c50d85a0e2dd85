"""Choosing runtimes by name: unknown names and nothing runnable are one-line errors; the rest is skipped with the
reason, never silently."""

import pytest

from svdq_edge.runtime.runtimes import DECODER, ENCODER, RuntimeSelectionError, runtimes, select_runtimes


def test_every_runtime_serves_a_task_and_encoder_runtimes_open_folders():
    for r in runtimes().values():
        assert r.tasks <= {ENCODER, DECODER} and r.tasks
        assert (r.open is not None) == (ENCODER in r.tasks)


def test_defaults_are_ort_cpu_first_and_only_what_can_run(monkeypatch):
    import importlib.util

    chosen, skipped = select_runtimes(None, ENCODER)
    assert chosen[0].name == "ort-cpu" and not skipped and "openvino" not in [r.name for r in chosen]
    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "llama_cpp" else real(name, *a))
    chosen, skipped = select_runtimes(None, DECODER)
    names = [r.name for r in chosen]
    assert names[0] == "ort-cpu" and "llamacpp" not in names and not skipped  # a missing default is no noise


def test_wrong_task_and_missing_runtime_are_skipped_with_the_reason(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "openvino" else real(name, *a))
    chosen, skipped = select_runtimes("ort-cpu,openvino,genai,ort-cpu", ENCODER)
    assert [r.name for r in chosen] == ["ort-cpu"]  # named twice, run once
    assert "openvino is not installed" in skipped["openvino"] and "svdq-edge[openvino]" in skipped["openvino"]
    assert skipped["genai"] == "serves decoder models, not encoder models"


def test_unknown_or_nothing_runnable_is_one_line():
    with pytest.raises(RuntimeSelectionError, match="unknown runtime 'tensorrt'; choose from ort-cpu"):
        select_runtimes("ort-cpu,tensorrt", ENCODER)
    with pytest.raises(RuntimeSelectionError, match="no requested runtime can run here: genai: serves decoder"):
        select_runtimes("genai", ENCODER)
    with pytest.raises(RuntimeSelectionError, match="unknown runtime"):
        select_runtimes(" , ", ENCODER)
