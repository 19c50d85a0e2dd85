import json
from pathlib import Path

import pytest
import torch
from click.testing import CliRunner
from safetensors.torch import load_file, save_file

from svdq_edge.cli.app import main


def run(*args):
    return CliRunner().invoke(main, [str(a) for a in args])


def one_line_error(result, *needles):
    assert result.exit_code != 0
    lines = [ln for ln in result.output.replace("\r", "\n").splitlines() if ln.strip()]
    errors = [ln for ln in lines if ln.startswith("Error:")]
    # Exactly one error line, and it is the last thing printed (progress bars may precede it on stderr).
    assert len(errors) == 1 and lines[-1] == errors[0], result.output
    out = errors[0]
    for n in needles:
        assert n in out, out


def test_quantize_inspect_round_trip(tiny_bert_dir, tmp_path):
    out = tmp_path / "q"
    r = run("quantize", tiny_bert_dir, "-o", out, "--bits", 3, "--block-size", 32, "--method", "svd", "--rank", 4)
    assert r.exit_code == 0, r.output
    assert "quantized 12 linear layers and the token embedding" in r.output
    meta = json.loads((out / "quant_config.json").read_text())
    assert meta["config"]["bits"] == 3 and meta["config"]["rank"] == 4
    r = run("inspect", out)
    assert r.exit_code == 0 and "bert.encoder.layer.1.output.dense" in r.output and "13 layers" in r.output
    # how it was made, in words: saliency, structure and budget, where the statistics came from
    assert "method: svd: |W_r|" in r.output and "structure: channel, 1% of each layer's weights" in r.output
    assert "data-free: no calibration inputs, no H" in r.output and "| kept |" in r.output


def test_mixed_precision_is_saved_and_inspected(tiny_bert_dir, tmp_path):
    out = tmp_path / "q"
    r = run("quantize", tiny_bert_dir, "-o", out, "--bits", "auto", "--bits-budget", 6, "--block-size", 32,
            "--kernel", "int8")
    assert r.exit_code == 0, r.output
    config = json.loads((out / "quant_config.json").read_text())["config"]
    widths = config["layer_bits"]
    assert config["bits_budget"] == 6.0 and len(widths) == 12 and set(widths.values()) == {4, 8}
    r = run("inspect", out)
    assert r.exit_code == 0
    n8 = sum(1 for b in widths.values() if b == 8)
    assert f"mixed precision (budget 6.0): {12 - n8} layers at 4 bits, {n8} layers at 8 bits" in r.output


def test_int8_scale_auto_is_saved_and_inspected(tiny_bert_dir, tmp_path):
    out = tmp_path / "q"
    r = run("quantize", tiny_bert_dir, "-o", out, "--bits", 8, "--kernel", "int8", "--keep", 0, "--method", "rtn",
            "--int8-scale", "auto", "--embedding-bits", "none")
    assert r.exit_code == 0, r.output
    config = json.loads((out / "quant_config.json").read_text())["config"]
    scales = config["layer_int8_scale"]
    assert config["int8_scale"] == "auto" and len(scales) == 12 and set(scales.values()) <= {"tensor", "column"}
    r = run("inspect", out)
    assert r.exit_code == 0
    n = sum(1 for v in scales.values() if v == "tensor")
    assert f"int8 weight scales: one per tensor on {n} of 12 int8 layers" in r.output
    name = next(iter(scales))
    assert f"| 8 ({scales[name]})" in r.output
    one_line_error(run("quantize", tiny_bert_dir, "-o", tmp_path / "x", "--int8-scale", "tensor"), "int8_scale")


