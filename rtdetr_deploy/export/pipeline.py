"""The export pipeline: load -> trace -> check -> simplify -> verify -> precision -> (accuracy) -> build.

Every file is produced in a staging folder inside the output folder and moved into place only once the
whole export has succeeded, so a failed or interrupted export leaves the folder as it was. A precision variant
that fails its rule is the exception: it is refused alone (``refusal``), and the verified files are published.
Each graph is traced and checked as a probe (``onnx_export``); the published file is the verified probe without
its extra outputs, and each precision variant is derived from the FP32 probe the same way.
"""

from __future__ import annotations

import shutil
import sys
import tempfile
from dataclasses import dataclass, replace
from pathlib import Path

import onnx

from ..artifacts import engine_path, is_engine_folder, onnx_path, precision_of_variant, report_path
from ..atomic import atomic_path, replace_folder
from ..checksum import source_sha256
from ..contract import OUTPUT_NAMES, RAW_OUTPUT_NAMES
from ..engine_format import sidecar_path
from ..errors import EngineBuildError, ExportError
from ..metadata import ModelMetadata
from ..models.checkpoint import load_model
from ..models.layers import set_gelu_form
from ..models.rtdetr import RTDETR
from ..version import __version__
from .acceptance import SwapCost
from .ap_gates import accuracy_gates, int8_sensitivity_table
from .config import ExportConfig
from .files import ExportFiles
from .gates import TOLERANCES, VARIANT_RULES
from .onnx_export import Probe, export_probe, op_census, strip_probe
from .refusal import drop_refused, refusal_message, refused_variants
from .report import AccuracyReport, ExportReport, SwapReport, VariantReport, VerificationReport
from .speed_knobs import speed_knobs_report
from .steps import Steps
from .swap import judge_swap
from .variants import JUDGE_IMAGES, check_variant
from .verify import sampling_swap_report, verification_images, verify_against_pytorch

__all__ = ["ExportResult", "export"]


@dataclass(frozen=True)
class ExportResult:
    """What an export produced: its files (final paths in ``out_dir``), its report (as written beside them) and
    the duration of every step (the engine build included)."""

    files: ExportFiles
    report: ExportReport
    timings: dict[str, float]

    @property
    def onnx(self) -> Path:
        return self.files.onnx

    @property
    def report_path(self) -> Path:
        return self.files.report


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
    model = load_model(config.weights, preset=config.preset, sampling=config.sampling, names=config.names)
    set_gelu_form(model, config.gelu)
    model.set_speed_knobs(decoder_layers=config.decoder_layers, queries=config.queries)
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
        outputs=config.outputs,
        gelu=config.gelu,
        decoder_layers=model.decoder_layers,
        queries=model.queries,
    )
    detail = (
        f"{metadata.preset}, {info.num_classes} classes, {config.sampling} sampling, {input_size[0]}x{input_size[1]}, "
        f"{model.decoder_layers} of {len(model.decoder.decoder.layers)} decoder layers, {model.queries} queries"
    )
    return model, metadata, detail


