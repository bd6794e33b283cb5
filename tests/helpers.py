"""Helpers shared by tests (importable as ``helpers`` through pytest's pythonpath)."""

from __future__ import annotations

# Classes of the tiny test checkpoint: non-contiguous category ids, as in COCO.
CLASS_NAMES = ["circle", "square", "triangle"]
CATEGORY_IDS = [1, 5, 9]


def randomize_heads(model, *, seed: int = 0, std: float = 0.05) -> None:  # noqa: ANN001 - torch is optional here
    """Give the zero-initialised box heads and the class heads random weights so outputs vary per query."""
    import torch

    generator = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "bbox_head" in name or "score_head" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * std)


def synthetic_classes_checkpoint(path, *, imgsz: int = 128):  # noqa: ANN001, ANN201 - pathlib.Path in and out
    """A tiny checkpoint with the synthetic set's classes (seeded random weights, random heads) at ``path``."""
    import torch

    from rtdetr_deploy.data import CATEGORIES
    from rtdetr_deploy.models import build_model, get_preset, save_model

    torch.manual_seed(0)
    model = build_model(get_preset("tiny").with_eval_size((imgsz, imgsz)), num_classes=len(CATEGORIES))
    randomize_heads(model)
    return save_model(model, path, class_names=list(CATEGORIES.values()), category_ids=list(CATEGORIES))


def tiny_deploy_onnx(
    folder,  # noqa: ANN001 - a pathlib.Path
    *,
    input_size: tuple[int, int] = (320, 320),
    topk: int = 100,
    batch: tuple[int, int, int] = (1, 2, 4),
    keep_unsimplified: bool = False,
):  # noqa: ANN201 - returns a pathlib.Path
    """The tiny preset (discrete sampling, random heads and sampling offsets) exported to ``folder/tiny.onnx``.

    Box and class heads start at zero and sampling offsets ignore the query: randomising them makes boxes,
    scores and sampling locations depend on the image. With ``keep_unsimplified`` the traced graph is also
    kept as ``tiny.unsimplified.onnx``.
    """
    import onnx
    import torch

    from rtdetr_deploy.export.onnx_export import export_probe, strip_probe
    from rtdetr_deploy.metadata import ModelMetadata
    from rtdetr_deploy.models import build_model, get_preset

    torch.manual_seed(0)
    model = build_model(get_preset("tiny").with_eval_size(input_size), num_classes=3, sampling="discrete")
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():
        for name, param in model.named_parameters():
            if "bbox_head" in name or "score_head" in name or "sampling_offsets.weight" in name:
                param.copy_(torch.randn(param.shape, generator=generator) * 0.05)
    metadata = ModelMetadata(
        preset="tiny",
        input_size=input_size,
        class_names=tuple(CLASS_NAMES),
        category_ids=tuple(CATEGORY_IDS),
        topk=topk,
        batch=batch,
    )
    unsimplified = folder / "tiny.unsimplified.onnx" if keep_unsimplified else None
    probe = export_probe(model.eval(), folder / "tiny.probe.onnx", metadata=metadata, keep_unsimplified=unsimplified)
    path = folder / "tiny.onnx"
    onnx.save(strip_probe(onnx.load(str(probe.path))), str(path))
    probe.path.unlink()
    return path


def bench_record(backend="onnxruntime", precision="fp32", sampling="discrete", batch=1, p50=100.0, **extra) -> dict:
    """One result record of ``rtdetr-bench`` as its JSON holds it, for the comparison and goal tables."""
    graph = extra.pop("cuda_graph", False)
    device = extra.pop("device", "cpu")
    label = f"{backend} {precision} {sampling}" + (" + CUDA graph" if graph else "")
    return {
        "case": label,
        "backend": backend,
        "precision": precision,
        "sampling": sampling,
        "device": device,
        "cuda_graph": graph,
        "batch": batch,
        "latency": {"p50_ms": p50, "mean_ms": p50, "images_per_s": batch * 1e3 / p50},
        "stages": None,
        "pipeline": None,
        **extra,
    }


