"""SHA-256 of files and model folders, read in chunks: checkpoint provenance in exported models and download
checks."""

from __future__ import annotations

import hashlib
import os

__all__ = ["file_sha256", "source_sha256"]

_CHUNK = 1 << 20


def file_sha256(path: str | os.PathLike[str]) -> str:
    """Hex SHA-256 of a file, read in 1 MiB chunks."""
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            digest.update(chunk)
    return digest.hexdigest()


def source_sha256(path: str | os.PathLike[str]) -> str:
    """``file_sha256`` of a file; of a folder (a transformers model folder), the SHA-256 over its files' relative
    names and contents, in name order (sub-folders included)."""
    if not os.path.isdir(path):
        return file_sha256(path)
    digest = hashlib.sha256()
    for root, dirs, files in os.walk(path):
        dirs.sort()
        for name in sorted(files):
            full = os.path.join(root, name)
            digest.update(os.path.relpath(full, path).encode() + b"\0" + file_sha256(full).encode())
    return digest.hexdigest()
