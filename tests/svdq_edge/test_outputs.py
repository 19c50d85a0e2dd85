"""Output folders: umask permissions (not mkdtemp's 0700), replacement that never leaves neither folder."""

import os
import stat
import tempfile
from pathlib import Path

import pytest

from svdq_edge.outputs import OutputExistsError, OutputLockedError, commit_output, prepare_output, staged_output


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
    from svdq_edge.sources import LoadedModel, ModelTask
    from tests.conftest import tiny_llama

    out, _, _ = export_onnx(LoadedModel(tiny_llama(), None, ModelTask.CAUSAL_LM, "t"), tmp_path / "onnx")
    assert stat.S_IMODE(out.stat().st_mode) == 0o755


def test_a_second_writer_fails_at_once_and_a_stale_lock_is_taken_over(tmp_path):
    out = tmp_path / "out"
    with staged_output(out, overwrite=False) as stage:
        (stage / "f.txt").write_text("first")
        with pytest.raises(OutputLockedError, match=f"pid {os.getpid()}"):
            with staged_output(out, overwrite=True):
                pass
    assert (out / "f.txt").read_text() == "first"
    # a lock whose process is gone (a pid no live process has) does not block the next writer
    dead = 2**22 + 12345
    (tmp_path / ".out.lock").write_text(str(dead))
    with staged_output(out, overwrite=True) as stage:
        (stage / "f.txt").write_text("second")
    assert (out / "f.txt").read_text() == "second"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out"]


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