@pytest.mark.parametrize("args, needles", [
    (["--bits", 5], ["bits", "5"]),
    (["--block-size", 100], ["block_size", "100"]),
    (["--keep", 0.7], ["keep", "0.7"]),
    (["--method", "bogus"], ["bogus"]),
    (["--bits", "auto"], ["--bits auto needs --bits-budget"]),
    (["--bits-budget", 3.5], ["bits_budget", "3.5"]),
    (["--bits-budget", 4.3, "--block-size", 32], ["bits budget 4.3 is below"]),
])
def test_bad_options_give_one_line_and_write_nothing(tiny_bert_dir, tmp_path, args, needles):
    outs = tmp_path / "outs"
    outs.mkdir()
    one_line_error(run("quantize", tiny_bert_dir, "-o", outs / "q", *args), *needles)
    assert list(outs.iterdir()) == []


def test_missing_model(tmp_path):
    one_line_error(run("quantize", tmp_path / "nope", "-o", tmp_path / "q"), "nope")
    (tmp_path / "empty").mkdir()
    one_line_error(run("quantize", tmp_path / "empty", "-o", tmp_path / "q"), "config.json")
    assert not (tmp_path / "q").exists()


def test_unreadable_weights(tiny_bert_dir, tmp_path):
    (tiny_bert_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    one_line_error(run("quantize", tiny_bert_dir, "-o", tmp_path / "q", "--block-size", 32),
                   "cannot load model weights")
    assert not (tmp_path / "q").exists()


def test_a_table_the_block_cannot_hold_fails_before_any_weight_is_read(tiny_bert_dir, tmp_path):
    """The token table is quantized last; a block size not dividing its width once failed only after every linear
    (minutes on a decoder). It is checked first now, before the weights are even read."""
    (tiny_bert_dir / "model.safetensors").write_bytes(b"not a safetensors file")
    one_line_error(run("quantize", tiny_bert_dir, "-o", tmp_path / "q"), "table width 64", "block_size 128")
    assert not (tmp_path / "q").exists()


def test_existing_output_needs_overwrite(tiny_bert_dir, tmp_path):
    out = tmp_path / "q"
    out.mkdir()
    (out / "keep.txt").write_text("mine")
    one_line_error(run("quantize", tiny_bert_dir, "-o", out), "exists", "--overwrite")
    assert (out / "keep.txt").read_text() == "mine"
    # a folder of the user's own files is never replaced, even with --overwrite
    one_line_error(run("quantize", tiny_bert_dir, "-o", out, "--overwrite"), "not an svdq-edge output")
    assert (out / "keep.txt").read_text() == "mine"
    (out / "keep.txt").unlink()  # an empty folder may be used
    for _ in range(2):  # and our own output replaced
        r = run("quantize", tiny_bert_dir, "-o", out, "--overwrite", "--block-size", 32)
        assert r.exit_code == 0, r.output
        assert (out / "quant_config.json").exists()


def test_the_input_and_special_files_are_never_replaced(tiny_bert_dir, tmp_path):
    q = tmp_path / "q"
    assert run("quantize", tiny_bert_dir, "-o", q, "--block-size", 32).exit_code == 0
    before = sorted(p.name for p in q.iterdir())
    one_line_error(run("export", q, "-o", q, "--overwrite"), "the input")
    one_line_error(run("quantize", tiny_bert_dir, "-o", tiny_bert_dir, "--overwrite"), "the input")
    assert sorted(p.name for p in q.iterdir()) == before and (tiny_bert_dir / "config.json").is_file()
    one_line_error(run("export", q, "-o", "/dev/null", "--overwrite"), "not a folder")
    assert Path("/dev/null").is_char_device()


def test_nan_weights_name_the_layer_and_write_nothing(tiny_bert_dir, tmp_path):
    f = tiny_bert_dir / "model.safetensors"
    state = load_file(str(f))
    key = "bert.encoder.layer.1.attention.self.key.weight"
    state[key][0, 0] = float("nan")
    save_file(state, str(f), metadata={"format": "pt"})
    outs = tmp_path / "outs"
    outs.mkdir()
    one_line_error(run("quantize", tiny_bert_dir, "-o", outs / "q", "--block-size", 32),
                   "bert.encoder.layer.1.attention.self.key", "NaN")
    assert list(outs.iterdir()) == []  # no temp folder left behind either


def test_eval_rejects_a_bad_data_file(tiny_bert_dir, tmp_path):
    bad = tmp_path / "bad.tsv"
    bad.write_text("a\tb\tc\n1\t2\t3\n")
    one_line_error(run("eval", tiny_bert_dir, "--data", bad), "unrecognised header")
    one_line_error(run("eval", tiny_bert_dir, "--data", tmp_path / "none.tsv"), "no such data file")


def test_version_and_help():
    assert run("--version").exit_code == 0
    r = run("--help")
    assert r.exit_code == 0 and "quantize" in r.output and "compare" in r.output


def test_inputs_are_not_mutated_by_quantize(tiny_bert_dir, tmp_path):
    before = load_file(str(tiny_bert_dir / "model.safetensors"))
    assert run("quantize", tiny_bert_dir, "-o", tmp_path / "q", "--block-size", 32).exit_code == 0
    after = load_file(str(tiny_bert_dir / "model.safetensors"))
    assert all(torch.equal(before[k], after[k]) for k in before)


def test_calibrated_method_without_calibration_data_is_a_one_line_error(tiny_bert_dir, tmp_path):
    r = run("quantize", tiny_bert_dir, "-o", tmp_path / "q", "--method", "awq")
    one_line_error(r, "awq", "--calib-data")
    assert not (tmp_path / "q").exists()
    r = run("quantize", tiny_bert_dir, "-o", tmp_path / "q", "--method", "gptq", "--calib-data", tmp_path / "nope.tsv")
    one_line_error(r, "nope.tsv")


def test_calibrated_quantize_records_its_calibration(tiny_bert_dir, tmp_path):
    tsv = tmp_path / "train.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"a fine film number {i}\t{i % 2}\n" for i in range(20)))
    r = run("quantize", tiny_bert_dir, "-o", tmp_path / "q", "--method", "awq", "--calib-data", tsv,
            "--calib-samples", 8, "--block-size", 32, "--seed", 3)
    assert r.exit_code == 0, r.output
    meta = json.loads((tmp_path / "q" / "quant_config.json").read_text())
    c = meta["config"]
    assert (c["method"], c["calib_data"], c["calib_samples"], c["seed"]) == ("awq", str(tsv), 8, 3)
    folds = meta["report"]["awq_folds"]
    assert [f["producer"] for f in folds] == [f"bert.encoder.layer.{i}.attention.self.value" for i in range(2)]
    r = run("inspect", tmp_path / "q")
    assert f"H = X^T X from the calibration file {tsv}: 8 samples of up to 128 tokens" in r.output


@pytest.mark.integration
def test_compare_refuses_to_calibrate_on_the_evaluation_file(tmp_path):
    from tests.conftest import shared_path

    model = shared_path("models", "minilm-l6-sst2")
    dev = shared_path("data", "glue", "sst2", "dev.tsv")
    r = run("compare", model, "--data", dev, "--methods", "rtn,gptq", "--calib-data", dev, "--limit", 8,
            "--baselines", "none", "-o", tmp_path / "c")
    one_line_error(r, "calibration and evaluation data must differ")


@pytest.mark.integration
def test_compare_lists_win_over_a_recipe(tmp_path):
    """compare's --methods, --bits-list, --keep-list and --calib-seeds label its tables: a recipe must not replace
    them (it once did, silently: the tables named settings that never ran)."""
    from tests.conftest import shared_path

    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"config": {"method": "magnitude", "bits": 8, "keep": 0.05, "seed": 3,
                                             "block_size": 32}}))
    dev = shared_path("data", "glue", "sst2", "dev.tsv")
    r = run("compare", shared_path("models", "minilm-l6-sst2"), "--data", dev,
            "--recipe", recipe, "--methods", "rtn,svd", "--bits-list", 3, "--keep-list", 0.02, "--limit", 8,
            "--baselines", "none", "-o", tmp_path / "c")
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "c" / "pytorch.json").read_text())["W3 keep 0.02"]
    configs = {row["method"]: row["config"] for row in rows if row["config"] is not None}
    assert set(configs) == {"rtn", "svd"}
    for method, c in configs.items():
        assert (c["method"], c["bits"], c["keep"], c["seed"]) == (method, 3, 0.02, 3)  # no --calib-seeds: recipe's
        assert c["block_size"] == 32  # what the lists do not set still comes from the recipe