def _publishable(probe_model: onnx.ModelProto, path: Path, *, outputs: str = "detections") -> Path:
    names = RAW_OUTPUT_NAMES if outputs == "raw" else OUTPUT_NAMES
    with atomic_path(path) as tmp:
        onnx.save(strip_probe(probe_model, outputs=names), str(tmp))
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
    steps = Steps(verbose=verbose)
    stem = config.weights.stem if config.weights.is_file() else config.weights.name
    with tempfile.TemporaryDirectory(dir=config.out_dir, prefix=".export-") as staging_dir:
        staging = Path(staging_dir)
        (staging / "probes").mkdir()
        with steps.step("load") as note:
            model, metadata, note["detail"] = _load(config)
        probe, files, census = _trace(config, model, metadata, staging, stem, steps)
        images = verification_images(config.verify_images)
        with steps.step("verify") as note:
            # The Erf-free form claims the trained function, so it answers to the Erf model; tanh to itself.
            set_gelu_form(model, "erf" if config.gelu == "poly" else config.gelu)
            verification = verify_against_pytorch(probe, files.onnx, model, images, tolerances=TOLERANCES)
            note["detail"] = _verify_line(verification)
        if not verification.passed:
            raise ExportError("verification failed: " + "; ".join(verification.failures))
        # Kept AP needs more objects than verification: the lossy judgements run on more images.
        judged = verification_images(config.verify_images, count=JUDGE_IMAGES)
        swap = sampling_swap_report(model, judged, input_size=metadata.input_size)
        variants = _write_variants(config, probe, staging, stem, judged, steps)
        irs = _write_openvino(config, probe, staging, stem, judged, steps)
        targets = _write_targets(config, model, files.onnx, staging, stem, images, steps)
        files = replace(
            files,
            variants={variant: path for variant, (path, _) in variants.items()},
            openvino={variant: path for variant, (path, _) in irs.items()},
            targets={name: staging / str(report["file"]) for name, report in (targets or {}).items()},
        )
        fused, files = _write_fused(config, files, images, steps)
        accuracy = accuracy_gates(config, files, step=steps.step) if config.eval_data is not None else None
        sensitivity = int8_sensitivity_table(config, files.onnx, step=steps.step) if config.int8_sensitivity else None
        swap = replace(swap, cost=_swap_cost(config, model, swap, accuracy, verbose=verbose))
        refused = refused_variants({v: r for v, (_, r) in {**variants, **irs}.items()}, accuracy)
        files, refused_section = drop_refused(files, stem, refused)
        report = ExportReport(
            verification=verification,
            op_census=census,
            swap=swap,
            variants={variant: variant_report for variant, (_, variant_report) in variants.items()},
            metadata=metadata.to_props(),
            timings_s=dict(steps.timings),
            openvino={variant: ir_report for variant, (_, ir_report) in irs.items()} or None,
            fused=fused,
            accuracy=accuracy,
            int8_sensitivity=sensitivity,
            classes=model.info.names_from,
            speed_knobs=speed_knobs_report(model),
            targets=targets,
            refused=refused_section,
        )
        report.write(files.report)
        files = _published(files, _publish(staging, config.out_dir), config.out_dir)
    if config.trt is not None and config.trt not in refused:
        with steps.step("build") as note:
            engine = _build_engine(config, stem)
            note["detail"] = engine.name
        files = replace(files, engine=engine, engine_sidecar=sidecar_path(engine))
    if refused:
        raise ExportError(refusal_message(refused, stem, files))
    return ExportResult(files, report, steps.timings)


def _swap_cost(
    config: ExportConfig, model: RTDETR, swap: SwapReport, accuracy: AccuracyReport | None, *, verbose: bool
) -> SwapCost:
    """Judge the sampling swap (``swap.judge_swap``) and print its warning, if any, as one line."""
    cost = judge_swap(config, trained_sampling=model.info.sampling, swap=swap, accuracy=accuracy)
    if verbose and cost.warning:
        print(f"warning: {cost.warning}", file=sys.stderr, flush=True)
    return cost


def _trace(
    config: ExportConfig, model: RTDETR, metadata: ModelMetadata, staging: Path, stem: str, steps: Steps
) -> tuple[Probe, ExportFiles, dict[str, int]]:
    """Trace the probe into ``staging/probes`` and publish its FP32 graph into ``staging``; the files so far and
    the FP32 graph's op census."""
    with steps.step("trace") as note:
        unsimplified = staging / f"{stem}.unsimplified.onnx" if config.keep_unsimplified else None
        probe = export_probe(
            model,
            onnx_path(staging / "probes", stem),
            metadata=metadata,
            simplify=config.simplify,
            keep_unsimplified=unsimplified,
        )
        deploy = _publishable(onnx.load(str(probe.path)), onnx_path(staging, stem), outputs=config.outputs)
        census = op_census(onnx.load(str(deploy)))
        note["detail"] = f"{sum(census.values())} nodes, GridSample: {census.get('GridSample', 0)}"
    return probe, ExportFiles(onnx=deploy, report=report_path(staging, stem), unsimplified=unsimplified), census


