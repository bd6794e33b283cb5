"""``BenchConfig``: what ``rtdetr-bench`` was asked to measure, validated before any model is opened."""

from __future__ import annotations

import difflib
from dataclasses import dataclass
from pathlib import Path

from ..artifacts import MODEL_SUFFIXES, is_checkpoint, is_engine_folder, is_model_folder
from ..coco.names import ClassNames
from ..contract import DEFAULT_SAMPLING, SAMPLING_METHODS
from ..runtime.config import parse_device
from ..runtime.registry import BACKEND_CHOICES

__all__ = [
    "BenchConfig",
    "BENCH_BACKENDS",
    "BENCH_PRECISIONS",
    "CUDA_GRAPH_CHOICES",
    "DEFAULT_ITERS",
    "MODEL_SUFFIXES",
    "SAMPLINGS",
    "parse_batches",
    "parse_list",
]

BENCH_BACKENDS = BACKEND_CHOICES
BENCH_PRECISIONS = ("fp32", "fp16", "int8", "bf16")
SAMPLINGS = (DEFAULT_SAMPLING, *(m for m in SAMPLING_METHODS if m != DEFAULT_SAMPLING))
CUDA_GRAPH_CHOICES = ("off", "on", "both")
DEFAULT_ITERS = 50
# What the bench plans: exported models and .pth checkpoints, and transformers model folders where a .pth goes.
_OPENVINO_SUFFIX = ".xml"
_BENCH_SUFFIXES = tuple(suffix for suffix in MODEL_SUFFIXES if suffix != _OPENVINO_SUFFIX)


def _choose(kind: str, value: str, choices: tuple[str, ...]) -> str:
    """``value`` if it is one of ``choices``, else ``ValueError`` naming them (with a close-match hint)."""
    if value in choices:
        return value
    hint = difflib.get_close_matches(value, choices, n=1)
    suggestion = f" (did you mean {hint[0]!r}?)" if hint else ""
    raise ValueError(f"unknown {kind} {value!r}{suggestion}; choose from {', '.join(choices)}")


def parse_list(text: str) -> tuple[str, ...]:
    """``"a,B, c,a"`` -> ``("a", "b", "c")``: lower-cased, empty items and repeats dropped, order kept."""
    items = [item.strip().lower() for item in str(text).split(",") if item.strip()]
    return tuple(dict.fromkeys(items))


