"""The OpenVINO backend against ONNX Runtime on the tiny model: same detections, its options, every bad input.

The IR here is made with OpenVINO's own API from the shared tiny ONNX (``convert_model``, the ONNX's metadata
written into ``rt_info``), independently of the exporter (``tests/export/test_openvino.py`` covers that one).
"""

from __future__ import annotations

import dataclasses
import json
import shutil
import subprocess
import sys
import textwrap
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest

from rtdetr_deploy.cli.infer import main
from rtdetr_deploy.errors import ModelFileError
from rtdetr_deploy.metadata import ModelMetadata
from rtdetr_deploy.runtime import Backend, OpenVinoBackend, OrtBackend, open_backend
from rtdetr_deploy.runtime.onnxruntime_backend import read_onnx_metadata
from rtdetr_deploy.runtime.openvino_backend import RT_INFO_SECTION, read_openvino_metadata

# The verification's tolerances (export.verify.Tolerances): scores, and boxes as a fraction of the larger side.
SCORE_TOL, BOX_FRACTION = 1e-4, 1e-4


def _cpu_has_bf16() -> bool:
    try:
        import openvino
    except ImportError:
        return False
    return "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")


def _write_ir(onnx_file: Path, xml: Path, metadata: ModelMetadata | None) -> Path:
    """``onnx_file`` converted by OpenVINO, with ``metadata`` (None: none) in ``rt_info``, weights kept FP32."""
    openvino = pytest.importorskip("openvino")
    model = openvino.convert_model(str(onnx_file))
    rt_info = model.get_rt_info()
    if "framework" in rt_info.keys():  # the ONNX frontend's copy of metadata_props
        del rt_info["framework"]
    for key, value in (metadata.to_props() if metadata is not None else {}).items():
        model.set_rt_info(value, [RT_INFO_SECTION, key])
    openvino.save_model(model, str(xml), compress_to_fp16=False)
    return xml


