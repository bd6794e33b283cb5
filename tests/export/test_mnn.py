"""MNN for real: ``rtdetr-export --mnn`` on the shipped trained tiny, the engine against ONNX Runtime by a plain
numpy check, the converter changing nothing in the environment, and the MNN backend's bad inputs."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")
pytest.importorskip("MNN")

from rtdetr_deploy.cli.export import main as export_main  # noqa: E402
from rtdetr_deploy.cli.infer import main as infer_main  # noqa: E402
from rtdetr_deploy.errors import BackendError, ModelFileError  # noqa: E402
from rtdetr_deploy.export.mnn import convert_mnn  # noqa: E402
from rtdetr_deploy.runtime import open_backend  # noqa: E402
from rtdetr_deploy.runtime.mnn_backend import MnnBackend  # noqa: E402

WEIGHTS = Path(__file__).parents[2] / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"


@pytest.fixture(scope="module")
def mnn_export(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shipped trained tiny (trained with bilinear sampling) exported bilinear with ``--mnn``, verified by the
    exporter. (Discrete sampling on MNN: one of these scenes differs by 0.005 in a top score, an index rounded
    to the other pixel; the exporter's verification covers discrete on its own images.)"""
    out = tmp_path_factory.mktemp("mnn")
    assert export_main([str(WEIGHTS), "-o", str(out), "--sampling", "bilinear", "--mnn"]) == 0
    return out


