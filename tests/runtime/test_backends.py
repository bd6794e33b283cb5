"""Backends behind one protocol: the suffix map, ONNX Runtime, PyTorch, and every wrong model file."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtdetr_deploy.errors import BackendError, CheckpointError
from rtdetr_deploy.runtime import Backend, OrtBackend, TorchBackend, TrtBackend, open_backend
from rtdetr_deploy.runtime.config import RuntimeConfig, parse_device
from rtdetr_deploy.runtime.registry import backend_class, backend_name_for


def test_each_suffix_opens_with_its_backend(tiny_onnx: Path, tiny_checkpoint: Path, tmp_path: Path) -> None:
    with open_backend(tiny_onnx) as backend:
        assert isinstance(backend, OrtBackend) and backend.name == "onnxruntime"
    with open_backend(tiny_checkpoint) as backend:
        assert isinstance(backend, TorchBackend) and backend.name == "torch"
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"opaque")
    # The TensorRT backend answers for .engine files: it refuses the CPU before reading anything.
    with pytest.raises(ValueError, match="TensorRT engines run on CUDA GPUs only"):
        open_backend(engine, device="cpu")
    assert backend_class(backend_name_for(engine)) is TrtBackend


def _available_backends() -> list[str]:
    names = ["onnxruntime"]
    try:
        import torch  # noqa: F401

        names.append("torch")
    except ImportError:
        pass
    return names


@pytest.mark.parametrize("name", _available_backends())
def test_backend_contract(name: str, tiny_onnx: Path, tiny_checkpoint: Path) -> None:
    """One contract for every backend available here: specs, metadata and the deploy outputs."""
    path = tiny_onnx if name == "onnxruntime" else tiny_checkpoint
    with open_backend(path, backend=name) as backend:
        assert isinstance(backend, Backend)
        assert backend.metadata.class_names == ("circle", "square", "triangle")
        assert backend.metadata.input_size == (320, 320)
        inputs = {spec.name: spec for spec in backend.input_specs}
        assert set(inputs) == {"images", "orig_target_sizes"}
        assert inputs["images"].shape[1:] == (3, 320, 320)
        assert {spec.name for spec in backend.output_specs} >= {"labels", "boxes", "scores"}
        assert name in backend.description or (name == "onnxruntime" and "onnxruntime" in backend.description)
        feed = {
            "images": np.random.default_rng(0).random((2, 3, 320, 320), dtype=np.float32),
            "orig_target_sizes": np.array([[640, 480], [320, 320]], inputs["orig_target_sizes"].dtype),
        }
        out = backend.infer(feed)
        k = backend.metadata.topk
        assert out["labels"].shape == (2, k) and out["labels"].dtype == np.int64
        assert out["boxes"].shape == (2, k, 4) and out["boxes"].dtype == np.float32
        assert out["scores"].shape == (2, k) and (np.diff(out["scores"], axis=1) <= 1e-7).all()


def test_onnxruntime_reports_its_provider(tiny_onnx: Path) -> None:
    with OrtBackend.from_path(tiny_onnx) as backend:
        assert backend.providers[0] == "CPUExecutionProvider"
        assert "CPUExecutionProvider" in backend.description


def test_onnxruntime_cuda_without_a_cuda_build_is_one_clear_error(tiny_onnx: Path) -> None:
    import onnxruntime

    if "CUDAExecutionProvider" in onnxruntime.get_available_providers():
        pytest.skip("this onnxruntime has CUDA")
    with pytest.raises(BackendError, match="onnxruntime-gpu"):
        OrtBackend.from_path(tiny_onnx, device="cuda:0")


def test_missing_model(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="model not found"):
        open_backend(tmp_path / "nope.onnx")


def test_unknown_suffix_and_folder(tmp_path: Path) -> None:
    photo = tmp_path / "model.jpg"
    photo.write_bytes(b"\xff\xd8")
    with pytest.raises(ValueError, match=r"expected one of \.onnx, \.engine, \.pth"):
        open_backend(photo)
    with pytest.raises(ValueError, match="folder"):
        open_backend(tmp_path)
    with pytest.raises(ValueError, match="did you mean 'onnxruntime'"):
        open_backend(photo, backend="onnxrt")


def test_wrong_kind_of_onnx_file(tmp_path: Path) -> None:
    text = tmp_path / "model.onnx"
    text.write_text("this is not a protobuf\n" * 10)
    with pytest.raises(BackendError, match="not a valid ONNX model"):
        open_backend(text)


def test_onnx_without_metadata(tiny_onnx: Path, tmp_path: Path) -> None:
    import onnx

    model = onnx.load(str(tiny_onnx))
    del model.metadata_props[:]
    bare = tmp_path / "bare.onnx"
    onnx.save(model, str(bare))
    with pytest.raises(ValueError, match="lacks 'preset'.*rtdetr-export"):
        open_backend(bare)


def test_wrong_kind_of_checkpoint(tmp_path: Path, tiny_onnx: Path) -> None:
    pytest.importorskip("torch")
    fake = tmp_path / "weights.pth"
    fake.write_bytes(tiny_onnx.read_bytes())
    with pytest.raises(CheckpointError):
        open_backend(fake)


def test_engine_on_cpu_is_refused_before_anything_is_loaded(tmp_path: Path) -> None:
    engine = tmp_path / "model.engine"
    engine.write_bytes(b"\0" * 16)
    with pytest.raises(ValueError, match="CUDA GPUs only"):
        open_backend(engine, device="cpu")


def test_torch_backend_from_module(tiny_checkpoint: Path) -> None:
    pytest.importorskip("torch")
    from rtdetr_deploy import load_model

    model = load_model(tiny_checkpoint)
    with TorchBackend.from_module(model, topk=7) as backend:
        assert backend.metadata.topk == 7 and backend.metadata.precision == "fp32"
        out = backend.infer(
            {"images": np.zeros((1, 3, 320, 320), np.float32), "orig_target_sizes": np.array([[10, 10]])}
        )
        assert out["labels"].shape == (1, 7)


@pytest.mark.parametrize(
    ("device", "expected"),
    [("cpu", ("cpu", 0)), ("cuda", ("cuda", 0)), ("cuda:1", ("cuda", 1)), (" CUDA:0", ("cuda", 0))],
)
def test_parse_device(device: str, expected: tuple[str, int]) -> None:
    assert parse_device(device) == expected


@pytest.mark.parametrize("device", ["gpu:0", "cpu:0", "cuda:x", "mps"])
def test_bad_device(device: str) -> None:
    with pytest.raises(ValueError, match="unknown device"):
        parse_device(device)


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"conf": 1.5}, "conf"),
        ({"batch": 0}, "batch"),
        ({"backend": "tflite"}, "backend"),
        ({"device": "tpu"}, "device"),
        ({"classes": ()}, "classes"),
        ({"source": " "}, "source"),
    ],
)
def test_runtime_config_validation(kwargs: dict, message: str) -> None:
    values = {"source": "x.jpg", **kwargs}
    with pytest.raises(ValueError, match=message):
        RuntimeConfig(**values)


@pytest.mark.gpu
def test_torch_backend_fp16_on_cuda_agrees_with_cpu(tiny_checkpoint: Path) -> None:
    pytest.importorskip("torch")
    feed = {
        "images": np.random.default_rng(1).random((2, 3, 320, 320), dtype=np.float32),
        "orig_target_sizes": np.array([[640, 480], [320, 320]]),
    }
    with (
        TorchBackend.from_path(tiny_checkpoint, device="cuda:0") as gpu,
        TorchBackend.from_path(tiny_checkpoint) as cpu,
    ):
        assert gpu.metadata.precision == "fp16" and "fp16 autocast" in gpu.description
        fast, ref = gpu.infer(feed), cpu.infer(feed)
    assert fast["boxes"].dtype == np.float32 and fast["labels"].dtype == np.int64
    # FP16 reorders near-tied scores; the sorted score lists and the best detection must still agree.
    np.testing.assert_allclose(fast["scores"], ref["scores"], atol=1e-2)
    np.testing.assert_allclose(fast["boxes"][:, 0], ref["boxes"][:, 0], atol=2.0)
