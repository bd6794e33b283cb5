"""Download and default model: tested against files served on 127.0.0.1 only (no other address)."""

from __future__ import annotations

import dataclasses
import functools
import hashlib
import http.server
import os
import threading
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from rtdetr_deploy import zoo
from rtdetr_deploy.checksum import file_sha256
from rtdetr_deploy.download import download
from rtdetr_deploy.zoo import DefaultModel, resolve_default_model


class _Handler(http.server.SimpleHTTPRequestHandler):
    """Static files, plus ``/short/NAME`` which promises NAME's length and sends half of it."""

    hits: list[str]

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 - base-class signature
        pass

    def do_GET(self) -> None:  # noqa: N802 - http.server naming
        self.hits.append(self.path)
        if self.path.startswith("/short/"):
            body = (Path(self.directory) / self.path.removeprefix("/short/")).read_bytes()
            self.send_response(200)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body[: len(body) // 2])
            self.close_connection = True
            return
        super().do_GET()


@pytest.fixture
def served(tmp_path: Path) -> Iterator[tuple[str, Path, list[str]]]:
    """(base URL on 127.0.0.1, served folder, request log)."""
    folder = tmp_path / "served"
    folder.mkdir()
    hits: list[str] = []
    handler = functools.partial(type("H", (_Handler,), {"hits": hits}), directory=str(folder))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", folder, hits
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=5)


def _blob(folder: Path, name: str = "weights.bin", size: int = 3 * (1 << 20) + 17) -> tuple[Path, str]:
    data = np.random.default_rng(0).integers(0, 256, size, dtype=np.uint8).tobytes()
    path = folder / name
    path.write_bytes(data)
    return path, hashlib.sha256(data).hexdigest()


def test_download_checks_the_checksum_and_writes_atomically(served, tmp_path: Path) -> None:
    url, folder, _ = served
    source, digest = _blob(folder)
    dest = tmp_path / "cache" / "weights.bin"
    assert download(f"{url}/weights.bin", dest, sha256=digest.upper(), progress=False) == dest
    assert dest.read_bytes() == source.read_bytes()
    assert file_sha256(dest) == digest
    assert os.listdir(dest.parent) == ["weights.bin"]


def test_checksum_mismatch_leaves_nothing(served, tmp_path: Path) -> None:
    url, folder, _ = served
    _blob(folder)
    dest = tmp_path / "cache" / "weights.bin"
    with pytest.raises(OSError, match="has SHA-256 .* expected 0000"):
        download(f"{url}/weights.bin", dest, sha256="0" * 64, progress=False)
    assert os.listdir(dest.parent) == []


def test_cut_short_missing_and_unreachable(served, tmp_path: Path) -> None:
    url, folder, _ = served
    _blob(folder)
    dest = tmp_path / "cache" / "weights.bin"
    with pytest.raises(OSError, match="cannot download|cut short"):
        download(f"{url}/short/weights.bin", dest, progress=False)
    with pytest.raises(OSError, match="HTTP 404"):
        download(f"{url}/nope.bin", dest, progress=False)
    assert os.listdir(dest.parent) == []
    port = int(url.rsplit(":", 1)[1])
    with pytest.raises(OSError, match="cannot download"):
        download(f"http://127.0.0.1:{port + 1 if port < 65535 else port - 1}/x", dest, progress=False, timeout=5)


def test_default_model_is_downloaded_and_exported_once(
    served, tmp_path: Path, tiny_checkpoint: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    pytest.importorskip("torch")
    url, folder, hits = served
    (folder / "tiny-release.pth").write_bytes(tiny_checkpoint.read_bytes())
    spec = DefaultModel(
        name="tiny_default",
        url=f"{url}/tiny-release.pth",
        sha256=file_sha256(tiny_checkpoint),
        class_names=("disc", "box", "wedge"),
        category_ids=(11, 22, 33),
    )
    monkeypatch.setattr(zoo, "DEFAULT_MODEL", spec)
    monkeypatch.setenv("RTDETR_DEPLOY_CACHE", str(tmp_path / "cache"))
    onnx_path = resolve_default_model()
    assert onnx_path == tmp_path / "cache" / "models" / "tiny_default" / "tiny_default.onnx"
    assert hits == ["/tiny-release.pth"]
    stamp = onnx_path.stat().st_mtime_ns
    assert resolve_default_model() == onnx_path and onnx_path.stat().st_mtime_ns == stamp
    assert resolve_default_model(backend="torch").name == "tiny_default.pth"
    assert hits == ["/tiny-release.pth"]

    from rtdetr_deploy.cli.infer import main
    from rtdetr_deploy.runtime import Detector

    with Detector(onnx_path) as detector:
        assert detector.metadata.class_names == ("disc", "box", "wedge")
        assert detector.metadata.category_ids == (11, 22, 33)
    image = Path(__file__).parent / "data" / "rocket.jpg"
    assert main([str(image), "--json", str(tmp_path / "r.json"), "--conf", "0"]) == 0
    assert hits == ["/tiny-release.pth"]


def test_default_model_with_a_bad_checksum_asks_for_a_model(
    served, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    pytest.importorskip("torch")
    url, folder, _ = served
    _blob(folder, "release.pth", size=1024)
    spec = dataclasses.replace(zoo.RTDETRV2_S_COCO, url=f"{url}/release.pth")
    monkeypatch.setattr(zoo, "DEFAULT_MODEL", spec)
    monkeypatch.setenv("RTDETR_DEPLOY_CACHE", str(tmp_path / "cache"))
    from rtdetr_deploy.cli.infer import main

    assert main([str(Path(__file__).parent / "data" / "rocket.jpg")]) == 1
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "has SHA-256" in err[0] and err[0].endswith("pass --model PATH (.onnx, .engine or .pth)")
    assert not any((tmp_path / "cache").rglob("*.pth"))
