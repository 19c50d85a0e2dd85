"""Output folders: refused when they exist (unless overwriting), replaced only when svdq-edge wrote them, never the
input; locked against a second writer; written to a temporary sibling and swapped into place only when complete.

Every writer (quantized folders, ONNX folders, the GGUF cache, run/compare/tune reports) goes through
`staged_output`; a CLI command claims its output first (`claim_output`), so a second writer fails before any work.

- A finished folder holds the marker file `.svdq-edge`. `--overwrite` replaces a folder with the marker, or an empty
  one; anything else (a user's folder, a file, a device such as /dev/null, a symlink) is refused in one line.
- The lock is `flock` on `.<name>.lock` beside the output: the kernel releases it when its holder dies, so a
  crashed run never blocks the next and no two processes hold it.
- The commit swaps the folders atomically (`renameat2(RENAME_EXCHANGE)`, Linux): at every instant `out` is the old or
  the new folder. Where the swap is not supported, the old folder is renamed aside first and put back by the next
  run if a crash left `out` missing. Temporaries of killed runs are removed by the next run on the same output.
"""

from __future__ import annotations

import ctypes
import errno
import fcntl
import os
import re
import shutil
import tempfile
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from pathlib import Path

from svdq_edge.errors import UserError

MARKER = ".svdq-edge"
MARKER_TEXT = "This folder was written by svdq-edge; `--overwrite` may replace it.\n"
# the outputs whose lock this thread of execution holds (a claimed output's staged write does not lock it again)
_HELD: ContextVar[frozenset[Path]] = ContextVar("svdq_edge_held_outputs", default=frozenset())


class OutputExistsError(UserError, FileExistsError):
    pass


class OutputRefusedError(UserError):
    """The output path holds something svdq-edge must not replace (not its own output, or an input)."""


class OutputLockedError(UserError):
    """Another live process is writing the same output."""


