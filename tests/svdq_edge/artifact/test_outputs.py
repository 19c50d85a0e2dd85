"""Output folders: umask permissions (not mkdtemp's 0700), replacement that never leaves neither folder, only our own
outputs replaced (never the input, a user's folder or a device), a kernel lock, leftovers of killed writers cleaned."""

import os
import signal
import stat
import subprocess
import sys
import tempfile
from pathlib import Path

import pytest

from svdq_edge.artifact.outputs import (
    MARKER,
    OutputExistsError,
    OutputLockedError,
    OutputRefusedError,
    _exchange,
    claim_output,
    clean_leftovers,
    commit_output,
    prepare_output,
    staged_output,
)
from tests.conftest import missing


@pytest.fixture
def umask():
    def set_mask(mask: int) -> None:
        os.umask(mask)

    old = os.umask(0o022)
    yield set_mask
    os.umask(old)


def _written(parent: Path, text: str) -> Path:
    tmp = Path(tempfile.mkdtemp(prefix=".out.", dir=parent))
    (tmp / "f.txt").write_text(text)
    return tmp


@pytest.mark.parametrize("mask,mode", [(0o022, 0o755), (0o027, 0o750)])
def test_committed_folder_gets_umask_permissions(tmp_path, umask, mask, mode):
    umask(mask)
    out = tmp_path / "out"
    commit_output(_written(tmp_path, "new"), out)
    assert stat.S_IMODE(out.stat().st_mode) == mode


def test_quantized_weights_are_readable_like_their_siblings(tiny_bert_dir, tmp_path, umask):
    from click.testing import CliRunner

    from svdq_edge.cli.app import main

    umask(0o022)
    r = CliRunner().invoke(main, ["quantize", str(tiny_bert_dir), "-o", str(tmp_path / "q"), "--block-size", "32"])
    assert r.exit_code == 0, r.output
    modes = {p.name: stat.S_IMODE(p.stat().st_mode) for p in (tmp_path / "q").iterdir()}
    assert set(modes.values()) == {0o644}, modes  # safetensors writes through mkstemp (0600)


def test_replacing_leaves_the_new_folder_and_nothing_else(tmp_path):
    out = tmp_path / "out"
    commit_output(_written(tmp_path, "old"), out)
    commit_output(_written(tmp_path, "new"), out)
    assert (out / "f.txt").read_text() == "new"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_failed_move_puts_the_old_folder_back(tmp_path, monkeypatch):
    out = tmp_path / "out"
    commit_output(_written(tmp_path, "old"), out)
    tmp = _written(tmp_path, "new")
    rename = Path.rename

    def failing(self, target):
        if self == tmp:
            raise OSError("disk gone")
        return rename(self, target)

    monkeypatch.setattr(Path, "rename", failing)
    # the fallback: rename aside, then in
    monkeypatch.setattr("svdq_edge.artifact.outputs._exchange", lambda a, b: False)
    with pytest.raises(OSError, match="disk gone"):
        commit_output(tmp, out)
    assert (out / "f.txt").read_text() == "old"
    assert not any(p.name.startswith(".out.old") for p in tmp_path.iterdir())


def test_existing_output_needs_overwrite(tmp_path):
    (tmp_path / "out").mkdir()
    with pytest.raises(OutputExistsError, match="--overwrite"):
        prepare_output(tmp_path / "out", overwrite=False)
    assert prepare_output(tmp_path / "out", overwrite=True) == tmp_path / "out"


def test_exported_folder_is_readable_by_the_group(tmp_path, umask):
    from svdq_edge.exporters.export import export_onnx
    from svdq_edge.sources.load import LoadedModel, ModelTask
    from tests.conftest import tiny_llama

    out, _, _ = export_onnx(LoadedModel(tiny_llama(), None, ModelTask.CAUSAL_LM, "t"), tmp_path / "onnx")
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


HOLD = """
import sys, time
from pathlib import Path
from svdq_edge.artifact.outputs import staged_output
with staged_output(Path(sys.argv[1]), overwrite=True) as stage:
    (stage / "f.txt").write_text("child")
    print("locked", flush=True)
    time.sleep(60)
"""


def _holder(out: Path) -> subprocess.Popen:
    """A child process writing `out`, stopped inside the staged block (it holds the lock and a temporary)."""
    proc = subprocess.Popen([sys.executable, "-c", HOLD, str(out)], stdout=subprocess.PIPE, text=True)
    assert proc.stdout.readline().strip() == "locked"
    return proc


