"""The feed files a job reads: their digest, and which of them the application owns."""

from __future__ import annotations

import hashlib
from pathlib import Path


def size_and_sha256(path: Path) -> tuple[int, bytes]:
    digest = hashlib.sha256()
    size = 0
    with path.open("rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
            size += len(block)
    return size, digest.digest()


def discard_owned_file(path: Path, *, owned_files: Path | None) -> bool:
    """Delete `path` if it is an upload kept under `owned_files` (the API's upload
    directory); a file the CLI was pointed at belongs to its owner. True if it was deleted.

    Both paths are resolved first: a path that leads out of the directory (`..`, a symbolic
    link) is not ours, however it is spelt."""
    if owned_files is None or owned_files.resolve() not in path.resolve().parents:
        return False
    try:
        path.unlink()
    except FileNotFoundError:
        return False
    return True