def parse_batches(text: str) -> tuple[int, ...]:
    """``"1,4,8"`` -> ``(1, 4, 8)``; raises ``ValueError`` for anything but positive integers."""
    try:
        values = tuple(int(item) for item in parse_list(text))
    except ValueError:
        raise ValueError(f"--batch must be comma-separated positive integers, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise ValueError(f"--batch must be comma-separated positive integers, got {text!r}")
    return tuple(sorted(set(values)))


@dataclass(frozen=True)
class BenchConfig:
    """Options of one benchmark run (the CLI maps its flags onto this and nothing else).

    Attributes:
        model: ``.onnx``, ``.engine``, OpenVINO ``.xml`` or ``.pth`` file, or a transformers model folder (as a
            ``.pth``).
        backends: runtimes to measure; ``"auto"`` picks the one the suffix names (a ``.pth`` can also run on
            ``onnxruntime``: it is exported on the fly into a temporary folder).
        precisions: ``fp32``/``fp16``/``int8``/``bf16`` (OpenVINO IRs); ``None`` measures the model's own (torch:
            FP16 on CUDA, FP32 on CPU). Other precisions of an ``.onnx``/``.engine``/``.xml`` are the files
            ``rtdetr-export`` writes beside it.
        samplings: ``discrete``/``bilinear``; ``None`` measures the model's own (``.pth``: discrete). Only a
            ``.pth`` can be measured in both, since an exported graph has its sampling built in.
        device: ``"cpu"`` or ``"cuda:N"``.
        batches: batch sizes, ascending.
        imgsz: ``(height, width)`` for a ``.pth``; ``None``: the checkpoint's. Exported models have a fixed size.
        warmup: untimed iterations before timing each case.
        iters: timed iterations per case; ``seconds`` times for a duration instead (``DEFAULT_ITERS`` if neither).
        seconds: timed seconds per case.
        video: a video file for the per-stage split and the end-to-end pipeline; ``None`` skips both.
        frames: frames of the video used per case and batch.
        cuda_graph: torch on CUDA: ``"off"``, ``"on"`` (capture and replay) or ``"both"`` (measure each).
        calib: calibration images for INT8 exported on the fly from a ``.pth``; ``None``: generated images.
        matmul_peak: measure the machine's FP32 matrix-multiply rate (CPU runs) to rate the model's GFLOP/s.
        json_path, markdown_path, plot_path: where to write the report, its tables and its plot.
        names: class names and category ids for a checkpoint (``--names``; recorded in its on-the-fly export).
        decoder_layers, queries: speed knobs of a checkpoint (``RTDETR.set_speed_knobs``), applied to the torch
            model and to the export on the fly; ``None``: the model's own. An exported file has them built in.
    """

    model: Path
    backends: tuple[str, ...] = ("auto",)
    precisions: tuple[str, ...] | None = None
    samplings: tuple[str, ...] | None = None
    device: str = "cpu"
    batches: tuple[int, ...] = (1,)
    imgsz: tuple[int, int] | None = None
    warmup: int = 10
    iters: int | None = None
    seconds: float | None = None
    video: Path | None = None
    frames: int = 64
    cuda_graph: str = "off"
    calib: Path | None = None
    matmul_peak: bool = True
    json_path: Path | None = None
    markdown_path: Path | None = None
    plot_path: Path | None = None
    names: ClassNames | None = None
    decoder_layers: int | None = None
    queries: int | None = None

    def __post_init__(self) -> None:
        if not self.backends:
            raise ValueError(f"--backend is empty; choose from {', '.join(BENCH_BACKENDS)}")
        for backend in self.backends:
            _choose("backend", backend, BENCH_BACKENDS)
        if "auto" in self.backends and len(self.backends) > 1:
            raise ValueError("--backend auto picks one backend by the file suffix; name the backends instead")
        for precision in self.precisions or ():
            _choose("precision", precision, BENCH_PRECISIONS)
        if self.precisions is not None and not self.precisions:
            raise ValueError(f"--precision is empty; choose from {', '.join(BENCH_PRECISIONS)}")
        for sampling in self.samplings or ():
            _choose("sampling", sampling, SAMPLINGS)
        if self.samplings is not None and not self.samplings:
            raise ValueError(f"--sampling is empty; choose from {', '.join(SAMPLINGS)}")
        parse_device(self.device)
        if not self.batches or any(isinstance(b, bool) or not isinstance(b, int) or b < 1 for b in self.batches):
            raise ValueError(f"batch sizes must be positive integers, got {self.batches}")
        if self.imgsz is not None and (len(self.imgsz) != 2 or any(s <= 0 or s % 32 for s in self.imgsz)):
            raise ValueError(f"--imgsz must be positive multiples of 32, got {self.imgsz}")
        if self.warmup < 0:
            raise ValueError(f"--warmup must be 0 or more, got {self.warmup}")
        if self.iters is not None and self.seconds is not None:
            raise ValueError("give either --iters or --seconds, not both")
        if self.iters is not None and self.iters < 1:
            raise ValueError(f"--iters must be positive, got {self.iters}")
        if self.seconds is not None and not self.seconds > 0:
            raise ValueError(f"--seconds must be positive, got {self.seconds}")
        if self.frames < 1:
            raise ValueError(f"--frames must be positive, got {self.frames}")
        _choose("--cuda-graph mode", self.cuda_graph, CUDA_GRAPH_CHOICES)
        if self.cuda_graph != "off" and not self.device.startswith("cuda"):
            raise ValueError("--cuda-graph needs a CUDA device: pass --device cuda:N")
        for flag, value in (("--decoder-layers", self.decoder_layers), ("--queries", self.queries)):
            if value is not None and value < 1:
                raise ValueError(f"{flag} must be positive, got {value}")
        suffix = Path(self.model).suffix.lower()
        if suffix not in (*_BENCH_SUFFIXES, _OPENVINO_SUFFIX) and not is_model_folder(self.model):
            raise ValueError(
                f"cannot benchmark {Path(self.model).name!r}: expected a {', '.join(_BENCH_SUFFIXES)} file, an "
                f"OpenVINO IR ({_OPENVINO_SUFFIX}) or a transformers model folder (with config.json)"
            )
        if self.names is not None and not is_checkpoint(self.model):
            raise ValueError(
                f"--names applies to checkpoints (.pth, .safetensors, model folders); {Path(self.model).name} keeps "
                "the names it was exported with"
            )

    @property
    def timed_iters(self) -> int | None:
        """Timed iterations per case, or ``None`` when timing by ``seconds``."""
        if self.seconds is not None:
            return None
        return self.iters if self.iters is not None else DEFAULT_ITERS

    def check_files(self) -> None:
        """Raise ``FileNotFoundError`` for a missing model, video or calibration folder."""
        model = Path(self.model)
        if not model.is_file() and not is_model_folder(model) and not (is_engine_folder(model) and model.is_dir()):
            raise FileNotFoundError(f"model not found: {self.model}")
        if self.video is not None and not Path(self.video).is_file():
            raise FileNotFoundError(f"video not found: {self.video}")
        if self.calib is not None and not Path(self.calib).is_dir():
            raise FileNotFoundError(f"calibration folder not found: {self.calib}")
