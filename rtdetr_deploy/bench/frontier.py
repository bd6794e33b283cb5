"""The speed/accuracy frontier of one checkpoint: input sizes x decoder layers x queries x precisions.

Every combination is exported through the export pipeline (verified against PyTorch with the same settings), its
COCO AP measured through the ``rtdetr-eval`` path (``eval.evaluate_model``: the runtime's ``Detector``, no score
threshold) and its latency through the bench path (``backend.infer`` on a prepared batch of 1, ``time_calls``).
The latencies are taken in rounds that visit every file in turn, so that a change in the machine's load during
the run spreads over all points instead of landing on a few. The Pareto-optimal points are those that no other
point beats on both AP and p50.
"""

from __future__ import annotations

import dataclasses
import datetime
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..runtime.config import parse_device
from ..runtime.detector import Detector
from ..runtime.registry import open_backend
from .device import describe_device
from .stats import summarize
from .timing import CpuContention, time_calls

__all__ = ["FRONTIER_PRECISIONS", "FrontierConfig", "FrontierPoint", "default_sizes", "pareto_front", "run_frontier"]

FRONTIER_PRECISIONS = ("fp32", "fp16", "int8")
# The file rtdetr-export writes for each precision an ONNX Runtime frontier measures.
_ONNX_VARIANT = {"fp32": "fp32", "fp16": "fp16", "int8": "int8-cpu"}
# Timed images: a 720p scene, the size of a common camera stream (preprocessing is not timed).
_SCENE_HW = (720, 1280)


@dataclass(frozen=True)
class FrontierConfig:
    """What to measure.

    Attributes:
        weights: the checkpoint.
        data: labelled COCO-format folder, or ``"synthetic"`` (the embedded set).
        split: split of ``data``.
        sizes: ``(height, width)`` input sizes; ``None``: ``default_sizes`` of the checkpoint's size.
        decoder_layers: decoder layer counts; ``None``: every count from 1 to the model's.
        queries: query counts; ``None``: the trained number and half of it.
        precisions: ``fp32``, ``fp16``, ``int8`` (ONNX Runtime's static INT8 for ``int8``).
        sampling: ``"discrete"`` or ``"bilinear"`` in every graph (use the one the weights were trained with).
        calib: calibration images for INT8; ``None``: the images of ``data``'s split.
        warmup: untimed calls of each file before its first timed round.
        rounds: timing rounds; each visits every file once.
        iters: timed calls of each file per round.
        device: ``"cpu"`` or ``"cuda:N"``: where ONNX Runtime times the graphs (on a GPU its TensorRT or CUDA
            provider, as ``Detector`` picks them). AP is measured by the export's accuracy step either way.
    """

    weights: Path
    data: str
    split: str = "val"
    sizes: tuple[tuple[int, int], ...] | None = None
    decoder_layers: tuple[int, ...] | None = None
    queries: tuple[int, ...] | None = None
    precisions: tuple[str, ...] = ("fp32",)
    sampling: str = "discrete"
    calib: Path | None = None
    warmup: int = 5
    rounds: int = 5
    iters: int = 10
    device: str = "cpu"

    def __post_init__(self) -> None:
        for precision in self.precisions:
            if precision not in FRONTIER_PRECISIONS:
                raise ValueError(f"frontier precision {precision!r}: choose from {', '.join(FRONTIER_PRECISIONS)}")
        if not self.precisions:
            raise ValueError(f"no precision given; choose from {', '.join(FRONTIER_PRECISIONS)}")
        if self.sampling not in ("discrete", "bilinear"):
            raise ValueError(f"--sampling must be 'discrete' or 'bilinear', got {self.sampling!r}")
        for size in self.sizes or ():
            if len(size) != 2 or any(s <= 0 or s % 32 for s in size):
                raise ValueError(f"frontier sizes must be positive multiples of 32, got {size}")
        for name in ("warmup", "rounds", "iters"):
            low = 0 if name == "warmup" else 1
            if getattr(self, name) < low:
                raise ValueError(f"--{name} must be {low} or more, got {getattr(self, name)}")
        parse_device(self.device)  # "cpu" or "cuda:N"; raises ValueError for anything else


