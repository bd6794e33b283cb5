"""The export pipeline: load -> trace -> check -> simplify -> verify -> precision -> (accuracy) -> build.

Every file is produced in a staging folder inside the output folder and moved into place only once the
whole export has succeeded, so a failed or interrupted export leaves the folder as it was. A precision variant
that fails its rule is the exception: it is refused alone (``refusal``), and the verified files are published.
Each graph is traced and checked as a probe (``onnx_export``); the published file is the verified probe without
its extra outputs, and each precision variant is derived from the FP32 probe the same way.
"""

from __future__ import annotations

import json
import shutil
import sys
import tempfile
import time
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import onnx

from ..artifacts import engine_path, onnx_path, precision_of_variant, report_path
from ..atomic import atomic_path
from ..checksum import source_sha256
from ..engine_format import sidecar_path
from ..errors import EngineBuildError, ExportError
from ..metadata import ModelMetadata
from ..models.checkpoint import load_model
from ..models.rtdetr import RTDETR
from ..version import __version__
from .config import ExportConfig
from .onnx_export import Probe, export_probe, op_census, strip_probe
from .refusal import drop_refused, refusal_message, refused_variants
from .swap import judge_swap
from .variants import JUDGE_IMAGES, NOT_DECISIVE, VARIANT_RULES, check_variant
from .verify import Tolerances, sampling_swap_report, verification_images, verify_against_pytorch

__all__ = ["ExportResult", "export"]


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


def _check_inputs(config: ExportConfig) -> None:
    try:
        config.out_dir.mkdir(parents=True, exist_ok=True)
        with tempfile.TemporaryFile(dir=config.out_dir):
            pass
    except OSError as exc:
        raise ValueError(f"output folder is not writable: {config.out_dir} ({exc.strerror})") from None
    for what, folder in (("verification image", config.verify_images), ("calibration", config.calib)):
        if folder is not None and not folder.is_dir():
            raise FileNotFoundError(f"{what} folder not found: {folder}")
    if config.eval_data is not None and str(config.eval_data) != "synthetic" and not config.eval_data.is_dir():
        raise FileNotFoundError(f"evaluation data folder not found: {config.eval_data}")


def _load(config: ExportConfig) -> tuple[RTDETR, ModelMetadata, str]:
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
        source_sha256=source_sha256(config.weights),
        opset=config.opset,
    )
    detail = (
        f"{metadata.preset}, {info.num_classes} classes, {config.sampling} sampling, {input_size[0]}x{input_size[1]}"
    )
    return model, metadata, detail


def _publishable(probe_model: onnx.ModelProto, path: Path) -> Path:
    with atomic_path(path) as tmp:
        onnx.save(strip_probe(probe_model), str(tmp))
    return path


