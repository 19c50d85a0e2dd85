"""Sweeps on a local two-node Ray cluster (Ray's cluster_utils): placement by device label, equality with a local
run, retry of a killed task, failures reported. Extra `cluster`."""

import json
import os
from pathlib import Path

import pytest
from click.testing import CliRunner

from svdq_edge.cli.app import main
from svdq_edge.config import QuantConfig
from svdq_edge.evaluation.data import read_glue_tsv
from svdq_edge.pipeline.compare import compare_methods, evaluate_config
from svdq_edge.sources.load import load_model
from tests.conftest import require_package

KINDS = ("x86-a", "x86-b")


@pytest.fixture(scope="module")
def cluster():
    require_package("ray", "pip install 'svdq-edge[cluster]'")
    import ray
    from ray.cluster_utils import Cluster

    c = Cluster(initialize_head=True, head_node_args={"num_cpus": 0})  # the head runs no task
    for kind in KINDS:
        c.add_node(num_cpus=1, labels={"device": kind})
    ray.init(address=c.address, logging_level="WARNING", log_to_driver=False)
    yield c
    ray.shutdown()
    c.shutdown()


@pytest.fixture
def sst2_like(tiny_bert_dir, tmp_path):
    tsv = tmp_path / "dev.tsv"
    words = "the film fine good bad movie number is was not very".split()
    tsv.write_text("sentence\tlabel\n" + "".join(
        f"{words[i % 11]} {words[(3 * i) % 11]} film {words[(5 * i + 1) % 11]}\t{i % 2}\n" for i in range(24)))
    return tiny_bert_dir, tsv


def _configs():
    return {m: QuantConfig(method=m, bits=3, block_size=32, keep=0.02) for m in ("rtn", "range", "magnitude")}


def test_every_candidate_runs_on_the_requested_kind_and_equals_a_local_run(cluster, sst2_like, tmp_path):
    from svdq_edge.runtime.validation.cluster import RaySweep
    from svdq_edge.runtime.validation.sweep import sweep_methods

    folder, tsv = sst2_like
    train = tmp_path / "train.tsv"
    train.write_text(tsv.read_text().replace("film", "movie"))
    configs = _configs() | {f"gptq s{s}": QuantConfig(method="gptq", bits=3, block_size=32, keep=0.02, seed=s,
                                                      calib_data=str(train), calib_samples=8) for s in (0, 1)}
    loaded, data = load_model(str(folder)), read_glue_tsv(tsv)
    local = compare_methods(loaded, data, configs, progress=False)
    with RaySweep(device="x86-b") as sweep:
        assert sweep.devices() == list(KINDS)
        swept = sweep_methods(sweep, loaded, data, configs)  # calibrated: one calibration task per seed
    assert not swept.failed
    assert {p["device"] for p in swept.placed.values()} == {"x86-b"} and set(swept.placed) == set(configs)
    assert [r.label for r in swept.results] == [r.label for r in local]
    for a, b in zip(local, swept.results, strict=True):
        assert a.acc.correct == b.acc.correct and a.agree == b.agree
        assert b.kl == pytest.approx(a.kl, rel=1e-4, abs=1e-8)
        assert b.out_err == pytest.approx(a.out_err, rel=1e-4)
        assert (a.vs_rtn is None) == (b.vs_rtn is None)


def _dies_once(marker: str):
    def task(ref, label, config, calib):
        flag = Path(marker) / label
        if not flag.exists():  # first attempt: the worker process dies mid-task, as a killed or OOM worker does
            flag.write_text(str(os.getpid()))
            os._exit(1)
        return evaluate_config(ref, label, config, calib, progress=False)
    return task


def _always_fails(ref, label, config, calib):
    raise RuntimeError(f"broken candidate {label}")


@pytest.mark.slow
def test_a_killed_task_is_retried_and_a_failing_one_is_reported(cluster, sst2_like, tmp_path):
    from svdq_edge.runtime.validation.cluster import RaySweep
    from svdq_edge.runtime.validation.sweep import sweep_methods

    folder, tsv = sst2_like
    loaded, data = load_model(str(folder)), read_glue_tsv(tsv)
    (tmp_path / "marks").mkdir()
    with RaySweep() as sweep:
        retried = sweep_methods(sweep, loaded, data, _configs(), task=_dies_once(str(tmp_path / "marks")))
        assert not retried.failed and [r.label for r in retried.results] == ["fp32", "rtn", "range", "magnitude"]
        assert sorted(p.name for p in (tmp_path / "marks").iterdir()) == sorted(_configs())  # each died once
        broken = sweep_methods(sweep, loaded, data, _configs(), task=_always_fails)
    assert [r.label for r in broken.results] == ["fp32"]
    assert broken.failed == {m: f"RuntimeError: broken candidate {m}" for m in _configs()}


