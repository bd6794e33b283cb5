"""``run_benchmark``: every case of a ``BenchConfig`` timed and compared, as one report.

The report is a JSON-ready dict: the device description, the model and its FLOPs, the machine's matmul rate, one
record per case and batch (inference alone, and with ``video`` the per-stage split, each stage's own throughput,
the threaded pipeline and the stage that bounds it), the comparisons and the detection agreement between cases.
"""

from __future__ import annotations

import dataclasses
import datetime
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

from ..contract import OUTPUT_NAMES
from ..data.scenes import cluttered_scenes
from ..runtime.backend import Backend
from ..runtime.detector import Detector
from ..runtime.registry import open_backend
from .cases import Case, export_for_onnxruntime, plan_cases
from .compare import agreement_rows, compare_results, overhead_rows
from .config import BenchConfig
from .device import describe_device
from .flops import FlopCount, count_onnx_flops, count_torch_flops
from .peak import measure_matmul_peak
from .report import SCHEMA
from .stats import summarize
from .throughput import bound_line, measure_stage_rates
from .timing import CpuContention, PeakMemory, cuda_synchronizer, measure_pipeline, measure_stages, time_calls

__all__ = ["run_benchmark"]

AGREEMENT_IMAGES = 4
# Timed images without a video: 720p scenes, the size of a common camera stream.
VIDEO_SIZE_HW = (720, 1280)
# Other processes using more than this share of the CPUs during a measurement earn the report a note.
BUSY_SHARE = 0.1


def _video_images(video: Path, count: int) -> list[np.ndarray]:
    from ..runtime.sources import open_source

    with open_source(video) as source:
        images = [frame.image for _, frame in zip(range(count), source, strict=False)]
    if not images:
        raise ValueError(f"no frame could be decoded from {video}")
    return images


def _open_case(case: Case, config: BenchConfig, *, count_flops: bool) -> tuple[Backend, FlopCount | None]:
    """The case's backend, and for torch with ``count_flops`` the model's FLOPs (counted on the module at hand)."""
    if case.backend != "torch":
        return open_backend(case.path, backend=case.backend, device=case.device), None  # type: ignore[arg-type]
    from ..models.checkpoint import load_model
    from ..runtime.torch_backend import TorchBackend

    model = load_model(case.source, sampling=case.sampling, names=config.names)
    if config.imgsz is not None:
        model.set_eval_size(config.imgsz)
        model.info = dataclasses.replace(model.info, input_size=tuple(config.imgsz))
    model.deploy()
    flops = count_torch_flops(model, model.info.input_size) if count_flops else None
    backend = TorchBackend.from_module(model, device=case.device, precision=case.precision, cuda_graph=case.cuda_graph)
    return backend, flops


def _case_fields(case: Case) -> dict[str, Any]:
    return {
        "case": case.label,
        "backend": case.backend,
        "precision": case.precision,
        "sampling": case.sampling,
        "device": case.device,
        "cuda_graph": case.cuda_graph,
    }


def _config_dict(config: BenchConfig) -> dict[str, Any]:
    values = dataclasses.asdict(config)
    return {key: str(value) if isinstance(value, Path) else value for key, value in values.items()}