@pytest.mark.parametrize("args", [
    ["run", "--runs", "0"], ["run", "--limit", "-5"], ["run", "--threads", "0"], ["compare", "--runs", "0"],
    ["compare", "--limit", "0"], ["compare", "--batch-size", "0"], ["eval", "--data", "x.tsv", "--limit", "-5"],
    ["generate", "m", "hi", "--threads", "0"],
])
def test_counts_below_one_are_refused_before_any_work(args):
    res = CliRunner().invoke(main, args)
    assert res.exit_code == 2 and ("x>=1" in res.output or "1<=x" in res.output)


def test_help_does_not_import_torch_or_transformers():
    """`svdq-edge --help` must answer at once: torch and transformers take seconds to import."""
    import subprocess
    import sys

    code = "import sys, svdq_edge.cli.app; print(sorted(m for m in ('torch', 'transformers') if m in sys.modules))"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"


def _without_timings(d):
    if isinstance(d, dict):
        return {k: _without_timings(v) for k, v in d.items() if k != "seconds"}
    return [_without_timings(v) for v in d] if isinstance(d, list) else d


def test_same_inputs_give_byte_identical_outputs(tiny_bert_dir, tmp_path):
    """quantize and export twice: the weights and graphs are the same bytes; the JSON reports differ only in their
    wall-clock timings."""
    runner = CliRunner()
    for run in ("a", "b"):
        res = runner.invoke(main, ["quantize", str(tiny_bert_dir), "-o", str(tmp_path / run / "q"), "--block-size",
                                   "16"])
        assert res.exit_code == 0, res.output
        res = runner.invoke(main, ["export", str(tmp_path / run / "q"), "-o", str(tmp_path / run / "onnx")])
        assert res.exit_code == 0, res.output
    for rel in ("q/model.safetensors", "onnx/model.onnx"):
        assert (tmp_path / "a" / rel).read_bytes() == (tmp_path / "b" / rel).read_bytes(), rel
    for rel in ("q/quant_config.json", "onnx/export.json"):
        a, b = (json.loads((tmp_path / run / rel).read_text()) for run in ("a", "b"))
        assert _without_timings(a) == _without_timings(b), rel


