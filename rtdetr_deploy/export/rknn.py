"""The verified ONNX built into an ``.rknn`` (Rockchip NPU) and run in rknn-toolkit2's x86 simulator.

rknn-toolkit2 pins old onnx, numpy and torch, so it is never imported here: ``rknn_driver.py`` (shipped beside
this module) runs in the interpreter the user names (``--rknn-python`` / ``RTDETR_RKNN_PYTHON``) and exchanges
files only: a JSON job, the verification inputs as ``.npz`` (the runtime's preprocessing), for INT8 a list of
calibration inputs as ``.npy`` pairs, and back the ``.rknn``, the simulator's outputs and a JSON result.

Precision: ``fp16`` (the NPU's float type) or ``int8`` (w8a8, calibrated on ``--calib`` images). rknn-toolkit2 2.5.0
has no float type but FP16 (``float_dtype``), also for the ops it places on the CPU, so the discrete sampling
locations are held in FP16 there: a few sampling points in a hundred move to the neighbouring pixel
(docs/targets.md says what that costs).
"""

from __future__ import annotations

import json
import re
import subprocess
import tempfile
from pathlib import Path

import numpy as np

from ..errors import ExportError

__all__ = ["DRIVER", "build_rknn"]

DRIVER = Path(__file__).with_name("rknn_driver.py")
BUILD_TIMEOUT_S = 3600


def _calibration_list(folder: Path, pixels: np.ndarray, sizes_wh: np.ndarray) -> Path:
    """Write each calibration input as ``.npy`` files and the toolkit's dataset list (one line per input set)."""
    lines = []
    for i, (image, size) in enumerate(zip(pixels, sizes_wh, strict=True)):
        image_file, size_file = folder / f"calib_{i}_images.npy", folder / f"calib_{i}_sizes.npy"
        np.save(image_file, image[None])
        np.save(size_file, size[None])
        lines.append(f"{image_file} {size_file}")
    dataset = folder / "dataset.txt"
    dataset.write_text("\n".join(lines) + "\n")
    return dataset


def build_rknn(
    onnx_file: Path,
    rknn_file: Path,
    *,
    python: Path,
    platform: str,
    precision: str,
    input_size: tuple[int, int],
    verify_inputs: tuple[np.ndarray, np.ndarray],
    calibration: tuple[np.ndarray, np.ndarray] | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, object]]:
    """Build ``rknn_file`` from ``onnx_file`` (batch 1) and run ``verify_inputs`` in the simulator.

    Args:
        python: interpreter with rknn-toolkit2.
        platform: RKNN target platform (``rk3588``, ...).
        precision: ``"fp16"`` or ``"int8"``.
        input_size: ``(height, width)`` of the graph.
        verify_inputs: ``images [N, 3, H, W]`` float32 and ``orig_target_sizes [N, 2]`` int64.
        calibration: the same for INT8 calibration (required for ``int8``).

    Returns:
        The simulator's ``labels``, ``boxes``, ``scores`` (``[N, ...]``) and a JSON-ready record of the build.

    Raises:
        ValueError: INT8 without calibration inputs.
        ExportError: the interpreter lacks rknn-toolkit2, or a toolkit step failed (named).
    """
    if precision == "int8" and calibration is None:
        raise ValueError("RKNN INT8 needs calibration images: pass --calib DIR")
    with tempfile.TemporaryDirectory(prefix="rtdetr-rknn-") as work_dir:
        work = Path(work_dir)
        np.savez(work / "verify.npz", images=verify_inputs[0], orig_target_sizes=verify_inputs[1])
        job = {
            # The driver runs in the work folder: relative paths would point into it.
            "onnx": str(Path(onnx_file).resolve()),
            "rknn": str(Path(rknn_file).resolve()),
            "platform": platform,
            "precision": precision,
            "input_size": list(input_size),
            "batch": 1,
            "verify_inputs": str(work / "verify.npz"),
            "outputs": str(work / "outputs.npz"),
            "result": str(work / "result.json"),
        }
        if calibration is not None and precision == "int8":
            job["dataset"] = str(_calibration_list(work, *calibration))
        (work / "job.json").write_text(json.dumps(job))
        try:
            done = subprocess.run(
                [str(python), str(DRIVER), str(work / "job.json")],
                capture_output=True,
                text=True,
                timeout=BUILD_TIMEOUT_S,
                cwd=work,
            )
        except subprocess.TimeoutExpired:
            raise ExportError(f"rknn-toolkit2 did not finish within {BUILD_TIMEOUT_S} s") from None
        result = _read_result(work / "result.json", done, python)
        with np.load(work / "outputs.npz") as outputs:
            simulated = {name: outputs[name] for name in ("labels", "boxes", "scores")}
    record = {
        "rknn_toolkit2": result.get("toolkit"),
        "platform": platform,
        "precision": precision,
        "verified_in": "rknn-toolkit2 x86 simulator",
        "simulator_s_per_image": result.get("simulator_s_per_batch"),
    }
    return simulated, record


def _read_result(path: Path, done: subprocess.CompletedProcess, python: Path) -> dict:
    text = done.stdout + done.stderr
    if "No module named 'rknn'" in text or "No module named 'numpy'" in text:
        raise ExportError(f"rknn-toolkit2 is not installed in {python}: pip install rknn-toolkit2 there")
    if not path.is_file():
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        raised = [line for line in lines if re.match(r"^[A-Za-z_][\w.]*(Error|Exception)\b", line)]
        detail = raised[-1][:400] if raised else " / ".join(lines[-3:]) or "no output"
        raise ExportError(f"the RKNN driver failed (exit {done.returncode}): {detail}")
    result = json.loads(path.read_text())
    if not result.get("ok"):
        errors = [line.strip() for line in text.splitlines() if line.lstrip().startswith(("E ", "E\x1b"))]
        detail = f": {errors[-1][:300]}" if errors else ""
        raise ExportError(f"rknn-toolkit2 {result.get('step')} failed{detail}")
    return result
