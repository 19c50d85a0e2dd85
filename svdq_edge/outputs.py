"""Output folders: refused when they exist (unless overwriting), written to a temporary sibling, moved into place.

No import of the rest of the package: every writer (quantized folders, ONNX folders, the GGUF cache) uses these.
"""

from __future__ import annotations

import os
import shutil
from pathlib import Path

from svdq_edge.errors import UserError


class OutputExistsError(UserError, FileExistsError):
    pass


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