def _write_targets(
    config: ExportConfig, model: RTDETR, deploy: Path, staging: Path, stem: str, images: list, steps: Steps
) -> dict[str, dict[str, object]] | None:
    """Convert the verified FP32 graph to the third-party engines ``config.targets`` names (``export.targets``) and
    verify each; ``{target: report}``, or ``None`` when none is asked for."""
    if not config.targets.any:
        return None
    from .targets import write_targets

    return write_targets(
        config.targets,
        deploy,
        staging,
        stem,
        images,
        step=steps.step,
        calib=config.calib,
        calib_images=config.calib_images,
        model=model,
    )


def _write_fused(
    config: ExportConfig, files: ExportFiles, images: list, steps: Steps
) -> tuple[dict[str, object] | None, ExportFiles]:
    """With ``--fuse-preprocess``, write and verify the fused graph of every ONNX graph (``export.fused``)."""
    if not config.fuse_preprocess:
        return None, files
    from .fused import fused_path, write_fused

    graphs = {"fp32": files.onnx, **files.variants}
    report = write_fused(list(graphs.values()), images, step=steps.step)
    return report, replace(files, fused={variant: fused_path(path) for variant, path in graphs.items()})


def _published(files: ExportFiles, published: list[Path], out_dir: Path) -> ExportFiles:
    """``files`` at their place in ``out_dir``, once every published file is one of them."""
    moved = files.moved_to(out_dir)
    unnamed = sorted(set(published) - set(moved))
    missing = sorted(set(moved) - set(published))
    if unnamed or missing:
        raise AssertionError(f"export files not named in ExportFiles: {unnamed}; named but not written: {missing}")
    return moved


def _verify_line(report: VerificationReport) -> str:
    decisions, detections = report.decisions, report.detections
    status = "passed" if report.passed else "FAILED"
    decided = (
        f"{detections.matched:.1%} of {detections.decided} decided top detections agree"
        if detections.matched is not None
        else "no decided top detections (untrained weights: raw outputs compared)"
    )
    return (
        f"{status}: {decided}; {report.raw.within_tolerance:.1%} of raw queries within tolerance; "
        f"decisions: {decisions.ties} ties, {decisions.disagreements} errors"
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
    config: ExportConfig, probe: Probe, staging: Path, stem: str, images: list, steps: Steps
) -> dict[str, tuple[Path, VariantReport]]:
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
            written[variant] = (published, report)
            note["detail"] = f"{published.name}: {_variant_line(report)}"
    return written


def _write_openvino(
    config: ExportConfig, probe: Probe, staging: Path, stem: str, images: list, steps: Steps
) -> dict[str, tuple[Path, VariantReport]]:
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


def _variant_line(report: VariantReport) -> str:
    detections, kept = report.detections, report.kept_ap
    if kept is not None and report.rule.startswith("kept AP"):
        status = "passed" if report.passed else "REFUSED"
        return (
            f"{status}: kept AP {kept.ap:.3f} against FP32's {kept.pseudo_objects} confident detections, "
            f"{kept.relative:.0%} of FP32's noise floor {kept.noise_floor:.3f} (label-free rule: >= "
            f"{kept.min_relative:.0%})"
        )
    if detections.matched is None or not report.decisive:
        within = report.raw.within_tolerance
        return f"not decisive (untrained weights); {within:.1%} of encoder scores close to FP32's"
    return f"{detections.matched:.1%} of FP32's {detections.decided} decided top detections kept"


def _build_engine(config: ExportConfig, stem: str) -> Path:
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
    return engine


def _publish(staging: Path, out_dir: Path) -> list[Path]:
    """Move every staged file and engine folder (not the probes) into ``out_dir`` (same file system: each move is an
    atomic rename)."""
    published = []
    for path in sorted(staging.iterdir()):
        target = out_dir / path.name
        if path.is_file():
            shutil.move(str(path), str(target))
            published.append(target)
        elif is_engine_folder(path):
            replace_folder(path, target)
            published.append(target)
    return published