@pytest.fixture(scope="module")
def tiny_ir(tiny_onnx: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The shared tiny ONNX as an FP32 IR with its metadata."""
    folder = tmp_path_factory.mktemp("tiny_ir")
    return _write_ir(tiny_onnx, folder / "tiny.openvino-fp32.xml", read_onnx_metadata(tiny_onnx))


def _feed(images: list[np.ndarray], backend: Backend) -> dict[str, np.ndarray]:
    from rtdetr_deploy.runtime.preprocess import preprocess

    pixels, sizes = preprocess(
        images, input_size=backend.metadata.input_size, preprocessing=backend.metadata.preprocessing
    )
    return {"images": pixels, "orig_target_sizes": sizes}


def test_fp32_ir_computes_what_onnxruntime_computes(tiny_ir: Path, tiny_onnx: Path, real_images: list) -> None:
    with OpenVinoBackend.from_path(tiny_ir) as ov_backend, OrtBackend.from_path(tiny_onnx) as ort_backend:
        assert isinstance(ov_backend, Backend) and ov_backend.name == "openvino"
        # Never OpenVINO's default, which is bf16 on a CPU that has it.
        assert ov_backend.inference_precision == "f32" and "f32 inference precision" in ov_backend.description
        assert ov_backend.metadata == ort_backend.metadata
        assert [(s.name, s.shape, s.dtype) for s in ov_backend.input_specs] == [
            (s.name, s.shape, s.dtype) for s in ort_backend.input_specs
        ]
        assert [s.name for s in ov_backend.output_specs] == ["labels", "boxes", "scores"]
        feed = _feed(real_images, ov_backend)
        got, want = ov_backend.infer(feed), ort_backend.infer(feed)
    assert {name: got[name].dtype for name in got} == {name: want[name].dtype for name in want}
    score_delta = float(np.abs(got["scores"] - want["scores"]).max())
    box_delta = float(np.abs(got["boxes"] - want["boxes"]).max())
    largest_side = max(max(image.shape[:2]) for image in real_images)
    print(f"OpenVINO FP32 vs ONNX Runtime: max score delta {score_delta:.2e}, max box delta {box_delta:.2e} px")
    assert score_delta <= SCORE_TOL and box_delta <= BOX_FRACTION * largest_side
    decided = np.abs(np.diff(want["scores"], axis=1)) > SCORE_TOL  # ranks whose order is not a near-tie
    assert np.array_equal(got["labels"][:, 1:][decided], want["labels"][:, 1:][decided])


def test_the_suffix_opens_the_openvino_backend(tiny_ir: Path) -> None:
    with open_backend(tiny_ir) as backend:
        assert isinstance(backend, OpenVinoBackend)
    assert read_openvino_metadata(tiny_ir).precision == "fp32"


def test_threads_and_streams_reach_openvino(tiny_ir: Path) -> None:
    # OpenVINO's own report of the compiled model (it never runs more streams than threads).
    with OpenVinoBackend.from_path(tiny_ir, device="cpu", threads=1) as backend:
        assert (backend.threads, backend.streams) == (1, 1) and "1 stream(s), 1 thread(s)" in backend.description
    with OpenVinoBackend.from_path(tiny_ir, threads=2, streams=2) as backend:
        assert (backend.threads, backend.streams) == (2, 2)
    for bad in ({"threads": 0}, {"streams": -1}, {"threads": True}):
        with pytest.raises(ValueError, match="must be a positive integer"):
            OpenVinoBackend.from_path(tiny_ir, **bad)


@pytest.mark.skipif(not _cpu_has_bf16(), reason="this CPU has no BF16")
def test_a_bf16_ir_runs_in_bf16(tiny_ir: Path, tiny_onnx: Path, tmp_path: Path, real_images: list) -> None:
    metadata = dataclasses.replace(read_onnx_metadata(tiny_onnx), precision="bf16")
    bf16_ir = _write_ir(tiny_onnx, tmp_path / "tiny.openvino-bf16.xml", metadata)
    with OpenVinoBackend.from_path(bf16_ir) as bf16, OpenVinoBackend.from_path(tiny_ir) as fp32:
        assert bf16.inference_precision == "bf16"
        feed = _feed(real_images, fp32)
        delta = np.abs(bf16.infer(feed)["scores"] - fp32.infer(feed)["scores"]).max()
    assert 1e-5 < delta < 0.05  # rounded to BF16 (8 mantissa bits), not to FP32


def test_bad_files_and_devices(tiny_ir: Path, tiny_onnx: Path, tmp_path: Path) -> None:
    lonely = tmp_path / "lonely.xml"
    lonely.write_text(tiny_ir.read_text())
    with pytest.raises(FileNotFoundError, match=r"weights of lonely\.xml not found"):
        OpenVinoBackend.from_path(lonely)
    with pytest.raises(FileNotFoundError, match="model not found"):
        OpenVinoBackend.from_path(tmp_path / "nope.xml")
    garbage = tmp_path / "garbage.xml"
    garbage.write_text("<net>not an IR")
    garbage.with_suffix(".bin").write_bytes(b"")
    with pytest.raises(ModelFileError, match="not a valid OpenVINO IR"):
        OpenVinoBackend.from_path(garbage)
    bare = _write_ir(tiny_onnx, tmp_path / "bare.xml", None)
    with pytest.raises(ValueError, match="no rtdetr-deploy metadata"):
        OpenVinoBackend.from_path(bare)
    with pytest.raises(ValueError, match="unknown device 'cuda:0' for the openvino backend"):
        OpenVinoBackend.from_path(tiny_ir, device="cuda:0")
    import openvino

    if "NPU" not in openvino.Core().available_devices:
        with pytest.raises(ValueError, match="OpenVINO device NPU is not available here"):
            OpenVinoBackend.from_path(tiny_ir, device="npu")


def _match(ort: list[dict], ov: list[dict], *, box_tol: float) -> float:
    """Largest score difference after pairing each ONNX Runtime detection with the closest OpenVINO one."""
    assert len(ort) == len(ov) and ort
    worst = 0.0
    for entry in ort:
        same = [o for o in ov if o["image_id"] == entry["image_id"] and o["category_id"] == entry["category_id"]]
        closest = min(same, key=lambda o: max(abs(a - b) for a, b in zip(o["bbox"], entry["bbox"], strict=True)))
        assert max(abs(a - b) for a, b in zip(closest["bbox"], entry["bbox"], strict=True)) <= box_tol
        worst = max(worst, abs(closest["score"] - entry["score"]))
    return worst


def test_infer_cli_on_a_video_gives_the_onnx_detections(
    tiny_ir: Path, tiny_onnx: Path, video_factory: Callable[..., Path], tmp_path: Path
) -> None:
    clip = video_factory("clip.mp4", frames=6, size=(160, 96))
    results = {}
    for model in (tiny_onnx, tiny_ir):
        out = tmp_path / f"{model.suffix[1:]}.json"
        assert main([str(clip), "--model", str(model), "--json", str(out), "--conf", "0.3"]) == 0
        results[model.suffix] = json.loads(out.read_text())
    # JSON rounds boxes to 1e-3 px and scores to 1e-5.
    worst = _match(results[".onnx"], results[".xml"], box_tol=BOX_FRACTION * 160 + 1e-3)
    assert worst <= SCORE_TOL + 1e-5


def _error_line(argv: list[str], capsys: pytest.CaptureFixture[str]) -> tuple[int, str]:
    code = main(argv)
    lines = capsys.readouterr().err.strip().splitlines()
    assert len(lines) == 1, lines
    return code, lines[0]


def test_bad_input_through_the_cli_is_one_line_and_exit_2(
    tiny_ir: Path, tiny_onnx: Path, tmp_path: Path, real_image_paths: list[Path], capsys: pytest.CaptureFixture[str]
) -> None:
    image = str(real_image_paths[0])
    lonely = tmp_path / "lonely.xml"
    lonely.write_text(tiny_ir.read_text())
    bare = _write_ir(tiny_onnx, tmp_path / "bare.xml", None)
    cases = [
        ([image, "--model", str(lonely)], "weights of lonely.xml not found"),
        ([image, "--model", str(bare)], "no rtdetr-deploy metadata"),
        ([image, "--model", str(tiny_ir), "--device", "cuda:0"], "unknown device 'cuda:0' for the openvino backend"),
        ([image, "--model", str(tiny_ir), "--device", "tpu"], "unknown device 'tpu'"),
    ]
    for argv, message in cases:
        code, line = _error_line(argv, capsys)
        assert code == 2 and line.startswith("rtdetr-infer: error: ") and message in line, line


_BLOCK = """
import importlib.abc, importlib.util, sys

BLOCKED = ("torch", "torchvision", "openvino", "nncf")

class Block(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in BLOCKED:
            raise ImportError(f"{name} is blocked", name=name)
        return None

sys.meta_path.insert(0, Block())
real_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name.split(".")[0] in BLOCKED else real_find_spec(name, *a)
"""


def _run_blocked(code: str) -> subprocess.CompletedProcess:
    return subprocess.run(
        [sys.executable, "-c", _BLOCK + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def test_runtime_imports_without_openvino_and_an_ir_says_what_to_install(tmp_path: Path, real_image_paths) -> None:
    ir = tmp_path / "model.xml"
    ir.write_text("<net/>")  # never read: OpenVINO is missing
    ir.with_suffix(".bin").write_bytes(b"")
    proc = _run_blocked(
        f"""
        import pkgutil, rtdetr_deploy.runtime as runtime
        for module in pkgutil.iter_modules(runtime.__path__):
            __import__(f"rtdetr_deploy.runtime.{{module.name}}")
        assert not any(name.split(".")[0] in BLOCKED for name in sys.modules), "a blocked package got imported"
        from rtdetr_deploy.cli.infer import main
        raise SystemExit(main([{str(real_image_paths[0])!r}, "--model", {str(ir)!r}]))
        """
    )
    assert proc.returncode == 1, proc.stderr
    assert proc.stderr.strip() == (
        "rtdetr-infer: error: the openvino backend needs OpenVINO: pip install 'rtdetr-deploy[openvino]'"
    )


def test_bench_runs_an_ir_and_the_precisions_beside_it(
    tiny_ir: Path, tiny_onnx: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from rtdetr_deploy.cli.bench import main as bench

    folder = tmp_path / "irs"
    folder.mkdir()
    fp32 = folder / tiny_ir.name
    shutil.copy(tiny_ir, fp32)
    shutil.copy(tiny_ir.with_suffix(".bin"), fp32.with_suffix(".bin"))
    precisions = ["fp32"]
    if _cpu_has_bf16():
        metadata = dataclasses.replace(read_onnx_metadata(tiny_onnx), precision="bf16")
        _write_ir(tiny_onnx, folder / "tiny.openvino-bf16.xml", metadata)
        precisions.append("bf16")
    report = tmp_path / "bench.json"
    argv = [str(fp32), "--precision", ",".join(precisions), "--iters", "2", "--warmup", "1", "--no-peak"]
    assert bench([*argv, "--json", str(report)]) == 0, capsys.readouterr().err
    results = json.loads(report.read_text())["results"]
    assert [(r["backend"], r["precision"], Path(r["file"]).name) for r in results] == [
        ("openvino", p, f"tiny.openvino-{p}.xml") for p in precisions
    ]
    capsys.readouterr()
    assert bench([str(fp32), "--precision", "int8"]) == 2
    line = capsys.readouterr().err.strip()
    assert "no int8 model beside tiny.openvino-fp32.xml (looked for tiny.openvino-int8.xml)" in line
    assert "rtdetr-export WEIGHTS --openvino int8 --calib DIR" in line
    assert bench([str(fp32), "--backend", "onnxruntime"]) == 2
    assert "is an OpenVINO IR: it runs on the openvino backend only" in capsys.readouterr().err
