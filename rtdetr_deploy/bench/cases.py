"""What one benchmark run measures: MODEL x backends x precisions x samplings, resolved to files and checked.

Everything that can be checked without running a model is checked here, before any timing starts: the backend
is installed and accepts the file, the precision and sampling exist for it, and every batch fits the model's
batch range. An ``.onnx``, ``.engine`` or OpenVINO ``.xml`` brings its other precisions as the files
``rtdetr-export`` writes beside it (``model.int8-cpu.onnx``, ``model.fp16.onnx``, ``model.int8.engine``,
``model.openvino-bf16.xml``, ...); a ``.pth`` runs in PyTorch eager and is exported on the fly, into a temporary
folder, for ONNX Runtime.
"""

from __future__ import annotations

import importlib.util
from collections.abc import Callable
from dataclasses import dataclass, replace
from pathlib import Path

from ..artifacts import is_checkpoint, onnx_path, variant_candidates
from ..errors import BackendError
from ..metadata import ModelMetadata
from ..runtime.registry import backend_entry, backend_name_for
from .config import BenchConfig

__all__ = ["Case", "plan_cases", "export_for_onnxruntime"]

# Third-party engine files: their metadata is the JSON sidecar beside them (runtime.engine_sidecar).
_SIDECAR_ENGINES = {".mnn": "mnn", ".tflite": "litert", ".rknn": "rknn", ".ncnn": "ncnn"}
TORCH_MAX_BATCH = 256


@dataclass(frozen=True)
class Case:
    """One measured configuration (timed at every requested batch size).

    Attributes:
        backend: ``onnxruntime``, ``torch``, ``tensorrt``, ``openvino`` or ``opencv``.
        precision: ``fp32``, ``fp16``, ``int8`` or ``bf16`` (OpenVINO).
        sampling: ``discrete`` or ``bilinear``.
        device: ``cpu`` or ``cuda:N``.
        source: the model file the user gave.
        path: the file the backend opens (``None`` until a ``.pth`` has been exported for ONNX Runtime).
        cuda_graph: torch on CUDA: capture and replay CUDA graphs.
    """

    backend: str
    precision: str
    sampling: str
    device: str
    source: Path
    path: Path | None
    cuda_graph: bool = False

    @property
    def label(self) -> str:
        """``"onnxruntime int8 discrete"``, ``"torch fp16 discrete + CUDA graph"``, ..."""
        graph = " + CUDA graph" if self.cuda_graph else ""
        return f"{self.backend} {self.precision} {self.sampling}{graph}"


def _check_installed(backend: str) -> None:
    entry = backend_entry(backend)
    if importlib.util.find_spec(entry.requires) is None:
        raise BackendError(f"the {backend} backend needs {entry.requires}, which is not installed: {entry.install}")


def _check_backend_accepts(backend: str, model: Path, device: str) -> None:
    suffix = model.suffix.lower()
    if backend == "tensorrt" and suffix != ".engine":
        raise ValueError(f"the tensorrt backend runs engines built by rtdetr-export --trt; {model.name} is not one")
    if backend == "torch" and not is_checkpoint(model):
        raise ValueError(
            f"the torch backend runs checkpoints (.pth, .safetensors, model folders); {model.name} is an exported model"
        )
    if backend == "onnxruntime" and suffix == ".engine":
        raise ValueError(f"{model.name} is a TensorRT engine: it runs on the tensorrt backend only")
    if suffix in _SIDECAR_ENGINES and backend != _SIDECAR_ENGINES[suffix]:
        raise ValueError(f"{model.name} runs on the {_SIDECAR_ENGINES[suffix]} backend only")
    if (backend == "openvino") != (suffix == ".xml"):
        raise ValueError(
            f"{model.name} is an OpenVINO IR: it runs on the openvino backend only"
            if suffix == ".xml"
            else f"the openvino backend runs IRs (.xml) written by rtdetr-export --openvino; {model.name} is not one"
        )
    if backend == "openvino" and device.startswith("cuda"):
        raise ValueError("the openvino backend runs on the CPU (OpenVINO has no CUDA device): pass --device cpu")
    if backend == "opencv" and (suffix != ".onnx" or device.startswith("cuda")):
        raise ValueError(f"the opencv backend runs .onnx files on the CPU (OpenCV DNN); got {model.name} on {device}")
    if backend == "tensorrt" and not device.startswith("cuda"):
        raise ValueError("TensorRT runs on CUDA GPUs only: pass --device cuda:N")
    if backend == "onnxruntime" and device.startswith("cuda"):
        import onnxruntime

        available = onnxruntime.get_available_providers()
        if not {"CUDAExecutionProvider", "TensorrtExecutionProvider"} & set(available):
            raise BackendError(
                f"onnxruntime on {device} needs its CUDA build (pip install onnxruntime-gpu); this build has only "
                f"{', '.join(available)}: pass --device cpu"
            )