def test_run_on_a_causal_lm_needs_text_before_building_anything(tmp_path):
    from tests.conftest import tiny_llama

    tiny_llama().save_pretrained(tmp_path / "lm")
    res = CliRunner().invoke(main, ["run", str(tmp_path / "lm"), "-o", str(tmp_path / "out")])
    assert res.exit_code == 2 and "give --data FILE" in res.output
    assert not (tmp_path / "out").exists()
    res = CliRunner().invoke(main, ["run", str(tmp_path / "lm"), "--data", str(tmp_path / "no.txt"), "-o",
                                    str(tmp_path / "out")])
    one_line_error(res, "no.txt: no such text file")
    assert not (tmp_path / "out").exists()


def test_export_prints_no_library_noise(tiny_bert_dir, tmp_path):
    """torch.onnx's torchvision lines and ORT's pre-processing hint are not the user's business (see logs.py)."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "svdq_edge.cli.app", "export", str(tiny_bert_dir), "--fp32", "-o",
                          str(tmp_path / "onnx")], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    assert "torchvision" not in out.stderr and "torch_dtype" not in out.stderr, out.stderr


def test_artifacts_record_a_portable_source(tiny_bert_dir, tmp_path):
    """No absolute path of the building machine in quant_config.json or the ONNX metadata: a local source is
    stored relative to the output folder."""
    import onnx

    out = tmp_path / "outs" / "q"
    assert run("quantize", tiny_bert_dir, "-o", out, "--block-size", 32).exit_code == 0
    source = json.loads((out / "quant_config.json").read_text())["source"]
    assert source == "../../tiny-bert" and (out / source).resolve() == tiny_bert_dir.resolve()
    assert run("export", out, "-o", tmp_path / "onnx").exit_code == 0
    props = {p.key: p.value for p in onnx.load(str(tmp_path / "onnx" / "model.onnx")).metadata_props}
    assert props["svdq_edge.source"] == "../tiny-bert"  # relative to the ONNX folder in its turn


def test_a_bug_is_not_dressed_as_a_user_error(tiny_bert_dir, tmp_path, monkeypatch):
    """A user error is one line; an unexpected exception (here a RuntimeError deep in quantize) names its type and
    points to -v, and -v shows the traceback."""
    import svdq_edge.pipeline.stream

    def broken(*args, **kwargs):
        raise RuntimeError("cholesky failed\nsecond line")

    monkeypatch.setattr(svdq_edge.pipeline.stream, "quantize_any", broken)
    r = run("quantize", tiny_bert_dir, "-o", tmp_path / "q")
    one_line_error(r, "RuntimeError: cholesky failed", "run with -v for the traceback")
    r = CliRunner().invoke(main, ["-v", "quantize", str(tiny_bert_dir), "-o", str(tmp_path / "q2")])
    assert r.exit_code != 0 and isinstance(r.exception, RuntimeError) and "Error:" not in r.output
    assert not (tmp_path / "q").exists() and not (tmp_path / "q2").exists()


@pytest.mark.integration
def test_compare_writes_its_folder_whole_or_not_at_all(tmp_path, monkeypatch):
    """run/compare refuse an existing report folder without --overwrite, and a failure half-way leaves the old
    folder as it was, with no staging folder or lock beside it."""
    from tests.conftest import shared_path

    args = ["compare", shared_path("models", "minilm-l6-sst2"), "--data", shared_path("data", "glue", "sst2",
            "dev.tsv"), "--methods", "rtn", "--bits-list", 4, "--limit", 8, "--baselines", "none", "-o",
            tmp_path / "c"]
    assert run(*args).exit_code == 0
    before = (tmp_path / "c" / "pytorch.json").read_bytes()
    one_line_error(run(*args), "output folder exists (use --overwrite)")
    import svdq_edge.pipeline.compare

    def broken(*a, **k):
        raise OSError("disk full")

    monkeypatch.setattr(svdq_edge.pipeline.compare, "compare_methods", broken)
    one_line_error(run(*args, "--overwrite"), "disk full")
    assert (tmp_path / "c" / "pytorch.json").read_bytes() == before
    assert [p.name for p in tmp_path.iterdir()] == ["c"]


def test_lowrank_never_labels_a_method_that_did_not_run(tiny_bert_dir, tmp_path):
    """The lowrank structure takes the SVD branch and never asks a ranking method for scores: naming one is
    refused, and the default method is recorded as svd, what ran."""
    r = run("quantize", tiny_bert_dir, "-o", tmp_path / "m", "--structure", "lowrank", "--method", "magnitude")
    one_line_error(r, "--structure lowrank", "--method magnitude would rank nothing")
    assert not (tmp_path / "m").exists()
    r = run("quantize", tiny_bert_dir, "-o", tmp_path / "q", "--structure", "lowrank", "--block-size", 32)
    assert r.exit_code == 0, r.output
    config = json.loads((tmp_path / "q" / "quant_config.json").read_text())["config"]
    assert (config["structure"], config["method"]) == ("lowrank", "svd")


@pytest.mark.integration
def test_compare_keeps_what_a_recipe_sets_when_no_list_names_it(tmp_path):
    """Without --keep-list / --keep, the recipe's keep is the one that runs and labels the table (the --keep default
    once replaced it silently: a SmolLM2 recipe with 4% ran at 1%)."""
    from tests.conftest import shared_path

    recipe = tmp_path / "r.json"
    recipe.write_text(json.dumps({"config": {"method": "magnitude", "bits": 8, "keep": 0.05, "seed": 3,
                                             "block_size": 32}}))
    r = run("compare", shared_path("models", "minilm-l6-sst2"), "--data", shared_path("data", "glue", "sst2",
            "dev.tsv"), "--recipe", recipe, "--methods", "rtn,svd", "--bits-list", 3, "--limit", 8,
            "--baselines", "none", "-o", tmp_path / "c")
    assert r.exit_code == 0, r.output
    rows = json.loads((tmp_path / "c" / "pytorch.json").read_text())["W3 keep 0.05"]
    assert {(row["config"]["keep"], row["config"]["seed"]) for row in rows if row["config"]} == {(0.05, 3)}


def test_old_option_spellings_work_for_one_release_with_a_note(tiny_bert_dir, tmp_path):
    """`--out` (now -o/--output) on run/compare/tune and compare's `--backends` (now --baselines, as in run)."""
    r = run("run", tiny_bert_dir, "--bits", "4", "--block-size", 32, "--limit", 2, "--runs", 1, "--shapes", "1x8",
            "--baselines", "ort-int8", "--accuracy-levels", 0, "--out", tmp_path / "r")
    assert r.exit_code == 0, r.output
    assert "note: --out is now -o/--output" in r.output and (tmp_path / "r" / "report.json").is_file()
    one_line_error(run("run", tiny_bert_dir, "--out", tmp_path / "a", "-o", tmp_path / "b"), "old spelling")
    assert not (tmp_path / "a").exists() and not (tmp_path / "b").exists()


