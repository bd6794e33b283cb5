"""The export pipeline: load -> trace -> check -> simplify -> verify -> precision -> build.

Every file is produced in a staging folder inside the output folder and moved into place only once the
whole export has succeeded, so a failed or interrupted export leaves the folder as it was.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

from .. import __version__
from ..agreement import compare_detections
from ..errors import EngineBuildError, ExportError
from ..metadata import ModelMetadata
from ..models.checkpoint import load_model
from .config import ExportConfig
from .onnx_export import export_onnx, export_raw_onnx
from .verify import Tolerances, run_deploy_graph, sampling_swap_report, to_input, verification_images, verify_onnx

__all__ = ["ExportResult", "export"]

# The FP16 graph must keep this fraction of the FP32 graph's top detections (same label, IoU >= 0.9).
FP16_MIN_MATCHED = 0.99


@dataclass
class ExportResult:
    """What an export produced: final paths (in ``out_dir``), the verification report and step timings."""

    onnx: Path
    report_path: Path
    report: dict[str, object]
    files: list[Path] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)


class _Steps:
    """Prints each step as it finishes, with its duration; keeps the durations for the report."""

    def __init__(self, *, verbose: bool) -> None:
        self.verbose = verbose
        self.timings: dict[str, float] = {}

    @contextmanager
    def step(self, name: str, detail: str = "") -> Iterator[dict[str, str]]:
        note = {"detail": detail}
        if self.verbose and sys.stdout.isatty():
            print(f"  {name:<9} ...", end="\r", flush=True)
        start = time.perf_counter()
        yield note
        self.timings[name] = time.perf_counter() - start
        if self.verbose:
            print(f"  {name:<9} {self.timings[name]:6.1f} s  {note['detail']}", flush=True)


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def _check_writable(folder: Path) -> None:
    try:
        folder.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=folder):
            pass
    except OSError as exc:
        raise ValueError(f"output folder is not writable: {folder} ({exc.strerror})") from None


def export(config: ExportConfig, *, verbose: bool = True) -> ExportResult:
    """Run the whole export described by ``config``.

    Raises:
        FileNotFoundError, ValueError, CheckpointError: bad input (nothing is written).
        ExportError: the graph failed its checks or verification (nothing is written).
        EngineBuildError: TensorRT is missing or failed; the verified ONNX files are kept.
    """
    _check_writable(config.out_dir)
    if config.verify_images is not None and not config.verify_images.is_dir():
        raise FileNotFoundError(f"verification image folder not found: {config.verify_images}")
    steps = _Steps(verbose=verbose)
    stem = config.weights.stem
    with tempfile.TemporaryDirectory(dir=config.out_dir, prefix=".export-") as staging_dir:
        staging = Path(staging_dir)
        with steps.step("load") as note:
            model = load_model(config.weights, preset=config.preset, sampling=config.sampling)
            info = model.info
            input_size = config.imgsz or info.input_size
            model.set_eval_size(input_size)
            metadata = ModelMetadata(
                preset=model.config.name,
                input_size=input_size,
                class_names=info.class_names,
                category_ids=info.category_ids,
                sampling=config.sampling,
                topk=min(config.topk, model.config.num_queries * info.num_classes),
                batch=config.batch,
                package_version=__version__,
                source_sha256=_sha256(config.weights),
                opset=config.opset,
            )
            note["detail"] = (
                f"{metadata.preset}, {info.num_classes} classes, {config.sampling} sampling, "
                f"{input_size[0]}x{input_size[1]}"
            )
        with steps.step("trace") as note:
            onnx_path, census = export_onnx(
                model,
                staging / f"{stem}.onnx",
                metadata=metadata,
                simplify=config.simplify,
                keep_unsimplified=config.keep_unsimplified,
            )
            raw_path = export_raw_onnx(model, staging / "raw.onnx", input_size=input_size, opset=config.opset)
            note["detail"] = f"{sum(census.values())} nodes, GridSample: {census.get('GridSample', 0)}"
        with steps.step("verify") as note:
            images = verification_images(config.verify_images)
            report = verify_onnx(
                onnx_path,
                raw_path,
                model,
                images,
                input_size=input_size,
                topk=metadata.topk,
                batch=metadata.batch,
                tolerances=Tolerances(),
            )
            raw_path.unlink()
            report["op_census"] = census
            report["swap"] = sampling_swap_report(model, images, input_size=input_size)
            note["detail"] = (
                f"{'passed' if report['passed'] else 'FAILED'}: {report['min_matched']:.1%} of top detections agree, "
                f"max score delta {report['max_score_delta']:.1e}"
            )
        if not report["passed"]:
            raise ExportError("verification failed: " + "; ".join(report["failures"]))  # type: ignore[arg-type]
        for precision, target in _precision_variants(config):
            with steps.step(precision) as note:
                variant = _write_precision_variant(onnx_path, staging, precision, target, config)
                agreement = _variant_agreement(onnx_path, variant, images, metadata)
                report[variant.stem.split(".", 1)[1]] = {"file": variant.name, **agreement}
                note["detail"] = f"{variant.name}: {agreement['matched']:.1%} of FP32's top detections kept"
            if precision == "fp16" and agreement["matched"] < FP16_MIN_MATCHED:
                raise ExportError(
                    f"FP16 model keeps only {agreement['matched']:.1%} of FP32's top detections "
                    f"(< {FP16_MIN_MATCHED:.0%})"
                )
        report_path = staging / f"{stem}.verify.json"
        report["metadata"] = metadata.to_props()
        report["timings_s"] = steps.timings
        report_path.write_text(json.dumps(report, indent=2))
        files = _publish(staging, config.out_dir)
    result = ExportResult(
        onnx=config.out_dir / onnx_path.name,
        report_path=config.out_dir / report_path.name,
        report=report,
        files=files,
        timings=steps.timings,
    )
    if config.trt is not None:
        with steps.step("build") as note:
            result.files += _build_engine(config, result, stem)
            note["detail"] = result.files[-2].name
    return result


def _precision_variants(config: ExportConfig) -> list[tuple[str, str]]:
    """``(precision, int8 target)`` of each precision ONNX the config asks for, beside the FP32 one."""
    variants = []
    if config.trt == "fp16":
        variants.append(("fp16", ""))
    if config.trt == "int8":
        variants.append(("int8", "tensorrt"))
    if config.int8_cpu:
        variants.append(("int8", "onnxruntime"))
    return variants


def _write_precision_variant(onnx_path: Path, staging: Path, precision: str, target: str, config: ExportConfig) -> Path:
    from .precision import convert_fp16
    from .quantize import quantize_int8

    if precision == "fp16":
        return convert_fp16(onnx_path, staging / f"{onnx_path.stem}.fp16.onnx")
    suffix = "int8" if target == "tensorrt" else "int8-cpu"
    return quantize_int8(onnx_path, staging / f"{onnx_path.stem}.{suffix}.onnx", config.calib, target=target)


def _variant_agreement(fp32_path: Path, variant_path: Path, images: list, metadata: ModelMetadata) -> dict[str, object]:
    """How many of the FP32 graph's top detections the precision variant keeps, in ONNX Runtime on CPU."""
    pixels, sizes = to_input(images, metadata.input_size)
    reference = run_deploy_graph(fp32_path, pixels, sizes, metadata.batch)
    candidate = run_deploy_graph(variant_path, pixels, sizes, metadata.batch)
    agreement = compare_detections(reference, candidate, topn=min(100, metadata.topk))
    return {
        "matched": agreement["matched"],
        "min_image_matched": agreement["min_image_matched"],
        "max_score_delta": agreement["max_score_delta"],
        "max_box_delta_px": agreement["max_box_delta_px"],
        "runs_in_onnxruntime": True,
    }


def _build_engine(config: ExportConfig, result: ExportResult, stem: str) -> list[Path]:
    """Build the TensorRT engine from the verified precision ONNX; the ONNX files stay whatever happens."""
    from .tensorrt import build_engine

    source = {"fp32": result.onnx, "fp16": result.onnx.with_name(f"{stem}.fp16.onnx")}.get(
        config.trt or "", result.onnx.with_name(f"{stem}.int8.onnx")
    )
    engine_path = config.out_dir / f"{stem}.{config.trt}.engine"
    try:
        build_engine(
            source,
            engine_path,
            batch=config.batch,
            workspace_gib=config.workspace_gib,
            timing_cache=config.timing_cache,
        )
    except EngineBuildError as exc:
        raise EngineBuildError(f"{exc}; the verified ONNX is at {source}") from None
    return [engine_path, engine_path.with_name(engine_path.name + ".json")]


def _publish(staging: Path, out_dir: Path) -> list[Path]:
    """Move every staged file into ``out_dir`` (same file system: each move is an atomic rename)."""
    published = []
    for path in sorted(staging.iterdir()):
        target = out_dir / path.name
        shutil.move(str(path), str(target))
        published.append(target)
    return published