def test_a_second_writer_fails_at_once_and_a_killed_writer_leaves_nothing(tmp_path):
    out = tmp_path / "out"
    with staged_output(out, overwrite=False) as stage:
        (stage / "f.txt").write_text("first")
    proc = _holder(out)
    with pytest.raises(OutputLockedError, match=f"pid {proc.pid}"):
        with staged_output(out, overwrite=True):
            pass
    proc.send_signal(signal.SIGKILL)  # the kernel releases its lock; its temporary stays until the next writer
    proc.wait()
    assert any(p.name.startswith(".out.tmp-") for p in tmp_path.iterdir())
    assert (out / "f.txt").read_text() == "first"
    with staged_output(out, overwrite=True) as stage:
        (stage / "f.txt").write_text("second")
    assert (out / "f.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


def test_a_claimed_output_is_locked_once_for_the_whole_command(tmp_path):
    out = tmp_path / "out"
    with claim_output(out, overwrite=False):
        assert not out.exists() and (tmp_path / ".out.lock").exists()
        with staged_output(out, overwrite=False) as stage:  # the same process's write reuses the claim
            (stage / "f.txt").write_text("x")
    assert (out / MARKER).is_file() and sorted(p.name for p in tmp_path.iterdir()) == ["out"]


@pytest.mark.parametrize("what", ["file", "user-folder", "symlink", "device"])
def test_overwrite_replaces_only_what_svdq_edge_wrote(tmp_path, what):
    out = tmp_path / "out"
    if what == "file":
        out.write_text("mine")
    elif what == "user-folder":
        out.mkdir()
        (out / "thesis.tex").write_text("mine")
    elif what == "symlink":
        (tmp_path / "target").mkdir()
        out.symlink_to(tmp_path / "target")
    else:
        out = Path("/dev/null")
    before = sorted(p.name for p in tmp_path.iterdir())
    with pytest.raises(OutputRefusedError, match=r"^[^\n]+$"):
        with staged_output(out, overwrite=True) as stage:
            (stage / "f.txt").write_text("new")
    assert sorted(p.name for p in tmp_path.iterdir()) == before
    assert Path("/dev/null").is_char_device()


def test_overwrite_replaces_an_empty_folder_and_a_marked_one(tmp_path):
    out = tmp_path / "out"
    out.mkdir()
    for text in ("first", "second"):
        with staged_output(out, overwrite=True) as stage:
            (stage / "f.txt").write_text(text)
        assert (out / "f.txt").read_text() == text and (out / MARKER).is_file()


def test_the_input_is_never_the_output(tmp_path):
    model = tmp_path / "model"
    with staged_output(model, overwrite=False) as stage:  # e.g. a quantized folder svdq-edge wrote
        (stage / "config.json").write_text("{}")
    for out in (model, tmp_path):
        with pytest.raises(OutputRefusedError, match="the input"):
            prepare_output(out, overwrite=True, inputs=[str(model)])
    assert (model / "config.json").is_file()
    assert prepare_output(model / "onnx", overwrite=True, inputs=[str(model)]) == model / "onnx"


def test_leftovers_are_cleaned_and_a_stranded_old_folder_is_restored(tmp_path):
    out = tmp_path / "out"
    (tmp_path / ".out.old-4242").mkdir()  # a crash between the two renames of the fallback commit
    (tmp_path / ".out.old-4242" / "f.txt").write_text("old")
    (tmp_path / ".out.tmp-4243-abc_123x").mkdir()  # a killed writer's temporary
    (tmp_path / ".out.tmp-1.tmp-4244-abcdefgh").mkdir()  # the temporary of another output, named "out.tmp-1"
    touched = clean_leftovers(out)
    assert len(touched) == 2 and (out / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == [".out.tmp-1.tmp-4244-abcdefgh", "out"]


def test_replacing_swaps_atomically_where_the_kernel_can(tmp_path):
    a, b = tmp_path / "a", tmp_path / "b"
    a.mkdir(), b.mkdir()
    (a / "f").write_text("a")
    if not _exchange(a, b):
        missing("renameat2(RENAME_EXCHANGE) is not supported here; the rename-aside fallback is tested above")
    assert (b / "f").read_text() == "a" and not (a / "f").exists()


def test_a_failed_writer_leaves_the_old_output(tmp_path):
    out = tmp_path / "out"
    with staged_output(out, overwrite=False) as stage:
        (stage / "f.txt").write_text("old")
    with pytest.raises(RuntimeError, match="boom"):
        with staged_output(out, overwrite=True) as stage:
            (stage / "f.txt").write_text("new")
            raise RuntimeError("boom")
    assert (out / "f.txt").read_text() == "old"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]