def _exported_metadata(path: Path) -> tuple[ModelMetadata, int | None]:
    """Metadata of an ``.onnx``, ``.engine``, ``.xml`` or third-party engine file and its fixed batch (``None`` when
    the batch is dynamic)."""
    if path.suffix.lower() in _SIDECAR_ENGINES:
        from ..runtime.engine_sidecar import read_engine_sidecar

        metadata, _ = read_engine_sidecar(path, engine=_SIDECAR_ENGINES[path.suffix.lower()])
        return metadata, metadata.batch[0]
    if path.suffix.lower() == ".xml":
        from ..runtime.openvino_backend import read_openvino_metadata

        metadata = read_openvino_metadata(path)
        low, _, high = metadata.batch
        return metadata, low if low == high else None
    if path.suffix.lower() == ".engine":
        from ..engine_format import read_sidecar

        sidecar = read_sidecar(path)
        low, _, high = sidecar.batch
        return sidecar.metadata, low if low == high else None
    import onnx

    from ..runtime.onnxruntime_backend import read_onnx_metadata

    metadata = read_onnx_metadata(path)
    graph = onnx.load(str(path), load_external_data=False).graph
    images = next((i for i in graph.input if i.name == "images"), None)
    dims = images.type.tensor_type.shape.dim if images is not None else []
    fixed = dims[0].dim_value if dims and dims[0].HasField("dim_value") and dims[0].dim_value > 0 else None
    return metadata, fixed


def _check_batches(path: Path, metadata: ModelMetadata, fixed: int | None, batches: tuple[int, ...]) -> None:
    low, _, high = metadata.batch
    for batch in batches:
        if fixed is not None and batch != fixed:
            raise ValueError(f"batch {batch}: {path.name} has a fixed batch of {fixed}; pass --batch {fixed}")
        if not low <= batch <= high:
            raise ValueError(
                f"batch {batch} is outside {path.name}'s batch range {low}..{high}; re-export it with "
                f"--dynamic-batch {min(low, batch)},{batch},{max(high, batch)}"
            )


def _exported_cases(config: BenchConfig, backend: str, notes: list[str]) -> list[Case]:
    """Cases of an ``.onnx`` / ``.engine`` / ``.xml``: its own sampling, its precision variants found beside it."""
    model = Path(config.model)
    metadata, fixed = _exported_metadata(model)
    for sampling in config.samplings or ():
        if sampling != metadata.sampling:
            raise ValueError(
                f"{model.name} was exported with {metadata.sampling} sampling; measuring {sampling} sampling needs "
                f"the checkpoint (.pth), which rtdetr-bench exports in each sampling"
            )
    if config.imgsz is not None and tuple(config.imgsz) != tuple(metadata.input_size):
        height, width = metadata.input_size
        raise ValueError(f"{model.name} is fixed at {height}x{width}; --imgsz applies to .pth checkpoints only")
    cases = []
    for precision in config.precisions or (metadata.precision,):
        if precision == metadata.precision:
            path = model
        else:
            candidates = variant_candidates(model, precision, device=config.device)
            names = [path.name for path in candidates]
            found = [path for path in candidates if path.is_file()]
            if not found:
                how = {"int8": "--int8-cpu --calib DIR", "fp16": "--trt fp16"}.get(precision, "")
                if model.suffix.lower() == ".engine":
                    how = f"--trt {precision}"
                if model.suffix.lower() == ".xml":
                    how = f"--openvino {precision}" + (" --calib DIR" if precision == "int8" else "")
                raise ValueError(
                    f"no {precision} model beside {model.name} (looked for {', '.join(names)}); write one with "
                    f"rtdetr-export WEIGHTS {how}".rstrip()
                )
            path = found[0]
            metadata_p, fixed_p = _exported_metadata(path)
            if metadata_p.precision != precision:
                raise ValueError(f"{path.name} says its precision is {metadata_p.precision}, not {precision}")
            _check_batches(path, metadata_p, fixed_p, config.batches)
        if path == model:
            _check_batches(model, metadata, fixed, config.batches)
        cases.append(Case(backend, precision, metadata.sampling, config.device, model, path))
    return cases


def _checkpoint_cases(config: BenchConfig, backend: str, notes: list[str]) -> list[Case]:
    """Cases of a ``.pth``: torch eager (FP32, or FP16 on CUDA) or ONNX Runtime after an export on the fly."""
    model = Path(config.model)
    samplings = config.samplings or ("discrete",)
    if backend == "torch":
        default = ("fp16",) if config.device.startswith("cuda") else ("fp32",)
        supported = ("fp32", "fp16") if config.device.startswith("cuda") else ("fp32",)
    else:
        default, supported = ("fp32",), ("fp32", "fp16", "int8")
    precisions = config.precisions or default
    skipped = [p for p in precisions if p not in supported]
    if skipped:
        why = "runs fp32 or fp16 (fp16 on CUDA only)" if backend == "torch" else "cannot run them"
        notes.append(f"the {backend} backend {why}: not measured in {', '.join(skipped)}")
    if max(config.batches) > TORCH_MAX_BATCH:
        raise ValueError(f"batch {max(config.batches)} exceeds the largest supported batch {TORCH_MAX_BATCH}")
    graph_modes = {"off": (False,), "on": (True,), "both": (False, True)}
    graphs = graph_modes[config.cuda_graph] if backend == "torch" else (False,)
    return [
        Case(backend, precision, sampling, config.device, model, model if backend == "torch" else None, graph)
        for sampling in samplings
        for precision in precisions
        if precision in supported
        for graph in graphs
    ]


