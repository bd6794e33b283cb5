"""ncnn for real and its host side: the committed ``tests/data/tiny_synthetic.ncnn`` (made by
``tools/make_ncnn_test_model.py`` with pnnx from the shipped tiny's bilinear export) runs in the ``ncnn`` package
through the ``Detector`` and finds what ONNX Runtime finds with the same checkpoint exported by the code under test
(every top-20 detection of ONNX Runtime has an ncnn detection of the same class, score within 1e-3 and every box
coordinate within 1 px, on generated scenes and the shared photographs; plain numpy). The host query selection is
checked on a hand-computed case, and every bad folder and a missing package on its own."""

from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest
from helpers import assert_top_detections_agree, detections_of, scenes_and_photos

from rtdetr_deploy.errors import BackendError
from rtdetr_deploy.runtime.ncnn_backend import NcnnBackend
from rtdetr_deploy.runtime.query_selection import select_queries
from rtdetr_deploy.runtime.registry import backend_name_for

REPO = Path(__file__).parents[2]
WEIGHTS = REPO / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"
NCNN_FOLDER = REPO / "tests" / "data" / "tiny_synthetic.ncnn"
TOP, SCORE_TOL, BOX_TOL_PX = 20, 1e-3, 1.0


def test_query_selection_keeps_the_best_positions_in_order() -> None:
    scores = np.array([0.1, 0.9, 0.5, 0.9, -1.0], np.float32)
    output_memory = np.arange(10, dtype=np.float32).reshape(5, 2)
    anchors = np.arange(20, dtype=np.float32).reshape(5, 4)
    anchors[4] = np.inf
    selected = select_queries(scores, output_memory, anchors, k=3)
    # 0.9 at positions 1 and 3 (the tie kept in position order), then 0.5 at position 2.
    assert selected.index.tolist() == [1, 3, 2]
    assert selected.content.tolist() == [[[2.0, 3.0], [6.0, 7.0], [4.0, 5.0]]]
    assert selected.anchors.tolist() == [[[4.0, 5.0, 6.0, 7.0], [12.0, 13.0, 14.0, 15.0], [8.0, 9.0, 10.0, 11.0]]]
    assert selected.content.dtype == np.float32 and selected.anchors.flags["C_CONTIGUOUS"]
    with pytest.raises(ValueError, match="k must lie in 1..5"):
        select_queries(scores, output_memory, anchors, k=6)
    with pytest.raises(ValueError, match="agree on L"):
        select_queries(scores, output_memory[:4], anchors, k=2)


def test_an_ncnn_folder_opens_with_the_ncnn_backend(tmp_path: Path) -> None:
    folder = tmp_path / "best.ncnn"
    folder.mkdir()
    assert backend_name_for(folder) == "ncnn"
    assert backend_name_for(tmp_path / "not_there.ncnn") == "ncnn"


def test_a_folder_without_its_files_is_refused_by_name(tmp_path: Path) -> None:
    folder = tmp_path / "best.ncnn"
    folder.mkdir()
    with pytest.raises(FileNotFoundError, match=r"model\.json .*into the engine folder"):
        NcnnBackend.from_path(folder)
    shutil.copyfile(NCNN_FOLDER / "model.json", folder / "model.json")
    shutil.copyfile(NCNN_FOLDER / "anchors.npy", folder / "anchors.npy")
    with pytest.raises(FileNotFoundError, match="lacks encoder.ncnn.param, encoder.ncnn.bin, decoder.ncnn.param"):
        NcnnBackend.from_path(folder)
    with pytest.raises(FileNotFoundError, match="model not found"):
        NcnnBackend.from_path(tmp_path / "missing.ncnn")
    with pytest.raises(ValueError, match="runs .ncnn files"):
        NcnnBackend.from_path(tmp_path)


def test_a_sidecar_of_another_engine_is_refused(tmp_path: Path) -> None:
    from rtdetr_deploy.errors import ModelFileError

    folder = tmp_path / "best.ncnn"
    shutil.copytree(NCNN_FOLDER, folder)
    record = json.loads((folder / "model.json").read_text())
    (folder / "model.json").write_text(json.dumps({**record, "engine": "mnn"}))
    with pytest.raises(ModelFileError, match="'mnn' engine, not 'ncnn'"):
        NcnnBackend.from_path(folder)


def test_without_the_ncnn_package_the_extra_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "ncnn", None)
    with pytest.raises(BackendError, match=r"pip install 'rtdetr-deploy\[ncnn\]'"):
        NcnnBackend.from_path(NCNN_FOLDER)


def test_committed_ncnn_folder_agrees_with_onnxruntime(tmp_path: Path) -> None:
    pytest.importorskip("ncnn", reason="needs the ncnn runtime: pip install 'rtdetr-deploy[ncnn]'")
    pytest.importorskip("torch")
    from rtdetr_deploy.export.config import ExportConfig
    from rtdetr_deploy.export.pipeline import export

    onnx_file = export(ExportConfig(weights=WEIGHTS, out_dir=tmp_path, sampling="bilinear"), verbose=False).onnx
    images = scenes_and_photos()
    reference = detections_of(onnx_file, "onnxruntime", images)
    got = detections_of(NCNN_FOLDER, "auto", images)
    assert_top_detections_agree(reference, got, top=TOP, score_tol=SCORE_TOL, box_px=BOX_TOL_PX)
    with NcnnBackend.from_path(NCNN_FOLDER) as backend:
        assert backend.description.startswith("ncnn ") and "fp32" in backend.description
    with pytest.raises(BackendError, match="closed"):
        backend.infer({"images": np.zeros((1, 3, 256, 256), np.float32), "orig_target_sizes": np.ones((1, 2))})
