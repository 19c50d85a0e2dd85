"""sha256 of every file of a folder: what a report measured, stated so a user can check what they ship."""

from __future__ import annotations

import hashlib
from pathlib import Path


def file_sha256(path: Path, chunk: int = 1 << 20) -> str:
    """Hex sha256 of one file, read in 1 MiB pieces (external data files are GBs for large models)."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while piece := f.read(chunk):
            h.update(piece)
    return h.hexdigest()


def folder_sha256(folder: Path) -> dict[str, str]:
    """{path relative to folder (POSIX): sha256} for every regular file under folder, sorted by path."""
    folder = Path(folder)
    return {p.relative_to(folder).as_posix(): file_sha256(p)
            for p in sorted(folder.rglob("*")) if p.is_file() and not p.is_symlink()}