def plan_cases(config: BenchConfig) -> tuple[list[Case], list[str]]:
    """Every case ``config`` asks for, with notes on combinations a listed backend cannot run.

    Raises:
        FileNotFoundError: the model, video or calibration folder is missing.
        ValueError: a backend that does not take this file or device, a precision or sampling not available
            for it, a batch outside the model's batch range, options that contradict each other.
        BackendError: a backend that is not installed (the message says how to install it).
    """
    config.check_files()
    if config.video is not None:
        _check_video(Path(config.video))
    model = Path(config.model)
    backends = [backend_name_for(model)] if config.backends == ("auto",) else list(config.backends)
    if config.cuda_graph != "off" and "torch" not in backends:
        raise ValueError("--cuda-graph applies to the torch backend; add --backend torch")
    notes: list[str] = []
    cases: list[Case] = []
    for backend in backends:
        _check_installed(backend)
        _check_backend_accepts(backend, model, config.device)
        planner = _checkpoint_cases if is_checkpoint(model) else _exported_cases
        if not is_checkpoint(model) and (config.decoder_layers, config.queries) != (None, None):
            raise ValueError(
                f"{model.name} has its decoder layers and queries built in: --decoder-layers and --queries apply to "
                "a checkpoint (re-export it with rtdetr-export --decoder-layers N --queries K)"
            )
        cases += planner(config, backend, notes)
    missing = sorted(set(config.precisions or ()) - {case.precision for case in cases})
    if missing:
        hint = ""
        if "int8" in missing and "onnxruntime" not in backends and is_checkpoint(model):
            hint = "; INT8 runs on onnxruntime: add --backend onnxruntime (the checkpoint is exported and quantized)"
        raise ValueError(f"no listed backend runs {', '.join(missing)} on {config.device} ({'; '.join(notes)}){hint}")
    return cases, notes


def _check_video(path: Path) -> None:
    """Refuse a ``--video`` that is an image or that OpenCV cannot open."""
    from ..runtime.sources import IMAGE_SUFFIXES, VideoSource

    if path.suffix.lower() in IMAGE_SUFFIXES:
        raise ValueError(f"--video must be a video file, got the image {path}")
    VideoSource(str(path), kind="video", label=str(path)).close()


def export_for_onnxruntime(
    cases: list[Case],
    config: BenchConfig,
    workdir: Path,
    *,
    log: Callable[[str], None] = lambda line: None,
) -> list[Case]:
    """Export the ``.pth`` of every ONNX Runtime case that has no file yet, through the export pipeline (one export
    per sampling, covering the requested batches with a dynamic batch ``1..max``).

    INT8 is calibrated on ``config.calib``, or on generated scenes (fine for timing, not for accuracy).
    """
    pending = [case for case in cases if case.path is None]
    if not pending:
        return cases
    from ..export.config import ExportConfig
    from ..export.pipeline import export

    exported: dict[tuple[str, str], Path] = {}
    for sampling in dict.fromkeys(case.sampling for case in pending):
        precisions = {case.precision for case in pending if case.sampling == sampling}
        calib = config.calib
        if "int8" in precisions and calib is None:
            calib = _write_scenes(workdir / "calibration", count=8)
        export_config = ExportConfig(
            weights=Path(config.model),
            out_dir=workdir / sampling,
            imgsz=config.imgsz,
            sampling=sampling,
            batch=(1, config.batches[0], max(config.batches)),
            fp16="fp16" in precisions,
            int8_cpu="int8" in precisions,
            calib=calib if "int8" in precisions else None,
            names=config.names,
            decoder_layers=config.decoder_layers,
            queries=config.queries,
        )
        log(f"exporting {Path(config.model).name} ({sampling} sampling) for onnxruntime into a temporary folder")
        result = export(export_config, verbose=False)
        folder, stem = result.onnx.parent, result.onnx.stem
        for precision in precisions:
            exported[(sampling, precision)] = onnx_path(folder, stem, "int8-cpu" if precision == "int8" else precision)
    return [
        case if case.path is not None else replace(case, path=exported[(case.sampling, case.precision)])
        for case in cases
    ]


def _write_scenes(folder: Path, *, count: int) -> Path:
    import cv2

    from ..data.scenes import cluttered_scenes

    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(cluttered_scenes(count, seed=1000)):
        cv2.imwrite(str(folder / f"{index:03d}.png"), image)
    return folder