def test_inspect_reads_onnx_folders_too(tiny_bert_dir, tmp_path):
    assert run("quantize", tiny_bert_dir, "-o", tmp_path / "q", "--block-size", 32).exit_code == 0
    assert run("export", tmp_path / "q", "-o", tmp_path / "onnx").exit_code == 0
    r = run("inspect", tmp_path / "onnx")
    assert r.exit_code == 0, r.output
    assert "ONNX IR 10" in r.output and "MatMulNBits x" in r.output and "bert.encoder.layer.0" in r.output
    one_line_error(run("inspect", tmp_path), "neither a quantized folder")


def test_eval_runs_an_onnx_folder_under_onnx_runtime(tiny_bert_dir, tmp_path):
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"a b c {i}\t{i % 2}\n" for i in range(10)))
    assert run("quantize", tiny_bert_dir, "-o", tmp_path / "q", "--block-size", 32).exit_code == 0
    assert run("export", tmp_path / "q", "-o", tmp_path / "onnx").exit_code == 0
    torch_r, onnx_r = run("eval", tmp_path / "q", "--data", tsv), run("eval", tmp_path / "onnx", "--data", tsv)
    assert onnx_r.exit_code == 0, onnx_r.output
    # the same model and examples: the same accuracy line, through ONNX Runtime
    assert "(ONNX Runtime CPU)" in onnx_r.output
    assert torch_r.output.strip().split("accuracy: ")[1] == onnx_r.output.strip().split("CPU): ")[1]


def test_labels_the_model_lacks_and_absurd_threads_are_one_line_errors(tiny_bert_dir, tmp_path):
    tsv = tmp_path / "dev.tsv"
    tsv.write_text("sentence\tlabel\n" + "".join(f"a b c {i}\t{i % 5}\n" for i in range(10)))  # a 2-class model
    one_line_error(run("eval", tiny_bert_dir, "--data", tsv), "not among the model's 2 classes")
    one_line_error(run("run", tiny_bert_dir, "--data", tsv, "--bits", "4", "--block-size", 32, "-o", tmp_path / "r"),
                   "not among the model's 2 classes")
    assert not (tmp_path / "r").exists()
    r = run("run", tiny_bert_dir, "--threads", 100000, "-o", tmp_path / "t")
    assert r.exit_code == 2 and "--threads" in r.output and not (tmp_path / "t").exists()
