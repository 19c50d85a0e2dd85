"""Output folders: refused when they exist (unless overwriting), locked against a second writer, written to a
temporary sibling and moved into place only when complete.

Every writer (quantized folders, ONNX folders, the GGUF cache, run/compare reports) goes through `staged_output`.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from svdq_edge.errors import UserError


class OutputExistsError(UserError, FileExistsError):
    pass


class OutputLockedError(UserError):
    """Another live process is writing the same output."""


@contextmanager
def staged_output(out_dir: str | Path, overwrite: bool) -> Iterator[Path]:
    """Yield an empty temporary sibling of `out_dir` to write into. When the block ends normally the sibling
    replaces `out_dir` (commit_output); when it raises, the sibling is removed and `out_dir` is left as it was.
    A lock file beside `out_dir` makes a second process writing the same output fail at once, in one line."""
    out = prepare_output(out_dir, overwrite)
    with output_lock(out):
        prepare_output(out, overwrite)  # again under the lock: a process that held it may have just finished
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
        try:
            yield tmp
            commit_output(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold `.<name>.lock` beside `out` (created exclusively, holding our pid) for the block. A lock left by a
    process that no longer runs is taken over."""
    lock = out.with_name(f".{out.name}.lock")
    for _ in range(2):
        try:
            fd = os.open(lock, os.O_CREAT | os.O_EXCL | os.O_WRONLY, 0o644)
            break
        except FileExistsError:
            pid = _lock_pid(lock)
            if pid is not None and _alive(pid):
                raise OutputLockedError(f"{out}: another svdq-edge process (pid {pid}) is writing it; wait for it "
                                        f"or remove {lock} if that process is gone") from None
            lock.unlink(missing_ok=True)  # stale: its writer died
    else:
        raise OutputLockedError(f"{out}: cannot take the lock {lock}")
    try:
        os.write(fd, str(os.getpid()).encode())
        os.close(fd)
        yield
    finally:
        lock.unlink(missing_ok=True)


def _lock_pid(lock: Path) -> int | None:
    try:
        return int(lock.read_text().strip())
    except (OSError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # someone else's process: alive
        return True
    return True


def prepare_output(out_dir: str | Path, overwrite: bool) -> Path:
    out = Path(out_dir)
    if out.exists() and not overwrite:
        raise OutputExistsError(f"{out}: output folder exists (use --overwrite)")
    out.parent.mkdir(parents=True, exist_ok=True)
    return out


def commit_output(tmp: Path, out: Path) -> None:
    """Move a fully written temporary folder into place, replacing `out` without a moment where neither exists.

    An existing `out` is renamed aside first and deleted only once the new folder is in place; if moving the new one
    in fails, the old one is put back. The folder gets the permissions a plain mkdir would give it under the umask
    (mkdtemp creates it 0700, which would hide a shared model from the user's teammates).
    """
    os.chmod(tmp, 0o777 & ~_umask())
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old-{os.getpid()}")
        out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        if old is not None:
            old.rename(out)
        raise
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