def video_facts(path) -> tuple[int, float, tuple[int, int]]:  # noqa: ANN001 - a pathlib.Path or str
    """Frames actually decodable, frame rate and (width, height) of a video file, read with OpenCV."""
    import cv2

    capture = cv2.VideoCapture(str(path))
    assert capture.isOpened(), f"{path} is not playable"
    fps = capture.get(cv2.CAP_PROP_FPS)
    size = (int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT)))
    count = 0
    while capture.read()[0]:
        count += 1
    capture.release()
    return count, fps, size


_BLOCK_TORCH = """
import importlib.abc, importlib.util, sys

class BlockTorch(importlib.abc.MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name == "torch" or name.startswith(("torch.", "torchvision")):
            raise ImportError(f"{name} is blocked: this code path must not need torch")
        return None

sys.meta_path.insert(0, BlockTorch())
real_find_spec = importlib.util.find_spec
importlib.util.find_spec = lambda name, *a: None if name == "torch" else real_find_spec(name, *a)
"""


def run_without_torch(code: str):  # noqa: ANN201 - a subprocess.CompletedProcess
    """Run ``code`` (dedented) in a fresh interpreter where importing torch or torchvision fails."""
    import subprocess
    import sys
    import textwrap

    return subprocess.run(
        [sys.executable, "-c", _BLOCK_TORCH + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )


def broken_int8_value_proj(int8_in, out, *, factor: float = 2.0):  # noqa: ANN001, ANN201 - pathlib.Path in and out
    """An INT8 graph with its decoder value projection dequantized at ``factor`` times the calibrated scale
    (``benchmarks/acceptance_calibration.py``, the one home of this deliberate break)."""
    import importlib.util
    from pathlib import Path

    path = Path(__file__).resolve().parents[1] / "benchmarks" / "acceptance_calibration.py"
    spec = importlib.util.spec_from_file_location("acceptance_calibration", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module.wrong_value_proj_scale(Path(int8_in), Path(out), factor)


def assert_top_detections_agree(reference, other, *, top=20, score_tol=1e-3, box_px=1.0) -> None:  # noqa: ANN001
    """Every one of the ``top`` best reference detections of each image has a counterpart in ``other``: the same
    class, the score within ``score_tol`` and every box coordinate within ``box_px``. Both are lists of
    ``(boxes_xyxy, scores, class_ids)`` per image, best first (plain numpy, independent of the project's checks)."""
    import numpy as np

    assert len(reference) == len(other)
    for image, ((ref_boxes, ref_scores, ref_classes), (boxes, scores, classes)) in enumerate(
        zip(reference, other, strict=True)
    ):
        boxes, scores, classes = np.asarray(boxes), np.asarray(scores), np.asarray(classes)
        for rank in range(min(top, len(ref_scores))):
            candidates = (
                (classes == ref_classes[rank])
                & (np.abs(scores - ref_scores[rank]) <= score_tol)
                & (np.abs(boxes - ref_boxes[rank]).max(axis=1) <= box_px)
            )
            assert candidates.any(), (
                f"image {image}, rank {rank}: class {ref_classes[rank]} score {ref_scores[rank]:.5f} box "
                f"{np.round(ref_boxes[rank], 1).tolist()} has no counterpart"
            )


def scenes_and_photos() -> list:
    """Four generated cluttered scenes (seed 3) and the shared photographs (when ``../shared`` is present), BGR:
    the images the engine backend tests compare on."""
    from pathlib import Path

    from rtdetr_deploy.data.scenes import cluttered_scenes
    from rtdetr_deploy.runtime.sources import read_image

    photos_dir = Path(__file__).resolve().parents[2] / "shared" / "testdata" / "images"
    photos = (
        sorted(p for p in photos_dir.glob("*") if p.suffix.lower() in (".jpg", ".png")) if photos_dir.is_dir() else []
    )
    return cluttered_scenes(4, seed=3) + [read_image(p)[0] for p in photos]


def detections_of(model, backend: str, images) -> list:  # noqa: ANN001 - a model path and a list of BGR images
    """``(boxes_xyxy, scores, class_ids)`` per image from a ``Detector`` on ``backend`` at score 0 (all top-k), the
    form ``assert_top_detections_agree`` compares."""
    from rtdetr_deploy.runtime import Detector

    with Detector(model, backend=backend, conf=0.0) as detector:
        return [(d.boxes_xyxy, d.scores, d.class_ids) for d in (detector(image) for image in images)]
