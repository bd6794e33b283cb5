"""Third-party engines written beside the verified ONNX (MNN, LiteRT, RKNN, ncnn), each verified against it.

Each target converts the published FP32 ONNX (``export.mnn``, ``export.litert``, ``export.rknn``) or, for ncnn,
the model itself as two graphs around its query selection (``export.ncnn``), gets the JSON sidecar of the runtime
(``runtime.engine_sidecar``: the ONNX's metadata with the engine's precision), and is run on the verification
images: MNN, LiteRT and ncnn through their runtime backends on this CPU, RKNN in rknn-toolkit2's simulator. Its
detections are judged against ONNX Runtime's on the same inputs (``judge_engine``): FP32 engines by the FP32 rules
(top detections' scores within 1e-3, boxes within 1 px), RKNN FP16 within 0.1 and 4 px, RKNN INT8 by the INT8
rules.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import numpy as np

from ..agreement import compare_detections
from ..artifacts import target_path
from ..errors import ExportError
from ..metadata import ModelMetadata
from ..runtime.engine_sidecar import engine_sidecar_path, write_engine_sidecar
from ..runtime.onnxruntime_backend import read_onnx_metadata
from ..runtime.preprocess import preprocess
from .gates import VARIANT_RULES
from .graphs import run_graph, run_in_chunks
from .onnx_export import OUTPUT_NAMES
from .target_config import TargetsConfig

if TYPE_CHECKING:
    from ..models.rtdetr import RTDETR

__all__ = ["ENGINE_RULES", "EngineRules", "convert_target", "judge_engine", "write_targets"]


@dataclass(frozen=True)
class EngineRules:
    """What an engine's detections must keep of ONNX Runtime's.

    Attributes:
        score: largest score difference of a matched top detection; also the margin of a decided ranking.
        box_px: largest coordinate difference of a matched box, in original-image pixels.
        topn: top detections per image compared.
        min_matched: fraction of the decided top detections the engine must find again.
    """

    score: float
    box_px: float
    topn: int = 20
    min_matched: float = 0.99


# INT8 engines (RKNN w8a8) keep the INT8 variant's score margin and share of decided detections
# (``gates.VARIANT_RULES``), with boxes within 8 px: an INT8 file is judged like any other, never waved through.
ENGINE_RULES = {
    "fp32": EngineRules(score=1e-3, box_px=1.0),
    "fp16": EngineRules(score=0.1, box_px=4.0),
    "int8": EngineRules(score=VARIANT_RULES["int8"].margin, box_px=8.0, min_matched=VARIANT_RULES["int8"].min_matched),
}
MIN_DECIDED = 10


def judge_engine(
    reference: dict[str, np.ndarray], candidate: dict[str, np.ndarray], *, rules: EngineRules
) -> dict[str, object]:
    """Judge an engine's ``labels``/``boxes``/``scores`` ``[N, K, ...]`` against ONNX Runtime's on the same inputs.

    Where at least ``MIN_DECIDED`` top detections are decided (score gaps above ``rules.score``), each must be
    found again (same label, IoU >= 0.9) within ``rules.score`` and ``rules.box_px``; otherwise (untrained weights)
    the top scores are compared rank by rank.

    Returns:
        JSON-ready: ``decided``, ``matched``, ``max_score_delta``, ``max_box_delta_px``, ``max_sorted_score_delta``,
        ``rules``, ``failures``, ``passed``.
    """
    agreement = compare_detections(reference, candidate, topn=rules.topn, margin=rules.score)
    decided = agreement["compared"] >= MIN_DECIDED
    report: dict[str, object] = {
        "decided": agreement["compared"],
        "matched": agreement["matched"],
        "max_score_delta": agreement["max_score_delta"],
        "max_box_delta_px": agreement["max_box_delta_px"],
        "max_sorted_score_delta": agreement["max_sorted_score_delta"],
        "rules": dataclasses.asdict(rules),
    }
    failures = []
    if decided:
        if agreement["matched"] < rules.min_matched:
            failures.append(
                f"finds {agreement['matched']:.1%} of ONNX Runtime's {agreement['compared']} decided top detections"
            )
        if agreement["max_score_delta"] > rules.score:
            failures.append(f"scores differ by {agreement['max_score_delta']:.3g} (> {rules.score:g})")
        if agreement["max_box_delta_px"] > rules.box_px:
            failures.append(f"boxes differ by {agreement['max_box_delta_px']:.3g} px (> {rules.box_px:g})")
    elif agreement["max_sorted_score_delta"] > rules.score:
        failures.append(
            f"nothing decided (untrained weights); top scores differ rank by rank by "
            f"{agreement['max_sorted_score_delta']:.3g} (> {rules.score:g})"
        )
    report["failures"] = failures
    report["passed"] = not failures
    return report


def _run_backend(backend_class: type, path: Path, pixels: np.ndarray, sizes_wh: np.ndarray) -> dict[str, np.ndarray]:
    with backend_class.from_path(path) as backend:
        return run_in_chunks(backend.infer, OUTPUT_NAMES, pixels, sizes_wh, batch=backend.metadata.batch)


def _mnn(config: TargetsConfig, deploy: Path, out: Path, metadata: ModelMetadata, inputs: tuple) -> tuple:
    from ..runtime.mnn_backend import MnnBackend
    from .mnn import convert_mnn

    record = convert_mnn(deploy, out)
    write_engine_sidecar(out, dataclasses.replace(metadata, orig_sizes_dtype="int32"), engine="mnn", conversion=record)
    return _run_backend(MnnBackend, out, *inputs), record, "fp32"


def _litert(config: TargetsConfig, deploy: Path, out: Path, metadata: ModelMetadata, inputs: tuple) -> tuple:
    from ..runtime.litert_backend import LiteRtBackend
    from .litert import convert_tflite

    record = convert_tflite(deploy, out, python=config.tflite_python)
    write_engine_sidecar(out, metadata, engine="litert", conversion=record)
    return _run_backend(LiteRtBackend, out, *inputs), record, "fp32"


def _ncnn_builder(model: RTDETR | None) -> Callable:
    def convert(config: TargetsConfig, deploy: Path, out: Path, metadata: ModelMetadata, inputs: tuple) -> tuple:
        from ..runtime.ncnn_backend import NcnnBackend
        from .ncnn import convert_ncnn

        if model is None:
            raise ValueError("the ncnn target converts the model itself: pass the model")
        python = config.ncnn_python
        record = convert_ncnn(model, out, python=python, metadata=metadata)  # type: ignore[arg-type] - required
        return _run_backend(NcnnBackend, out, *inputs), record, "fp32"

    return convert


def _rknn_builder(calibration: tuple | None) -> Callable:
    def build(config: TargetsConfig, deploy: Path, out: Path, metadata: ModelMetadata, inputs: tuple) -> tuple:
        from .rknn import build_rknn

        outputs, record = build_rknn(
            deploy,
            out,
            python=config.rknn_python,  # type: ignore[arg-type] - TargetsConfig requires it with rknn
            platform=config.rknn,  # type: ignore[arg-type]
            precision=config.rknn_precision,
            input_size=metadata.input_size,
            verify_inputs=inputs,
            calibration=calibration,
        )
        precision = config.rknn_precision
        write_engine_sidecar(
            out, dataclasses.replace(metadata, precision=precision, batch=(1, 1, 1)), engine="rknn", conversion=record
        )
        return outputs, record, "fp16" if precision == "fp16" else "int8"

    return build


def convert_target(
    target: str,
    config: TargetsConfig,
    deploy: Path,
    out: Path,
    inputs: tuple[np.ndarray, np.ndarray],
    *,
    calibration: tuple[np.ndarray, np.ndarray] | None = None,
    model: RTDETR | None = None,
) -> tuple[dict[str, np.ndarray], dict[str, object], str]:
    """Convert ``deploy`` to the engine file ``out`` (``target``: ``mnn``, ``litert``, ``rknn`` or ``ncnn``, which
    converts ``model``, the model ``deploy`` was traced from), write its sidecar and run it on ``inputs``
    (preprocessed ``images``, ``orig_target_sizes``): on this CPU, or for RKNN in the toolkit's simulator.

    Returns:
        The engine's ``labels``/``boxes``/``scores`` on ``inputs``, the conversion record, and the precision the
        engine computes in (``fp32``, ``fp16``, ``int8``).
    """
    converters = {"mnn": _mnn, "litert": _litert, "rknn": _rknn_builder(calibration), "ncnn": _ncnn_builder(model)}
    if target not in converters:
        raise ValueError(f"unknown target {target!r}; choose from {', '.join(converters)}")
    return converters[target](config, deploy, out, read_onnx_metadata(deploy), inputs)


def write_targets(
    config: TargetsConfig,
    deploy: Path,
    staging: Path,
    stem: str,
    images: list[np.ndarray],
    *,
    step: Callable[..., AbstractContextManager[dict[str, str]]],
    calib: Path | None = None,
    calib_images: int = 100,
    model: RTDETR | None = None,
) -> dict[str, dict[str, object]]:
    """Convert the verified ``deploy`` ONNX to every engine ``config`` asks for, into ``staging``, and verify each.

    Args:
        step: the pipeline's step timer (``step(name) -> note``).
        calib: folder of calibration images (RKNN INT8), of which the first ``calib_images`` are used.
        model: the model ``deploy`` was traced from (ncnn converts it, not the ONNX).

    Returns:
        ``{target: report}``; each report names its ``file`` and ``sidecar`` and holds the conversion record and
        ``judge_engine``'s verdict.

    Raises:
        ExportError: a conversion failed, or an engine's detections differ from ONNX Runtime's beyond its rules.
    """
    metadata = read_onnx_metadata(deploy)
    if metadata.batch != (1, 1, 1):
        raise ValueError(
            f"--mnn/--tflite/--rknn/--ncnn export a fixed batch of 1, got the batch range {metadata.batch}"
        )
    inputs = preprocess(images, input_size=metadata.input_size, preprocessing=metadata.preprocessing)
    reference = run_graph(deploy, *inputs, batch=metadata.batch)
    jobs: list[tuple[str, Path, Callable]] = []
    if config.mnn:
        jobs.append(("mnn", target_path(staging, stem, "mnn"), _mnn))
    if config.tflite:
        jobs.append(("litert", target_path(staging, stem, "litert"), _litert))
    if config.rknn is not None:
        calibration = None
        if config.rknn_precision == "int8":
            if calib is None:
                raise ValueError("RKNN INT8 needs calibration images: pass --calib DIR")
            from ..runtime.sources import read_image_folder

            calibration_images = read_image_folder(calib, limit=calib_images, what="calibration images")
            calibration = preprocess(
                calibration_images, input_size=metadata.input_size, preprocessing=metadata.preprocessing
            )
        tag = f"{config.rknn}-{config.rknn_precision}"
        jobs.append((f"rknn-{tag}", target_path(staging, stem, "rknn", tag), _rknn_builder(calibration)))
    if config.ncnn:
        jobs.append(("ncnn", target_path(staging, stem, "ncnn"), _ncnn_builder(model)))
    reports: dict[str, dict[str, object]] = {}
    for name, out, convert in jobs:
        with step(name) as note:
            outputs, record, precision = convert(config, deploy, out, metadata, inputs)
            verdict = judge_engine(reference, outputs, rules=ENGINE_RULES[precision])
            sidecar = engine_sidecar_path(out).relative_to(out.parent).as_posix()
            reports[name] = {"file": out.name, "sidecar": sidecar, **record, **verdict}
            note["detail"] = f"{out.name}: " + ("agrees with ONNX Runtime" if verdict["passed"] else "FAILED")
        if not verdict["passed"]:
            raise ExportError(f"{name} ({out.name}) differs from ONNX Runtime: " + "; ".join(verdict["failures"]))
    return reports
