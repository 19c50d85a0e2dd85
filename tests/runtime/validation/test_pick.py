"""run's pick: each objective chooses the candidate its rule names, on hand-made points and on a tiny BERT built in
code through the CLI (the pick is recomputed from the written report and shipped whole to OUT/ship)."""

import json

import pytest
from click.testing import CliRunner

from svdq_edge.artifact.digest import folder_sha256
from svdq_edge.cli.app import main
from svdq_edge.runtime.validation.pick import Objective, Point, pick

POINTS = [
    Point("fp32", False, 1.0, 10.0, 0.0),
    Point("ort-int8", False, 0.26, 5.0, 0.030),
    Point("ort-rtn4-acc4", False, 0.18, 9.0, 0.040),
    Point("int8-auto", True, 0.20, 5.1, 0.008),  # balanced: the fastest at or under the best baseline's loss (0.030)
    Point("mixed-5.75", True, 0.17, 6.0, 0.018),
    Point("ours", True, 0.15, 9.5, 0.035),  # the smallest, over the bar
    Point("ours-fast", True, 0.15, 4.0, 0.050),  # the fastest, over the bar
    Point("mixed-7", True, 0.21, 5.5, 0.005),  # the least loss
]


@pytest.mark.parametrize("objective, max_size, max_loss, want", [
    (Objective.BALANCED, None, None, "int8-auto"),
    (Objective.SIZE, None, None, "ours"),  # ties at 0.15x: the lower loss
    (Objective.SPEED, None, None, "ours-fast"),
    (Objective.FIDELITY, None, None, "mixed-7"),
    (Objective.FIDELITY, 0.2, None, "int8-auto"),  # the cap leaves mixed-7 out
    (Objective.SPEED, None, 0.02, "int8-auto"),  # the fidelity floor leaves ours-fast and mixed-5.75... out
    (Objective.BALANCED, 0.18, None, "mixed-5.75"),
])
def test_each_objective_picks_what_its_rule_says(objective, max_size, max_loss, want):
    p = pick(POINTS, objective, max_size, max_loss)
    assert p.point.name == want, p.why
    assert p.point.ours and p.point not in p.runners_up.values()


def test_balanced_falls_back_to_the_least_loss_and_caps_can_leave_nothing():
    worse = [pt for pt in POINTS if not pt.ours] + [Point("ours", True, 0.15, 9.0, 0.2), Point("w3", True, 0.12, 9.0,
                                                                                               0.5)]
    p = pick(worse, Objective.BALANCED)
    assert p.point.name == "ours" and "least loss" in p.why
    none = pick(POINTS, Objective.SIZE, max_size=0.1)
    assert none.point is None and "0.1x" in none.why
    assert pick(POINTS[:3], Objective.BALANCED).point is None  # anchors are never picked


@pytest.mark.parametrize("objective", [o.value for o in Objective])
def test_run_picks_by_its_rule_and_ships_the_pick(tiny_bert_dir, tmp_path, objective):
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["run", str(tiny_bert_dir), "--limit", "6", "--runs", "3", "--shapes", "1x8",
                                  "--block-size", "32", "--baselines", "ort-int8", "--accuracy-levels", "4",
                                  "--objective", objective,
                                  "--max-size", "0.9", "-o", str(out)])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    fp32 = report["results"][0]
    rows = [Point(x["backend"]["name"], x["backend"]["name"] not in ("fp32", "ort-int8"),
                  x["size_mb"] / fp32["size_mb"], x["latency"][0]["p50_ms"], x["kl"] or 0.0)  # a classifier: KL
            for x in report["results"]]
    assert all(x["kl"] is not None for x in report["results"][1:])
    assert {p.name for p in rows} == {"fp32", "ort-int8", "int8-auto", "mixed-7", "mixed-5.75", "ours-acc4"}
    want = pick(rows, Objective(objective), 0.9)
    assert report["meta"]["pick"]["pick"]["name"] == want.point.name
    printed = [ln for ln in r.output.splitlines() if ln.startswith(("pick:", "svdq-edge run:"))]
    assert printed[0].startswith(f"pick: {want.point.name} ->")  # the answer comes before the table
    shipped = folder_sha256(out / "ship")  # every file the report says it measured is the file shipped
    assert shipped == report["files"][want.point.name] and "model.onnx" in shipped
    assert set(report["files"]) == {p.name for p in rows}
    assert (out / "report.md").read_text().split("\n")[2].startswith(f"pick: {want.point.name}")