def export(config: ExportConfig, *, verbose: bool = True) -> ExportResult:
    """Run the whole export described by ``config``.

    Raises:
        FileNotFoundError, ValueError, CheckpointError: bad input (nothing is written).
        ExportError: the graph failed its checks or its verification (nothing is written), or a variant failed its
            rule or accuracy gate (the verified files are written, the refused variant is not).
        EngineBuildError: TensorRT is missing or failed; the verified ONNX files are kept.
    """
    _check_inputs(config)
    steps = _Steps(verbose=verbose)
    stem = config.weights.stem if config.weights.is_file() else config.weights.name
    with tempfile.TemporaryDirectory(dir=config.out_dir, prefix=".export-") as staging_dir:
        staging = Path(staging_dir)
        (staging / "probes").mkdir()
        with steps.step("load") as note:
            model, metadata, note["detail"] = _load(config)
        with steps.step("trace") as note:
            unsimplified = staging / f"{stem}.unsimplified.onnx" if config.keep_unsimplified else None
            probe = export_probe(
                model,
                onnx_path(staging / "probes", stem),
                metadata=metadata,
                simplify=config.simplify,
                keep_unsimplified=unsimplified,
            )
            deploy = _publishable(onnx.load(str(probe.path)), onnx_path(staging, stem))
            census = op_census(onnx.load(str(deploy)))
            note["detail"] = f"{sum(census.values())} nodes, GridSample: {census.get('GridSample', 0)}"
        images = verification_images(config.verify_images)
        with steps.step("verify") as note:
            verification = verify_against_pytorch(probe, deploy, model, images, tolerances=Tolerances())
            note["detail"] = _verify_line(verification)
        if not verification["passed"]:
            raise ExportError("verification failed: " + "; ".join(verification["failures"]))  # type: ignore[arg-type]
        report: dict[str, object] = {"passed": True, "verification": verification, "op_census": census}
        # Kept AP needs more objects than verification: the lossy judgements run on more images.
        judged = verification_images(config.verify_images, count=JUDGE_IMAGES)
        report["swap"] = sampling_swap_report(model, judged, input_size=metadata.input_size)
        variants = _write_variants(config, probe, staging, stem, judged, steps)
        report["variants"] = {variant: variant_report for variant, (_, variant_report) in variants.items()}
        irs = _write_openvino(config, probe, staging, stem, judged, steps)
        if irs:
            report["openvino"] = {variant: ir_report for variant, (_, ir_report) in irs.items()}
        if config.fuse_preprocess:
            from .fused import write_fused

            report["fused"] = write_fused([deploy, *(path for path, _ in variants.values())], images, step=steps.step)
        if config.eval_data is not None:
            paths = {"fp32": deploy, **{variant: path for variant, (path, _) in {**variants, **irs}.items()}}
            report["accuracy"] = _accuracy_gates(config, paths, steps)
        if config.int8_sensitivity:
            report["int8_sensitivity"] = _int8_sensitivity(config, deploy, steps)
        report["swap"]["cost"] = judge_swap(config, trained_sampling=model.info.sampling, report=report)
        if verbose and report["swap"]["cost"]["warning"]:
            print(f"warning: {report['swap']['cost']['warning']}", file=sys.stderr, flush=True)
        refused = refused_variants(report)
        drop_refused(staging, stem, refused, report)
        report["metadata"] = metadata.to_props()
        report["timings_s"] = steps.timings
        report_file = report_path(staging, stem)
        report_file.write_text(json.dumps(report, indent=2))
        files = _publish(staging, config.out_dir)
    result = ExportResult(config.out_dir / deploy.name, config.out_dir / report_file.name, report, files, steps.timings)
    if config.trt is not None and config.trt not in refused:
        with steps.step("build") as note:
            result.files += _build_engine(config, result, stem)
            note["detail"] = result.files[-2].name
    if refused:
        raise ExportError(refusal_message(refused, stem, result.files))
    return result


def _verify_line(report: dict) -> str:
    decisions, raw, detections = report["decisions"], report["raw"], report["detections"]
    status = "passed" if report["passed"] else "FAILED"
    decided = (
        f"{detections['matched']:.1%} of {detections['decided']} decided top detections agree"
        if detections["matched"] is not None
        else "no decided top detections (untrained weights: raw outputs compared)"
    )
    return (
        f"{status}: {decided}; {raw['within_tolerance']:.1%} of raw queries within tolerance; "
        f"decisions: {decisions['ties']} ties, {decisions['disagreements']} errors"
    )


def _variants(config: ExportConfig) -> list[str]:
    """The precision variants the config asks for, beside the FP32 graph (``artifacts.VARIANTS`` names)."""
    variants = []
    if config.trt == "fp16" or config.fp16:
        variants.append("fp16")
    if config.trt == "int8":
        variants.append("int8")
    if config.int8_cpu:
        variants.append("int8-cpu")
    return variants


def _write_variants(
    config: ExportConfig, probe: Probe, staging: Path, stem: str, images: list, steps: _Steps
) -> dict[str, tuple[Path, dict]]:
    """Write each variant's probe and published graph and judge it against FP32; ``{variant: (path, report)}``."""
    from .precision import convert_fp16
    from .quantize import quantize_int8

    written = {}
    for variant in _variants(config):
        with steps.step(variant) as note:
            variant_probe = onnx_path(staging / "probes", stem, variant)
            if variant == "fp16":
                convert_fp16(probe.path, variant_probe)
            else:
                target = "tensorrt" if variant == "int8" else "onnxruntime"
                quantize_int8(
                    probe.path,
                    variant_probe,
                    config.calib,
                    target=target,
                    max_images=config.calib_images,
                    keep_float=config.int8_keep_float,
                    calibration=config.calib_method,
                )
            published = _publishable(onnx.load(str(variant_probe)), onnx_path(staging, stem, variant))
            precision = precision_of_variant(variant)
            report = check_variant(
                probe, variant_probe, published, images, precision=precision, rules=VARIANT_RULES[precision]
            )
            written[variant] = (published, {"file": published.name, **report})
            note["detail"] = f"{published.name}: {_variant_line(report)}"
    return written