@dataclass(frozen=True)
class FrontierPoint:
    """One setting and what it measured.

    Attributes:
        size: ``(height, width)`` input size.
        decoder_layers: decoder layers the graph runs.
        queries: queries the graph keeps.
        precision: ``fp32``, ``fp16`` or ``int8``.
        file: the exported file's name.
        metrics: COCO metrics (``AP``, ``AP50``, ...).
        latency: ``LatencyStats.as_dict()`` of the graph alone (batch 1), over all rounds.
        pareto: no other point has at least its AP at no more than its p50 (and is better in one of them).
    """

    size: tuple[int, int]
    decoder_layers: int
    queries: int
    precision: str
    file: str
    metrics: dict[str, float]
    latency: dict[str, float]
    pareto: bool = False

    @property
    def label(self) -> str:
        return f"{self.size[0]}x{self.size[1]} L{self.decoder_layers} Q{self.queries} {self.precision}"


def _round32(value: float) -> int:
    return max(32, int(round(value / 32)) * 32)


def default_sizes(size: tuple[int, int]) -> tuple[tuple[int, int], ...]:
    """The checkpoint's ``(height, width)``, four fifths of it and half of it (multiples of 32, no repeats)."""
    sizes = [tuple(_round32(s * f) for s in size) for f in (1.0, 0.8, 0.5)]
    return tuple(dict.fromkeys(sizes))  # type: ignore[arg-type]


