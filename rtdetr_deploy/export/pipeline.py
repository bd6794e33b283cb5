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
from ..errors import ExportError
from ..metadata import ModelMetadata
from ..models.checkpoint import load_model
from .config import ExportConfig
from .onnx_export import export_onnx, export_raw_onnx
from .verify import Tolerances, sampling_swap_report, verification_images, verify_onnx

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
        report_path = staging / f"{stem}.verify.json"
        report["metadata"] = metadata.to_props()
        report["timings_s"] = steps.timings
        report_path.write_text(json.dumps(report, indent=2))
        files = _publish(staging, config.out_dir)
    final_onnx = config.out_dir / onnx_path.name
    return ExportResult(
        onnx=final_onnx,
        report_path=config.out_dir / report_path.name,
        report=report,
        files=files,
        timings=steps.timings,
    )


def _publish(staging: Path, out_dir: Path) -> list[Path]:
    """Move every staged file into ``out_dir`` (same file system: each move is an atomic rename)."""
    published = []
    for path in sorted(staging.iterdir()):
        target = out_dir / path.name
        shutil.move(str(path), str(target))
        published.append(target)
    return published