def run_benchmark(
    config: BenchConfig, *, log: Callable[[str], None] = lambda line: None, command: str = ""
) -> dict[str, Any]:
    """Measure every case of ``config`` and return the report (see the module docstring).

    Raises:
        FileNotFoundError, ValueError, BackendError: bad input, found before any timing where possible.
    """
    cases, notes = plan_cases(config)
    device = describe_device(config.device)
    if config.video:
        images = _video_images(config.video, max(config.batches))
    else:
        images = cluttered_scenes(max(config.batches), size_hw=VIDEO_SIZE_HW)
    agreement_images = cluttered_scenes(AGREEMENT_IMAGES, size_hw=VIDEO_SIZE_HW, seed=1)
    results: list[dict[str, Any]] = []
    outputs: dict[str, dict[str, np.ndarray]] = {}
    model_info: dict[str, Any] = {}
    flops: FlopCount | None = None
    flops_source = ""
    with tempfile.TemporaryDirectory(prefix="rtdetr-bench-") as workdir:
        cases = export_for_onnxruntime(cases, config, Path(workdir), log=log)
        for case in cases:
            if flops is None and case.precision == "fp32" and case.path is not None and case.path.suffix == ".onnx":
                flops, flops_source = count_onnx_flops(case.path), f"ONNX graph ({case.path.name})"
            backend, torch_flops = _open_case(case, config, count_flops=flops is None)
            if flops is None and torch_flops is not None:
                flops, flops_source = torch_flops, "torch.utils.flop_counter"
            with Detector(backend, conf=0.25) as detector:
                metadata = detector.metadata
                model_info = model_info or {
                    "file": Path(case.source).name,
                    "preset": metadata.preset,
                    "input_size": list(metadata.input_size),
                    "num_classes": metadata.num_classes,
                    "topk": metadata.topk,
                }
                for batch in config.batches:
                    if batch > detector.max_batch:
                        raise ValueError(f"batch {batch} exceeds {case.label}'s batch limit {detector.max_batch}")
                results += [_measure(case, detector, batch, config, images, log) for batch in config.batches]
                outputs_case = _agreement_outputs(detector, agreement_images)
                if outputs_case is not None:
                    outputs[case.label] = outputs_case
    report: dict[str, Any] = {
        "schema": SCHEMA,
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "config": _config_dict(config),
        "device": device,
        "model": model_info,
        "flops": {**dataclasses.asdict(flops), "source": flops_source} if flops else None,
        "matmul_peak": None,
        "timing": {
            "warmup": config.warmup,
            "iters": config.timed_iters,
            "seconds": config.seconds,
            "clock": "time.perf_counter around each call; CUDA synchronised before and after",
            "ratios_use": "p50 latency",
        },
        "results": results,
    }
    if config.matmul_peak and config.device == "cpu":
        log("measuring this machine's FP32 matrix-multiply rate")
        report["matmul_peak"] = dataclasses.asdict(measure_matmul_peak())
    report["comparisons"] = compare_results(results)
    report["overheads"] = overhead_rows(results)
    case_records = [_case_fields(case) for case in cases]
    report["agreements"] = agreement_rows(outputs, case_records)
    busy = [r for r in results if (r.get("other_cpu_share") or 0) > BUSY_SHARE]
    if busy:
        worst = max(r["other_cpu_share"] for r in busy)
        notes.append(
            f"{len(busy)} of {len(results)} measurements ran while other processes used more than {BUSY_SHARE:.0%} of "
            f"the CPUs (up to {worst:.0%}): those timings are slower than this machine can do"
        )
    report["notes"] = notes
    return report


def _measure(
    case: Case,
    detector: Detector,
    batch: int,
    config: BenchConfig,
    images: list[np.ndarray],
    log: Callable[[str], None],
) -> dict[str, Any]:
    """Time one case at one batch size: inference alone, then (with a video) the stage split and the pipeline."""
    chosen = [images[i % len(images)] for i in range(batch)]
    prepared = detector.preprocess(chosen)
    sync = cuda_synchronizer(case.device)
    torch_device = case.device if case.backend == "torch" and case.device.startswith("cuda") else None
    backend = detector.backend
    with CpuContention() as contention, PeakMemory(torch_device=torch_device) as memory:
        latencies = time_calls(
            lambda: backend.infer(prepared.feed),
            warmup=config.warmup,
            iters=config.timed_iters,
            seconds=config.seconds,
            synchronize=sync,
        )
    stats = summarize(latencies, batch=batch)
    assert memory.result is not None
    record: dict[str, Any] = {
        **_case_fields(case),
        "batch": batch,
        "file": case.path.name if case.path else None,
        "backend_description": backend.description,
        "latency": stats.as_dict(),
        "memory": dataclasses.asdict(memory.result),
        "other_cpu_share": contention.other_share,
        "stages": None,
        "pipeline": None,
        "stage_rates": None,
    }
    busy = f", other processes used {contention.other_share:.0%} of the CPUs" if contention.other_share else ""
    log(
        f"{case.label}, batch {batch}: p50 {stats.p50_ms:.1f} ms, {stats.images_per_s:.1f} images/s "
        f"({stats.runs} runs{busy})"
    )
    if config.video is not None:
        with CpuContention() as contention:
            split = measure_stages(detector, config.video, batch=batch, frames=config.frames, synchronize=sync)
            pipeline = measure_pipeline(detector, config.video, batch=batch, frames=config.frames)
            rates = measure_stage_rates(detector, config.video, batch=batch, frames=config.frames, synchronize=sync)
        record["stages"] = {**split.as_dict(), "other_cpu_share": contention.other_share}
        record["pipeline"] = {**pipeline.as_dict(), "bound_by": rates.bound_by}
        record["stage_rates"] = rates.as_dict()
        log(
            f"{case.label}, batch {batch}, video: {split.sequential_fps:.2f} FPS stage by stage, "
            f"{pipeline.fps:.2f} FPS pipelined ({split.frames} + {pipeline.frames} frames); "
            f"{bound_line(record['stage_rates'], pipeline.fps)}"
        )
    return record


def _agreement_outputs(detector: Detector, images: list[np.ndarray]) -> dict[str, np.ndarray] | None:
    """``labels``/``boxes``/``scores`` of each image run alone (first row of a padded fixed batch)."""
    if set(OUTPUT_NAMES) - {spec.name for spec in detector.backend.output_specs}:
        return None
    per_image = []
    for image in images:
        prepared = detector.preprocess([image])
        out = detector.infer(prepared)
        per_image.append({name: out[name][:1] for name in OUTPUT_NAMES})
    return {name: np.concatenate([o[name] for o in per_image]) for name in OUTPUT_NAMES}
