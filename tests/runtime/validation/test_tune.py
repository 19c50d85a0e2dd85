"""`svdq-edge tune` end to end on a tiny BERT built in code (with the embedded MiniLM's tokenizer)."""

import json

import pytest
import torch
from click.testing import CliRunner

from svdq_edge.cli.app import main
from svdq_edge.runtime.validation.tune import Candidate, choose, pareto


def test_pareto_keeps_exactly_the_non_dominated_points():
    pts = [(1.0, 1.0, 1.0), (0.5, 2.0, 1.0), (1.0, 1.0, 2.0), (0.5, 2.0, 1.0), (2.0, 2.0, 2.0)]
    assert pareto(pts) == [True, True, False, True, False]  # ties dominate nobody


def test_choose_takes_the_least_loss_within_the_size_limit():
    rows = [{"label": "fp32", "ours": False, "size_ratio": 1.0, "loss": 0.0},
            {"label": "a", "ours": True, "size_ratio": 0.3, "loss": 0.01},
            {"label": "b", "ours": True, "size_ratio": 0.2, "loss": 0.02},
            {"label": "c", "ours": True, "size_ratio": 0.15, "loss": 0.05}]
    assert choose(rows, 0.25)["label"] == "b"
    assert choose(rows, 0.1) is None


def test_candidate_key_follows_the_settings_not_the_label():
    from svdq_edge.config import QuantConfig

    assert Candidate("x", QuantConfig()).key == Candidate("y", QuantConfig()).key
    assert Candidate("x", QuantConfig()).key != Candidate("x", QuantConfig(), accuracy_level=0).key
    assert Candidate("x", QuantConfig()).key != Candidate("x", QuantConfig(bits_budget=6.0)).key


@pytest.mark.slow
def test_tune_writes_the_frontier_exports_the_pick_and_resumes(tiny_encoder_dir, tmp_path, monkeypatch):
    out = tmp_path / "tune"
    args = ["tune", str(tiny_encoder_dir), "-o", str(out), "--runs", "2", "--max-size", "0.5"]
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output
    report = json.loads((out / "report.json").read_text())
    rows = report["rows"]
    labels = [r["label"] for r in rows]
    assert labels[:2] == ["fp32", "ort-int8"] and "int8" in labels and "mixed-6" in labels
    points = [(r["size_ratio"], r["latency_ms"]["1x128"], r["loss"]) for r in rows]
    assert [r["frontier"] for r in rows] == pareto(points)
    chosen = report["chosen"]
    assert chosen["ours"] and chosen["size_ratio"] <= 0.5
    assert chosen["loss"] == min(r["loss"] for r in rows if r["ours"] and r["size_ratio"] <= 0.5)
    chosen_dir = out / chosen["path"]  # relative to the report folder (an absolute path stays absolute)
    assert (out / "best" / "model.onnx").read_bytes() == (chosen_dir / "model.onnx").read_bytes()
    assert (out / "report.md").is_file() and (out / "frontier.png").stat().st_size > 0
    assert f"picked {chosen['label']}" in res.output
    # A second tune reuses every finished candidate: nothing is quantized again.
    import svdq_edge.pipeline.apply

    def refuse(*a, **k):
        raise AssertionError("a cached candidate was quantized again")

    monkeypatch.setattr(svdq_edge.pipeline.apply, "quantize_model", refuse)
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 0, res.output


@pytest.mark.slow
def test_tune_refuses_a_size_no_candidate_reaches(tiny_encoder_dir, tmp_path):
    res = CliRunner().invoke(main, ["tune", str(tiny_encoder_dir), "-o", str(tmp_path / "t"), "--runs", "1",
                                    "--max-size", "0.01"])
    assert res.exit_code == 1 and "no candidate within --max-size 0.01" in res.output


def test_two_models_never_share_a_cache():
    from svdq_edge.runtime.validation.tune import model_key
    from tests.conftest import tiny_bert

    a, b = tiny_bert(), tiny_bert()
    assert model_key(a) == model_key(b)
    with torch.no_grad():
        b.bert.encoder.layer[1].output.dense.weight[40, 100] += 0.01  # another fine-tune of the same architecture
    assert model_key(a) != model_key(b)
