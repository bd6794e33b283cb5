"""The backend registry: suffix and name -> class, one default per suffix, and the rules a new entry must keep."""

from __future__ import annotations

from pathlib import Path

import pytest

from rtdetr_deploy.artifacts import MODEL_SUFFIXES
from rtdetr_deploy.runtime import OpenVinoBackend, OrtBackend, TorchBackend, TrtBackend
from rtdetr_deploy.runtime.config import RuntimeConfig
from rtdetr_deploy.runtime.litert_backend import LiteRtBackend
from rtdetr_deploy.runtime.mnn_backend import MnnBackend
from rtdetr_deploy.runtime.ncnn_backend import NcnnBackend
from rtdetr_deploy.runtime.registry import (
    BACKEND_CHOICES,
    REGISTRY,
    BackendEntry,
    _checked,
    backend_class,
    backend_name_for,
    check_backend_name,
)
from rtdetr_deploy.runtime.rknn_backend import RknnBackend


def test_each_model_suffix_has_its_default_backend(tmp_path: Path) -> None:
    expected = {
        "a.onnx": OrtBackend,
        "a.ENGINE": TrtBackend,
        "a.pth": TorchBackend,
        "a.safetensors": TorchBackend,
        "a.openvino-int8.xml": OpenVinoBackend,
        "a.mnn": MnnBackend,
        "a.tflite": LiteRtBackend,
        "a.rk3588-fp16.rknn": RknnBackend,
        "a.ncnn": NcnnBackend,
    }
    for name, cls in expected.items():
        assert backend_class(backend_name_for(tmp_path / name)) is cls, name
    folder = tmp_path / "hf"
    folder.mkdir()
    (folder / "config.json").write_text("{}")
    assert backend_name_for(folder) == "torch"
    # Every model-file suffix the file-name rules know is opened by some backend.
    assert {s for entry in REGISTRY for s in entry.suffixes} == set(MODEL_SUFFIXES)


def test_names_are_checked_in_one_place() -> None:
    names = ("onnxruntime", "tensorrt", "torch", "openvino", "opencv", "mnn", "litert", "rknn", "ncnn")
    assert BACKEND_CHOICES == ("auto", *names)
    assert check_backend_name("openvino") == "openvino"
    with pytest.raises(ValueError, match="did you mean 'tensorrt'"):
        check_backend_name("tensorrtt")
    with pytest.raises(ValueError, match="did you mean 'tensorrt'"):
        RuntimeConfig(source="x.jpg", backend="tensorrtt")
    with pytest.raises(ValueError, match="names no backend"):
        backend_class("auto")


def test_a_second_backend_for_a_suffix_is_chosen_by_name_only() -> None:
    second = BackendEntry("other", OrtBackend, (".onnx",), "onnxruntime", None, default=False)
    entries = _checked((*REGISTRY, second))
    defaults = [e.name for e in entries if e.default and ".onnx" in e.suffixes]
    assert defaults == ["onnxruntime"]


def test_registry_rules_reject_ambiguous_entries() -> None:
    twin = BackendEntry("onnxruntime", OrtBackend, (".onnx",), "onnxruntime", None, default=False)
    with pytest.raises(ValueError, match="unique"):
        _checked((*REGISTRY, twin))
    rival = BackendEntry("rival", OrtBackend, (".onnx",), "onnxruntime", None)
    with pytest.raises(ValueError, match="exactly one default"):
        _checked((*REGISTRY, rival))
    with pytest.raises(ValueError, match="model-file suffixes"):
        BackendEntry("odd", OrtBackend, (".jpg",), "onnxruntime", None)


def test_install_hint_names_the_extra() -> None:
    by_name = {entry.name: entry for entry in REGISTRY}
    assert by_name["openvino"].install == "pip install 'rtdetr-deploy[openvino]'"
    assert by_name["tensorrt"].install == "pip install 'rtdetr-deploy[trt]'"
    assert "core dependency" in by_name["onnxruntime"].install
