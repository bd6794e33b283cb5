"""Checksums of exported models' sources: a file's SHA-256, and a model folder's over its names and contents."""

from __future__ import annotations

import hashlib
import shutil
from pathlib import Path

from rtdetr_deploy.checksum import file_sha256, source_sha256


def _folder(root: Path) -> Path:
    (root / "sub").mkdir(parents=True)
    (root / "config.json").write_text('{"model_type": "rt_detr_v2"}')
    (root / "model.safetensors").write_bytes(bytes(range(256)) * 4096)
    (root / "sub" / "extra.txt").write_text("x")
    return root


def test_a_file_hashes_as_hashlib_does(tmp_path: Path) -> None:
    path = tmp_path / "w.pth"
    path.write_bytes(b"weights" * 300_000)  # more than one 1 MiB chunk
    assert file_sha256(path) == source_sha256(path) == hashlib.sha256(path.read_bytes()).hexdigest()


def test_a_folder_hash_follows_names_and_contents(tmp_path: Path) -> None:
    folder = _folder(tmp_path / "a")
    copy = shutil.copytree(folder, tmp_path / "b")
    assert source_sha256(folder) == source_sha256(copy)
    expected = hashlib.sha256()
    for name in ("config.json", "model.safetensors", "sub/extra.txt"):
        expected.update(name.encode() + b"\0" + hashlib.sha256((folder / name).read_bytes()).hexdigest().encode())
    assert source_sha256(folder) == expected.hexdigest()

    (copy / "model.safetensors").write_bytes(b"other weights")
    assert source_sha256(copy) != source_sha256(folder)
    (copy / "model.safetensors").rename(copy / "renamed.safetensors")
    assert source_sha256(copy) != source_sha256(folder)