def prepare_output(out_dir: str | Path, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> Path:
    """Check that `out_dir` may be written (absent, or replaceable with `overwrite`) and is none of `inputs`; create
    its parent. Returns it as a Path."""
    out = Path(out_dir)
    _refuse_inputs(out, inputs)
    if os.path.lexists(out):
        if not overwrite:
            raise OutputExistsError(f"{out}: output folder exists (use --overwrite)")
        _refuse_foreign(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise OutputRefusedError(f"{out}: cannot create its parent folder ({e.strerror})") from None
    return out


def _refuse_inputs(out: Path, inputs: Iterable[str | Path | None]) -> None:
    target = out.resolve()
    for source in inputs:
        if source is None or not os.path.lexists(source):
            continue  # a hub id or a packaged name
        src = Path(source).resolve()
        if src.is_relative_to(target):  # replacing `out` would delete the input
            raise OutputRefusedError(f"{out}: this is (or holds) the input {source}; write the output elsewhere")


def _refuse_foreign(out: Path) -> None:
    """`--overwrite` replaces only a folder svdq-edge wrote (it holds MARKER) or an empty folder."""
    if out.is_symlink():
        raise OutputRefusedError(f"{out}: a symbolic link; svdq-edge replaces only folders it wrote")
    if not out.is_dir():
        raise OutputRefusedError(f"{out}: not a folder (a file or a device); svdq-edge replaces only folders it "
                                 "wrote")
    if not (out / MARKER).is_file() and any(out.iterdir()):
        raise OutputRefusedError(f"{out}: not an svdq-edge output (no {MARKER} marker); --overwrite replaces only "
                                 "folders svdq-edge wrote: remove it yourself or choose another -o")


@contextmanager
def claim_output(out_dir: str | Path, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> Iterator[Path]:
    """Check and lock `out_dir` for the block, before any work: a second writer fails at once, and the staged write
    inside the block (which would lock it too) reuses this lock."""
    inputs = tuple(inputs)
    out = prepare_output(out_dir, overwrite, inputs)
    with output_lock(out):
        yield prepare_output(out, overwrite, inputs)  # again under the lock: its last holder may have just finished


@contextmanager
def staged_output(out_dir: str | Path, overwrite: bool, inputs: Iterable[str | Path | None] = ()) -> Iterator[Path]:
    """Yield an empty temporary sibling of `out_dir` to write into. When the block ends normally the sibling, marked
    as ours, replaces `out_dir` (commit_output); when it raises, the sibling is removed and `out_dir` is left as it
    was."""
    with claim_output(out_dir, overwrite, inputs) as out:
        clean_leftovers(out)
        tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.tmp-{os.getpid()}-", dir=out.parent))
        try:
            yield tmp
            (tmp / MARKER).write_text(MARKER_TEXT)
            commit_output(tmp, out)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise


@contextmanager
def output_lock(out: Path) -> Iterator[None]:
    """Hold an exclusive `flock` on `.<name>.lock` beside `out` for the block (reentrant within one process)."""
    key = out.parent.resolve() / out.name
    held = _HELD.get()
    if key in held:
        yield
        return
    lock = out.with_name(f".{out.name}.lock")
    fd = _locked_fd(lock, out)
    token = _HELD.set(held | {key})
    try:
        os.ftruncate(fd, 0)
        os.write(fd, str(os.getpid()).encode())
        yield
    finally:
        _HELD.reset(token)
        lock.unlink(missing_ok=True)  # before closing: a waiter that locked this inode sees it unlinked and retries
        os.close(fd)


def _locked_fd(lock: Path, out: Path) -> int:
    while True:
        fd = os.open(lock, os.O_CREAT | os.O_RDWR | os.O_CLOEXEC, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            pid = os.read(fd, 32).decode(errors="replace").strip() or "?"
            os.close(fd)
            raise OutputLockedError(f"{out}: another svdq-edge process (pid {pid}) is writing it; wait for it "
                                    "to finish") from None
        try:
            same = os.stat(lock).st_ino == os.fstat(fd).st_ino
        except FileNotFoundError:
            same = False
        if same:
            return fd
        os.close(fd)  # its holder finished and removed the file between our open and our lock: lock the new one


def clean_leftovers(out: Path) -> list[Path]:
    """Remove the temporaries that killed writers of `out` left beside it, and put back an old folder a crash left
    renamed aside while `out` is missing. Call with the lock held (no live writer owns them then). Returns what it
    removed or restored."""
    name = re.escape(out.name)
    tmp_re, old_re = re.compile(rf"\.{name}\.tmp-\d+-[A-Za-z0-9_]+"), re.compile(rf"\.{name}\.old-\d+")
    touched = []
    for p in sorted(out.parent.iterdir()):
        if p.is_symlink() or not p.is_dir():
            continue
        if old_re.fullmatch(p.name) and not os.path.lexists(out):
            p.rename(out)
        elif tmp_re.fullmatch(p.name) or old_re.fullmatch(p.name):
            shutil.rmtree(p, ignore_errors=True)
        else:
            continue
        touched.append(p)
    return touched


def commit_output(tmp: Path, out: Path) -> None:
    """Move a fully written temporary folder into place, replacing `out` with no moment where neither exists.

    An existing `out` is swapped with `tmp` atomically, then the old folder (now at `tmp`) is deleted. Without the
    atomic swap, `out` is renamed aside first and deleted only once the new folder is in place; if moving the new
    one in fails, the old one is put back. The folder and its owner-only files get the permissions a plain mkdir
    and open would give them under the umask (mkdtemp makes 0700, mkstemp 0600: a shared model would be hidden from
    the user's teammates).
    """
    mask = _umask()
    os.chmod(tmp, 0o777 & ~mask)
    for f in tmp.rglob("*"):  # writers that go through mkstemp (safetensors) leave 0600 files among 0644 siblings
        if f.is_file() and not f.is_symlink() and f.stat().st_mode & 0o777 == 0o600:
            os.chmod(f, 0o666 & ~mask)
    if not os.path.lexists(out):
        tmp.rename(out)
        return
    if _exchange(tmp, out):
        shutil.rmtree(tmp, ignore_errors=True)
        return
    old = out.with_name(f".{out.name}.old-{os.getpid()}")
    out.rename(old)
    try:
        tmp.rename(out)
    except BaseException:
        old.rename(out)
        raise
    shutil.rmtree(old, ignore_errors=True)


def _exchange(a: Path, b: Path) -> bool:
    """Swap two paths atomically (Linux renameat2 RENAME_EXCHANGE). False where the C library, kernel or file
    system does not support it."""
    renameat2 = getattr(ctypes.CDLL(None, use_errno=True), "renameat2", None)
    if renameat2 is None:
        return False
    at_fdcwd, rename_exchange = -100, 2
    if renameat2(at_fdcwd, os.fsencode(a), at_fdcwd, os.fsencode(b), rename_exchange) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP):
        return False
    raise OSError(err, os.strerror(err), str(b))


def _umask() -> int:
    mask = os.umask(0)  # reading the umask means setting it: put it straight back
    os.umask(mask)
    return mask


def ship(src: Path, dst: Path) -> None:
    """The picked ONNX folder `src`, whole, as `dst`: the folder the user deploys (`run`'s OUT/ship, inside its staged
    output)."""
    shutil.copytree(src, dst)
