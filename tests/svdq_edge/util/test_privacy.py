"""No network unless asked: the runtimes' telemetry is off under the CLI (ONNX Runtime's 1DS upload, OpenVINO's
import event), checked where it matters, on the system calls of a real run."""

import os
import shutil
import subprocess
import sys

import pytest

from tests.conftest import missing


def test_no_telemetry_keeps_a_users_own_setting(monkeypatch):
    from svdq_edge.util.privacy import no_telemetry

    monkeypatch.delenv("ORT_DISABLE_TELEMETRY", raising=False)
    no_telemetry()
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "1"
    monkeypatch.setenv("ORT_DISABLE_TELEMETRY", "0")
    no_telemetry()
    assert os.environ["ORT_DISABLE_TELEMETRY"] == "0"


@pytest.mark.slow
def test_a_run_opens_no_internet_socket(tiny_bert_dir, tmp_path):
    """`run` (FP32, ORT INT8, ours; ONNX Runtime sessions, and OpenVINO where installed) under strace: no connect()
    to an IPv4/IPv6 address, DNS included. ONNX Runtime 1.32 looks up its telemetry host without the fix."""
    if shutil.which("strace") is None:
        missing("strace is not installed (apt-get install strace)")
    import importlib.util

    runtimes = "ort-cpu,openvino" if importlib.util.find_spec("openvino") else "ort-cpu"
    log = tmp_path / "strace.log"
    env = {k: v for k, v in os.environ.items() if k != "ORT_DISABLE_TELEMETRY"} | {"HF_HUB_OFFLINE": "1"}
    cmd = ["strace", "-f", "-e", "trace=connect", "-o", str(log), sys.executable, "-m", "svdq_edge.cli.app", "run",
           str(tiny_bert_dir), "--block-size", "32", "--limit", "4", "--runs", "1", "--shapes", "1x8",
           "--baselines", "ort-int8", "--accuracy-levels", "0", "--runtimes", runtimes, "-o", str(tmp_path / "r")]
    r = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=600)
    if r.returncode != 0 and "ptrace" in r.stderr:
        missing(f"strace cannot trace here: {r.stderr.strip().splitlines()[-1]}")
    assert r.returncode == 0, r.stderr[-2000:]
    inet = [ln for ln in log.read_text().splitlines() if "AF_INET" in ln]
    assert inet == [], inet[:3]