def test_compare_on_ray_per_device_matches_the_local_report(cluster, sst2_like, tmp_path):
    folder, tsv = sst2_like
    common = [str(folder), "--data", str(tsv), "--methods", "rtn,range", "--bits-list", "3", "--block-size", "32",
              "--baselines", "ort-int8", "--accuracy-levels", "0", "--runs", "2", "--shapes", "1x8", "--threads", "1"]
    local = CliRunner().invoke(main, ["compare", *common, "-o", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    swept = CliRunner().invoke(main, ["compare", *common, "-o", str(tmp_path / "ray"), "--ray", cluster.address,
                                      "--per-device"])
    assert swept.exit_code == 0, swept.output
    assert "latency per device kind (x86-a, x86-b)" in swept.output
    pt_local, pt_ray = (json.loads((tmp_path / d / "pytorch.json").read_text())["W3 keep 0.01"]
                        for d in ("local", "ray"))
    assert [r["label"] for r in pt_ray] == [r["label"] for r in pt_local] == ["fp32", "rtn", "range"]
    for a, b in zip(pt_local, pt_ray, strict=True):
        assert (a["acc"], a["agree"]) == (b["acc"], b["agree"]) and b["kl"] == pytest.approx(a["kl"], rel=1e-4)
    assert {r["ran_on"]["device"] for r in pt_ray[1:]} <= set(KINDS)
    rep_local, rep_ray = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("local", "ray"))
    assert set(rep_ray["devices"]) == set(KINDS)
    for kind in KINDS:
        rows = rep_ray["devices"][kind]
        assert [r["backend"]["name"] for r in rows] == [r["backend"]["name"] for r in rep_local["results"]]
        for a, b in zip(rep_local["results"], rows, strict=True):  # the same figures, timing apart
            assert (a["size_mb"], a["bits"], a["agree"]) == (b["size_mb"], b["bits"], b["agree"])
            assert a["accuracy"]["correct"] == b["accuracy"]["correct"]
            assert b["backend"]["path"] == a["backend"]["path"]  # the driver's folders, relative to the report
    assert "## Latency per device kind" in (tmp_path / "ray" / "report.md").read_text()


def test_ray_options_need_ray(tiny_bert_dir, tmp_path):
    r = CliRunner().invoke(main, ["compare", str(tiny_bert_dir), "--data", "x.tsv", "--per-device"])
    assert r.exit_code == 1 and "--device, --per-device and --artifacts need --ray" in r.output


def test_run_on_ray_validates_on_every_device_kind(cluster, tiny_bert_dir, tmp_path):
    out = tmp_path / "run"
    r = CliRunner().invoke(main, ["run", str(tiny_bert_dir), "--bits", "4", "--block-size", "32", "--limit", "6",
                                  "--runs", "2",
                                  "--shapes", "1x8", "--threads", "1", "--baselines", "ort-int8",
                                  "--accuracy-levels", "0", "-o", str(out), "--ray", cluster.address,
                                  "--artifacts", str(tmp_path / "shared")])
    assert r.exit_code == 0, r.output
    report = json.loads((out / "report.json").read_text())
    assert set(report["devices"]) == set(KINDS)
    assert [x["backend"]["name"] for x in report["devices"]["x86-b"]] == ["fp32", "ort-int8", "ours"]
    assert (tmp_path / "shared" / "run" / "backends" / "ours" / "model.onnx").is_file()  # built where nodes read


@pytest.mark.slow
def test_tune_on_ray_builds_the_same_candidates(cluster, tiny_encoder_dir, tmp_path):
    args = ["tune", str(tiny_encoder_dir), "--runs", "2", "--max-size", "0.5", "--threads", "1"]
    local = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "local")])
    assert local.exit_code == 0, local.output
    swept = CliRunner().invoke(main, [*args, "-o", str(tmp_path / "ray"), "--ray", cluster.address])
    assert swept.exit_code == 0, swept.output
    a, b = (json.loads((tmp_path / d / "report.json").read_text()) for d in ("local", "ray"))
    assert b["failed"] == {} and [r["label"] for r in b["rows"]] == [r["label"] for r in a["rows"]]
    for x, y in zip(a["rows"], b["rows"], strict=True):
        assert x["size_mb"] == y["size_mb"] and y["loss"] == pytest.approx(x["loss"], rel=1e-5, abs=1e-9)
    assert b["chosen"]["label"] == a["chosen"]["label"]


def test_without_ray_the_flag_is_one_line(monkeypatch, tiny_bert_dir, tmp_path):
    import sys

    monkeypatch.setitem(sys.modules, "ray", None)  # as if the `cluster` extra were not installed
    (tmp_path / "dev.tsv").write_text("sentence\tlabel\nthe film\t1\n")
    r = CliRunner().invoke(main, ["compare", str(tiny_bert_dir), "--data", str(tmp_path / "dev.tsv"), "--methods",
                                  "rtn", "--bits-list", "4", "--block-size", "32", "--baselines", "none", "-o",
                                  str(tmp_path / "c"), "--ray", "local"])
    assert r.exit_code == 1 and "ray is not installed (pip install 'svdq-edge[cluster]')" in r.output
    assert not (tmp_path / "c").exists()  # nothing half-written
