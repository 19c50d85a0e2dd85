"""One small `svdq-edge run` across runtimes on a tiny model, for the runtime tests."""

from click.testing import CliRunner

from svdq_edge.cli.app import main


def run_across(model_dir, out, runtimes: str, *extra: str):
    """`run` with one configuration (W4, block 32), FP32 and ORT INT8 dynamic, 6 examples, 2 timed 1x8 runs, under
    `runtimes` (and `extra` options); returns click's Result."""
    return CliRunner().invoke(main, ["run", str(model_dir), "--bits", "4", "--block-size", "32", "--limit", "6",
                                     "--runs", "2", "--shapes", "1x8", "--baselines", "ort-int8",
                                     "--accuracy-levels", "0", "--runtimes", runtimes, "-o", str(out), *extra])