def test_quantization_options_make_the_one_candidate(tiny_bert_dir, tmp_path):
    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["run", str(tiny_bert_dir), "--limit", "4", "--runs", "1", "--shapes", "1x8",
                                  "--baselines", "ort-int8", "--accuracy-levels", "0", "--block-size", "32",
                                  "--keep", "0.05", "--max-size", "0.9", "-o", str(out)])
    assert r.exit_code == 0, r.output
    names = {x["backend"]["name"] for x in json.loads((out / "report.json").read_text())["results"]}
    assert names == {"fp32", "ort-int8", "ours"}


def test_run_exports_the_config_as_resolved(tiny_bert_dir, tmp_path):
    """--bits auto: the widths the budget chose are in the measured model.onnx and export.json, as in
    quant_config.json (they once read `layer_bits: {}`, the config as requested)."""
    import onnx

    out = tmp_path / "r"
    r = CliRunner().invoke(main, ["run", str(tiny_bert_dir), "--limit", "4", "--runs", "1", "--shapes", "1x8",
                                  "--baselines", "ort-int8", "--accuracy-levels", "0", "--block-size", "32",
                                  "--bits", "auto", "--bits-budget", "6", "--max-size", "0.9", "-o", str(out)])
    assert r.exit_code == 0, r.output
    saved = json.loads((out / "backends" / "ours-quantized" / "quant_config.json").read_text())["config"]
    assert saved["layer_bits"] and set(dict(saved["layer_bits"]).values()) == {4, 8}
    exported = json.loads((out / "backends" / "ours" / "export.json").read_text())["quant_config"]
    meta = {p.key: p.value for p in onnx.load(str(out / "backends" / "ours" / "model.onnx"),
                                              load_external_data=False).metadata_props}
    assert exported == saved == json.loads(meta["svdq_edge.quant_config"])


def test_decoder_points_and_the_balanced_pick():
    """Hand-made decoder results: loss is the relative perplexity increase over FP32, latency the decode ms/token at
    128 cached tokens; balanced takes the fastest candidate no worse than the best anchor (llama.cpp here)."""
    from svdq_edge.runtime.validation.pick import Objective, decoder_points, pick

    def row(size, ppl, ms):
        return {"size_mb": size, "ppl": {"ppl": ppl},
                "latency": [{"phase": "decode", "context": 128, "p50_ms": ms},
                            {"phase": "decode", "context": 1024, "p50_ms": 2 * ms}]}

    bench = {"configs": {}, "builds": {}, "fp32": row(500, 20.0, 10.0), "ort-rtn4": row(120, 21.0, 6.0),
             "llamacpp": row(100, 20.06, 5.0), "gguf": row(110, 20.0, 7.0), "gguf-acc4": row(105, 20.05, 4.5)}
    points = decoder_points(bench, ["gguf", "gguf-acc4"])
    by = {p.name: p for p in points}
    assert by["gguf-acc4"].loss == pytest.approx(0.0025) and by["gguf-acc4"].latency_ms == 4.5
    assert by["gguf"].size_ratio == pytest.approx(0.22) and not by["llamacpp"].ours
    assert pick(points, Objective.BALANCED, 0.25).point.name == "gguf-acc4"  # 0.25% <= llama.cpp's 0.30%
    assert pick(points, Objective.FIDELITY, 0.25).point.name == "gguf"
    assert pick(points, Objective.BALANCED, 0.25, max_loss=0.001).point.name == "gguf"