def _scenes(count: int, size: int, seed: int) -> list[np.ndarray]:
    """Cluttered BGR scenes of filled shapes on noise (the kind the tiny was trained on)."""
    import cv2

    rng = np.random.default_rng(seed)
    images = []
    for _ in range(count):
        image = rng.integers(0, 60, (size, size, 3), dtype=np.uint8)
        for _ in range(6):
            x, y, r = (int(v) for v in rng.integers(20, size - 20, 3) // (1, 1, 4))
            colour = tuple(int(c) for c in rng.integers(80, 255, 3))
            if rng.random() < 0.5:
                cv2.circle(image, (x, y), max(r, 6), colour, -1)
            else:
                cv2.rectangle(image, (x - r, y - r), (x + r, y + r), colour, -1)
        images.append(image)
    return images


def _top_agree(reference: list[np.ndarray], candidate: list[np.ndarray], *, top: int, score_tol: float, box_px: float):
    """Plain numpy: every one of the reference's ``top`` detections has a candidate among the candidate's
    ``top + 10`` with the same label, score within ``score_tol`` and every box coordinate within ``box_px``."""
    ref_labels, ref_boxes, ref_scores = reference
    labels, boxes, scores = candidate
    worst_score = worst_box = 0.0
    for i in range(len(ref_labels)):
        mine = np.argsort(-scores[i], kind="stable")[: top + 10]
        for j in np.argsort(-ref_scores[i], kind="stable")[:top]:
            same = mine[labels[i][mine] == ref_labels[i][j]]
            assert same.size, f"image {i}: no detection of label {ref_labels[i][j]}"
            box_error = np.abs(boxes[i][same] - ref_boxes[i][j]).max(axis=1)
            best = same[int(box_error.argmin())]
            worst_box = max(worst_box, float(box_error.min()))
            worst_score = max(worst_score, abs(float(scores[i][best]) - float(ref_scores[i][j])))
    assert worst_score <= score_tol, worst_score
    assert worst_box <= box_px, worst_box


def test_export_writes_a_verified_mnn_with_its_sidecar(mnn_export: Path) -> None:
    report = json.loads((mnn_export / "tiny_synthetic.verify.json").read_text())["targets"]["mnn"]
    assert report["passed"] and report["decided"] >= 10
    sidecar = json.loads((mnn_export / "tiny_synthetic.mnn.json").read_text())
    assert sidecar["engine"] == "mnn" and sidecar["metadata"]["orig_sizes_dtype"] == "int32"


def test_mnn_agrees_with_onnxruntime_on_trained_weights(mnn_export: Path) -> None:
    import onnxruntime as ort

    session = ort.InferenceSession(str(mnn_export / "tiny_synthetic.onnx"), providers=["CPUExecutionProvider"])
    with MnnBackend.from_path(mnn_export / "tiny_synthetic.mnn", threads=1) as backend:
        reference, candidate = [[], [], []], [[], [], []]
        for image in _scenes(4, 256, seed=3):
            rgb = image[:, :, ::-1].astype(np.float32).transpose(2, 0, 1)[None] / 255.0
            feed = {"images": np.ascontiguousarray(rgb), "orig_target_sizes": np.array([[256, 256]], np.int64)}
            for parts, outputs in zip(
                (reference, candidate), (session.run(None, feed), backend.infer(feed)), strict=True
            ):
                values = outputs if isinstance(outputs, list) else [outputs[k] for k in ("labels", "boxes", "scores")]
                for part, value in zip(parts, values, strict=True):
                    part.append(value[0])
    assert candidate[0][0].dtype == np.int64
    _top_agree(reference, candidate, top=20, score_tol=1e-3, box_px=1.0)


def test_infer_runs_the_mnn_file(mnn_export: Path, tmp_path: Path) -> None:
    import cv2

    image = tmp_path / "scene.png"
    cv2.imwrite(str(image), _scenes(1, 300, seed=5)[0])
    results = tmp_path / "results.json"
    assert infer_main([str(image), "--model", str(mnn_export / "tiny_synthetic.mnn"), "--json", str(results)]) == 0
    assert json.loads(results.read_text())


def _fake_pip(folder: Path, log: Path) -> None:
    folder.mkdir()
    for name in ("pip", "pip3", "pip3.11"):
        script = folder / name
        script.write_text(f'#!/bin/sh\necho "$@" >> {log}\n')
        script.chmod(script.stat().st_mode | stat.S_IEXEC)


def test_converter_installs_nothing(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A ``pip`` first on PATH that records each call is never called, and ``pip freeze`` is unchanged."""
    from helpers import tiny_deploy_onnx

    source = tiny_deploy_onnx(tmp_path, input_size=(64, 64), batch=(1, 1, 1))
    log = tmp_path / "pip-calls.txt"
    _fake_pip(tmp_path / "bin", log)
    freeze = [sys.executable, "-m", "pip", "freeze", "--all"]
    before = subprocess.run(freeze, capture_output=True, text=True, check=True).stdout
    monkeypatch.setenv("PATH", f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}")
    record = convert_mnn(source, tmp_path / "tiny.mnn")
    assert (tmp_path / "tiny.mnn").stat().st_size > 0 and record["mnn"]
    assert not log.exists(), log.read_text()
    assert subprocess.run(freeze, capture_output=True, text=True, check=True).stdout == before


def test_the_wrapper_that_the_exporter_avoids_does_call_pip(tmp_path: Path) -> None:
    """The check above can fail: MNN's logging wrapper, imported with the fake pip on PATH and its package
    missing, calls that pip (skipped where aliyun-log-python-sdk is installed: then it has nothing to install)."""
    import importlib.util

    if importlib.util.find_spec("aliyun") is not None:
        pytest.skip("aliyun-log-python-sdk is installed: the wrapper installs nothing")
    log = tmp_path / "pip-calls.txt"
    _fake_pip(tmp_path / "bin", log)
    env = {**os.environ, "PATH": f"{tmp_path / 'bin'}{os.pathsep}{os.environ['PATH']}"}
    code = "import MNN.tools.utils.log"
    subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, timeout=120)
    assert "install" in log.read_text()


def test_backend_bad_inputs(mnn_export: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = mnn_export / "tiny_synthetic.mnn"
    lonely = tmp_path / "lonely.mnn"
    lonely.write_bytes(engine.read_bytes())
    with pytest.raises(FileNotFoundError, match="lonely.mnn.json"):
        MnnBackend.from_path(lonely)
    with pytest.raises(ValueError, match="runs on 'cpu'"):
        MnnBackend.from_path(engine, device="cuda:0")
    garbage = tmp_path / "garbage.mnn"
    garbage.write_bytes(b"not a model")
    (tmp_path / "garbage.mnn.json").write_text((mnn_export / "tiny_synthetic.mnn.json").read_text())
    with pytest.raises(ModelFileError, match="garbage.mnn"):
        MnnBackend.from_path(garbage)
    other = tmp_path / "other.mnn"
    other.write_bytes(engine.read_bytes())
    sidecar = json.loads((mnn_export / "tiny_synthetic.mnn.json").read_text())
    (tmp_path / "other.mnn.json").write_text(json.dumps({**sidecar, "engine": "litert"}))
    with pytest.raises(ModelFileError, match="litert"):
        open_backend(other)
    monkeypatch.setitem(sys.modules, "MNN", None)
    with pytest.raises(BackendError, match=r"rtdetr-deploy\[mnn\]"):
        MnnBackend.from_path(engine)


def test_bench_runs_the_mnn_file(mnn_export: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rtdetr_deploy.cli.bench import main as bench_main

    assert bench_main([str(mnn_export / "tiny_synthetic.mnn"), "--warmup", "1", "--iters", "2"]) == 0
    assert "mnn fp32 bilinear" in capsys.readouterr().out