def _write_openvino(
    config: ExportConfig, probe: Probe, staging: Path, stem: str, images: list, steps: _Steps
) -> dict[str, tuple[Path, dict]]:
    """Write and judge each OpenVINO IR the config asks for (``export.openvino``); ``{variant: (xml, report)}``."""
    if not config.openvino:
        return {}
    from .openvino import write_ir

    written = {}
    for precision in config.openvino:
        with steps.step(f"ov-{precision}") as note:
            path, report = write_ir(config, probe, staging, stem, images, precision=precision)
            written[f"openvino-{precision}"] = (path, report)
            note["detail"] = f"{path.name}: {_variant_line(report)}"
    return written


def _variant_line(report: dict) -> str:
    detections, kept = report["detections"], report.get("kept_ap")
    if kept is not None and report["rule"].startswith("kept AP"):
        status = "passed" if report["passed"] else "REFUSED"
        return (
            f"{status}: kept AP {kept['AP']:.3f} against FP32's {kept['pseudo_objects']} confident detections, "
            f"{kept['relative']:.0%} of FP32's noise floor {kept['noise_floor']:.3f} (label-free rule: >= "
            f"{kept['min_relative']:.0%})"
        )
    if detections["matched"] is None or report["rule"] == NOT_DECISIVE:
        raw = report["raw"]
        return f"not decisive (untrained weights); {raw['within_tolerance']:.1%} of encoder scores close to FP32's"
    return f"{detections['matched']:.1%} of FP32's {detections['decided']} decided top detections kept"


def _accuracy_gates(config: ExportConfig, paths: dict[str, Path], steps: _Steps) -> dict[str, object]:
    """COCO AP of every written graph on the labelled data, and whether each variant stays within its allowed
    loss against FP32 (``config.max_ap_drop``)."""
    from ..eval.evaluate import evaluate_models, load_eval_data

    with steps.step("accuracy") as note:
        data = load_eval_data(config.eval_data, split=config.eval_split)
        scores = evaluate_models(list(paths.values()), data, progress=False)
        fp32_ap = scores[0].metrics["AP"]
        gates = {}
        for (variant, path), score in zip(paths.items(), scores, strict=True):
            drop = fp32_ap - score.metrics["AP"]
            allowed = config.allowed_ap_drop(precision_of_variant(variant)) if variant != "fp32" else None
            gates[variant] = {
                "file": path.name,
                **score.metrics,
                "delta_AP": -drop,
                "allowed_drop": allowed,
                "accepted": allowed is None or drop <= allowed,
            }
        note["detail"] = ", ".join(f"{v} AP {g['AP']:.3f}" for v, g in gates.items())
    return {"data": str(config.eval_data), "split": config.eval_split, "images": data.num_images, "gates": gates}


def _int8_sensitivity(config: ExportConfig, fp32_onnx: Path, steps: _Steps) -> dict[str, object]:
    """The INT8 sensitivity table (``int8_sensitivity``) on the labelled data, for the ONNX Runtime target."""
    from ..eval.evaluate import load_eval_data
    from ..runtime.sources import read_image_folder
    from .int8_sensitivity import int8_sensitivity

    with steps.step("int8-sens") as note:
        images = read_image_folder(config.calib, limit=config.calib_images, what="calibration images")
        data = load_eval_data(config.eval_data, split=config.eval_split)
        table = int8_sensitivity(fp32_onnx, images, data, calibration=config.calib_method)
        worst = max(table["groups"], key=lambda row: row["recovered"], default=None)
        note["detail"] = f"FP32 AP {table['fp32_AP']:.4f}, INT8 {table['int8_AP']:.4f}" + (
            f"; most sensitive: {worst['group']} ({worst['recovered']:+.4f} AP in float)" if worst else ""
        )
    return table


def _build_engine(config: ExportConfig, result: ExportResult, stem: str) -> list[Path]:
    """Build the TensorRT engine from the verified precision ONNX; the ONNX files stay whatever happens."""
    from .tensorrt import build_engine

    precision = config.trt or "fp32"
    source = onnx_path(config.out_dir, stem, precision)
    engine = engine_path(config.out_dir, stem, precision)
    try:
        build_engine(
            source,
            engine,
            batch=config.batch,
            workspace_gib=config.workspace_gib,
            timing_cache=config.timing_cache,
        )
    except EngineBuildError as exc:
        raise EngineBuildError(f"{exc}; the verified ONNX is at {source}") from None
    return [engine, sidecar_path(engine)]


def _publish(staging: Path, out_dir: Path) -> list[Path]:
    """Move every staged file (not the probes) into ``out_dir`` (same file system: each move is an atomic rename)."""
    published = []
    for path in sorted(staging.iterdir()):
        if path.is_file():
            target = out_dir / path.name
            shutil.move(str(path), str(target))
            published.append(target)
    return published
