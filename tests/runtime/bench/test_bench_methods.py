"""bench_methods' choice of the default per structure: the lowest geometric mean of loss / rtn among candidates
without user data that are at or below rtn on every column."""

import pytest

from svdq_edge.runtime.bench.methods import candidates, geo_mean, summary


def test_default_per_structure_is_the_geometric_mean_winner_never_above_rtn():
    cands = candidates()
    cols = ["A W4", "B W4"]
    losses = {c.label: {"A W4": 1.0, "B W4": 1.0} for c in cands}
    losses["range / channel"] = {"A W4": 0.5, "B W4": 1.5}  # geo-mean 0.866, but above rtn on B: not eligible
    losses["proxy / channel"] = {"A W4": 0.8, "B W4": 0.9}  # geo-mean 0.85, at or below rtn everywhere: the winner
    losses["magnitude / element"] = {"A W4": 0.7, "B W4": 0.7}
    losses["spqr / synthetic"] = {"A W4": 0.6, "B W4": 0.6}  # element too, synthetic inputs: the element winner
    losses["gptq / real"] = {"A W4": 0.1, "B W4": 0.1}  # needs user data: never the default
    losses["random / element (control)"] = {"A W4": 0.05, "B W4": 0.05}  # a control: never the default
    rows, best = summary(cands, losses, cols)
    assert best["channel"] == "proxy / channel" and best["element"] == "spqr / synthetic"
    assert best["none"] == "rtn"
    row = {r[0]: r for r in rows}["range / channel"]
    assert row[4] == "0.866" and row[5] == "1/2"  # geo-mean, columns at or below rtn
    assert row[6] == "15.00"  # worst column over real-data GPTQ's loss


def test_every_data_free_method_meets_every_structure():
    labels = [c.label for c in candidates()]
    for m in ("magnitude", "svd", "svd-residual", "range", "proxy"):
        assert f"{m} / element" in labels and f"{m} / channel" in labels
    assert len(labels) == len(set(labels))
    assert geo_mean([0.5, 2.0]) == pytest.approx(1.0)
