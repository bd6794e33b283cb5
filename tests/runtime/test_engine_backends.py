"""The LiteRT and RKNN backends' bad inputs, and the RKNN backend's plumbing against a stand-in for
rknn-toolkit-lite2 (which exists only on the boards: the real one is untested here)."""

from __future__ import annotations

import sys
import types
from pathlib import Path

import numpy as np
import pytest

from rtdetr_deploy.errors import BackendError, ModelFileError
from rtdetr_deploy.metadata import ModelMetadata
from rtdetr_deploy.runtime import open_backend
from rtdetr_deploy.runtime.engine_sidecar import write_engine_sidecar
from rtdetr_deploy.runtime.litert_backend import LiteRtBackend, _output_order
from rtdetr_deploy.runtime.rknn_backend import RknnBackend

METADATA = ModelMetadata(preset="tiny", input_size=(32, 64), class_names=("a", "b"), category_ids=(1, 2), topk=4)


def _engine(folder: Path, name: str, engine: str, content: bytes = b"not a model") -> Path:
    path = folder / name
    path.write_bytes(content)
    write_engine_sidecar(path, METADATA, engine=engine, conversion={"platform": "rk3588"})
    return path


def test_output_order_by_name_or_by_onnx2tf_numbering() -> None:
    assert _output_order(["scores", "labels", "boxes"]) == [1, 2, 0]
    assert _output_order(["Identity_1", "Identity_2", "Identity"]) == [2, 0, 1]
    with pytest.raises(ValueError, match="Identity"):
        _output_order(["a", "b", "c"])


def test_litert_bad_inputs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("ai_edge_litert")
    garbage = _engine(tmp_path, "garbage.tflite", "litert")
    with pytest.raises(ModelFileError, match="garbage.tflite"):
        open_backend(garbage)
    with pytest.raises(ValueError, match="runs on 'cpu'"):
        LiteRtBackend.from_path(garbage, device="cuda")
    lonely = tmp_path / "lonely.tflite"
    lonely.write_bytes(b"x")
    with pytest.raises(FileNotFoundError, match="lonely.tflite.json"):
        LiteRtBackend.from_path(lonely)
    with pytest.raises(ValueError, match="not m.onnx"):
        LiteRtBackend.from_path(tmp_path / "m.onnx")
    monkeypatch.setitem(sys.modules, "ai_edge_litert", None)
    with pytest.raises(BackendError, match=r"rtdetr-deploy\[litert\]"):
        LiteRtBackend.from_path(garbage)


def test_rknn_without_the_board_runtime_says_where_it_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    engine = _engine(tmp_path, "m.rk3588-fp16.rknn", "rknn")
    monkeypatch.setitem(sys.modules, "rknnlite", None)
    with pytest.raises(BackendError, match="rknn-toolkit-lite2 on a Rockchip board"):
        open_backend(engine)
    with pytest.raises(ValueError, match="'npu'"):
        RknnBackend.from_path(engine, device="cpu")


class _StubLite:
    """Stands in for ``rknnlite.api.RKNNLite``: records calls, returns the flat outputs the NPU gives."""

    NPU_CORE_AUTO = 0
    calls: list = []

    def load_rknn(self, path: str) -> int:
        self.calls.append(("load_rknn", path))
        return 0 if Path(path).read_bytes() == b"rknn" else -1

    def init_runtime(self, core_mask: int) -> int:
        return 0

    def inference(self, inputs: list, data_format: list) -> list:
        self.calls.append(("inference", [a.dtype for a in inputs], data_format))
        return [np.arange(4, dtype=np.float32), np.ones(16, np.float32), np.linspace(1, 0, 4, dtype=np.float32)]

    def release(self) -> None:
        self.calls.append(("release",))


def test_rknn_backend_plumbing_with_a_stand_in(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    api = types.ModuleType("rknnlite.api")
    api.RKNNLite = _StubLite
    monkeypatch.setitem(sys.modules, "rknnlite", types.ModuleType("rknnlite"))
    monkeypatch.setitem(sys.modules, "rknnlite.api", api)
    with pytest.raises(ModelFileError, match="cannot load"):
        RknnBackend.from_path(_engine(tmp_path, "bad.rknn", "rknn"))
    with RknnBackend.from_path(_engine(tmp_path, "m.rknn", "rknn", b"rknn")) as backend:
        out = backend.infer({"images": np.zeros((1, 3, 32, 64), np.float32), "orig_target_sizes": np.ones((1, 2))})
        assert "rk3588" in backend.description
    assert out["labels"].dtype == np.int64 and out["labels"].tolist() == [[0, 1, 2, 3]]
    assert out["boxes"].shape == (1, 4, 4) and out["scores"].shape == (1, 4)
    assert ("inference", [np.float32, np.int64], ["nchw", "nchw"]) in _StubLite.calls
    assert _StubLite.calls[-1] == ("release",)