def _settings(config: FrontierConfig) -> tuple[list[tuple[tuple[int, int], int, int]], dict[str, Any]]:
    """Every ``(size, decoder_layers, queries)`` to export, checked against the model; and the model's facts."""
    from ..models.checkpoint import load_model

    model = load_model(config.weights)
    trained_layers, trained_queries = model.decoder_layers, model.trained_queries
    for layers in config.decoder_layers or ():
        model.set_speed_knobs(decoder_layers=layers)
    for queries in config.queries or ():
        model.set_speed_knobs(queries=queries)
    sizes = config.sizes or default_sizes(tuple(model.info.input_size))
    layer_counts = config.decoder_layers or tuple(range(1, trained_layers + 1))
    query_counts = config.queries or tuple(dict.fromkeys((trained_queries, max(1, trained_queries // 2))))
    facts = {
        "preset": model.config.name,
        "input_size": list(model.info.input_size),
        "trained_decoder_layers": trained_layers,
        "trained_queries": trained_queries,
        "num_classes": model.num_classes,
    }
    for height, width in sizes:
        positions = sum((height // stride) * (width // stride) for stride in model.config.feat_strides)
        if positions < max(query_counts):
            raise ValueError(
                f"size {height}x{width} gives {positions} encoder positions, fewer than {max(query_counts)} queries: "
                "drop the size or the query count"
            )
    settings = [(tuple(s), n, k) for s in sizes for n in sorted(set(layer_counts)) for k in sorted(set(query_counts))]
    return settings, facts  # type: ignore[return-value]


def _export_all(
    config: FrontierConfig, settings: list, workdir: Path, log: Callable[[str], None]
) -> list[tuple[tuple[tuple[int, int], int, int, str], Path, dict[str, float]]]:
    """Export each setting once (FP32 and the asked precisions beside it) with its COCO AP measured by the
    export's accuracy step (the ``rtdetr-eval`` path) and no AP gate; ``[(setting + precision, file, metrics)]``."""
    from ..export.config import ExportConfig
    from ..export.pipeline import export

    files = []
    for index, (size, layers, queries) in enumerate(settings, start=1):
        out = workdir / f"{size[0]}x{size[1]}-l{layers}-q{queries}"
        log(f"[{index}/{len(settings)}] exporting {size[0]}x{size[1]}, {layers} decoder layers, {queries} queries")
        result = export(
            ExportConfig(
                weights=config.weights,
                out_dir=out,
                imgsz=size,
                sampling=config.sampling,
                decoder_layers=layers,
                queries=queries,
                fp16="fp16" in config.precisions,
                int8_cpu="int8" in config.precisions,
                calib=config.calib if "int8" in config.precisions else None,
                eval_data=Path(config.data),
                eval_split=config.split,
                # The frontier shows what each precision loses; it measures, it does not refuse.
                max_fp16_drop=1.0,
                max_int8_drop=1.0,
            ),
            verbose=False,
        )
        gates = result.report.accuracy.gates  # type: ignore[union-attr]
        for precision in config.precisions:
            gate = gates[_ONNX_VARIANT[precision]]
            files.append(((size, layers, queries, precision), out / gate.file, dict(gate.metrics)))
        log("    AP " + ", ".join(f"{p} {gates[_ONNX_VARIANT[p]].ap:.4f}" for p in config.precisions))
    return files


def _measure_latency(
    files: list[Path], config: FrontierConfig, log: Callable[[str], None]
) -> tuple[list[list[float]], float | None, str]:
    """Seconds per call of each file (batch 1), gathered over ``config.rounds`` rounds that visit every file."""
    from ..data.scenes import cluttered_scenes

    image = cluttered_scenes(1, size_hw=_SCENE_HW)[0]
    detectors = [Detector(open_backend(path, backend="onnxruntime", device=config.device)) for path in files]
    latencies: list[list[float]] = [[] for _ in files]
    description = detectors[0].backend.description if detectors else ""
    try:
        feeds = [detector.preprocess([image]).feed for detector in detectors]
        with CpuContention() as contention:
            for round_index in range(config.rounds):
                # Each round starts one file later, so that no file always runs right after the same neighbour.
                order = [(round_index + i) % len(files) for i in range(len(files))]
                for i in order:
                    backend, feed = detectors[i].backend, feeds[i]
                    warmup = config.warmup if round_index == 0 else 1
                    latencies[i] += time_calls(lambda b=backend, f=feed: b.infer(f), warmup=warmup, iters=config.iters)
                log(f"timing round {round_index + 1}/{config.rounds} done")
    finally:
        for detector in detectors:
            detector.close()
    return latencies, contention.other_share, description


def _calibration_folder(config: FrontierConfig, data: Any, log: Callable[[str], None]) -> Path:
    """The images of the data's ``train`` split (not the evaluated images), else those of the evaluated split."""
    from ..eval.evaluate import load_eval_data

    if config.split != "train":
        try:
            return load_eval_data(config.data, split="train").coco.images[0].path.parent
        except (FileNotFoundError, ValueError):
            pass
    log(f"INT8 calibrates on the evaluated images ({config.split}): pass --calib DIR to calibrate on others")
    return data.coco.images[0].path.parent


def pareto_front(points: list[tuple[float, float]]) -> list[bool]:
    """For ``(ms, AP)`` pairs: whether each is Pareto-optimal (no other point is at least as fast and at least as
    accurate, and strictly better in one of the two)."""
    flags = []
    for i, (ms, ap) in enumerate(points):
        beaten = any(
            (o_ms <= ms and o_ap >= ap) and (o_ms < ms or o_ap > ap) for j, (o_ms, o_ap) in enumerate(points) if j != i
        )
        flags.append(not beaten)
    return flags


def run_frontier(
    config: FrontierConfig, *, log: Callable[[str], None] = lambda line: None, command: str = ""
) -> dict[str, Any]:
    """Export, evaluate and time every point of ``config``; the JSON-ready report with the Pareto flags.

    Raises:
        FileNotFoundError, ValueError: bad input (found before the first export where it can be);
        ExportError: a point failed its verification.
    """
    from ..eval.evaluate import load_eval_data

    if not Path(config.weights).exists():
        raise FileNotFoundError(f"checkpoint not found: {config.weights}")
    data = load_eval_data(config.data, split=config.split)
    if "int8" in config.precisions and config.calib is None:
        config = dataclasses.replace(config, calib=_calibration_folder(config, data, log))
    settings, facts = _settings(config)
    device = describe_device(config.device)
    with tempfile.TemporaryDirectory(prefix="rtdetr-frontier-") as workdir:
        files = _export_all(config, settings, Path(workdir), log)
        latencies, other_share, description = _measure_latency([path for _, path, _ in files], config, log)
    stats = [summarize(values).as_dict() for values in latencies]
    flags = pareto_front([(stat["p50_ms"], metrics["AP"]) for stat, (_, _, metrics) in zip(stats, files, strict=True)])
    points = [
        FrontierPoint(size, layers, queries, precision, path.name, metrics, stat, flag)
        for ((size, layers, queries, precision), path, metrics), stat, flag in zip(files, stats, flags, strict=True)
    ]
    return {
        "created": datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds"),
        "command": command,
        "config": {k: str(v) if isinstance(v, Path) else v for k, v in dataclasses.asdict(config).items()},
        "device": device,
        "model": {"file": Path(config.weights).name, **facts},
        "data": {"name": data.name, "split": data.split, "images": data.num_images},
        "backend": description,
        "timing": {
            "what": "backend.infer on one preprocessed 720p scene (batch 1), graph alone",
            "rounds": config.rounds,
            "iters_per_round": config.iters,
            "other_cpu_share": other_share,
        },
        "points": [{**dataclasses.asdict(p), "label": p.label} for p in points],
    }
