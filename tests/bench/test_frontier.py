"""The frontier: Pareto flags against a hand-worked case, AP of every point against an independent evaluation, and
the command's refusals."""

from __future__ import annotations

import dataclasses
import json
import shutil
from pathlib import Path

import pytest

from rtdetr_deploy.bench.frontier import FrontierConfig, default_sizes, pareto_front

TINY = Path(__file__).parents[2] / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"


def test_pareto_front_hand_worked():
    # (ms, AP): b is slower and worse than a; d ties a on speed with a higher AP, so it beats a; e is the fastest.
    points = [(10.0, 0.30), (12.0, 0.25), (20.0, 0.50), (10.0, 0.35), (5.0, 0.10), (20.0, 0.50)]
    assert pareto_front(points) == [False, False, True, True, True, True]


def test_default_sizes_are_multiples_of_32_without_repeats():
    assert default_sizes((640, 640)) == ((640, 640), (512, 512), (320, 320))
    assert default_sizes((256, 256)) == ((256, 256), (192, 192), (128, 128))
    assert default_sizes((64, 64)) == ((64, 64), (32, 32))


@pytest.fixture(scope="module")
def small_set(tmp_path_factory) -> Path:
    """The first 6 images of the embedded synthetic val split as a COCO folder."""
    from rtdetr_deploy.data import ensure_synthetic

    paths = ensure_synthetic()
    full = json.loads(Path(paths.val_annotations).read_text())
    images = full["images"][:6]
    keep = {image["id"] for image in images}
    root = tmp_path_factory.mktemp("small_set")
    (root / "images" / "val").mkdir(parents=True)
    (root / "annotations").mkdir()
    for image in images:
        shutil.copy(Path(paths.val_images) / image["file_name"], root / "images" / "val" / image["file_name"])
    subset = {**full, "images": images, "annotations": [a for a in full["annotations"] if a["image_id"] in keep]}
    (root / "annotations" / "instances_val.json").write_text(json.dumps(subset))
    return root


def _torch_ap(layers: int, queries: int, size: tuple[int, int], data) -> float:  # noqa: ANN001 - EvalData
    """AP of the PyTorch model told the same knobs, run on the torch backend (not the exported file) and scored
    with pycocotools directly."""
    from rtdetr_deploy.coco import coco_box_metrics
    from rtdetr_deploy.models import load_model
    from rtdetr_deploy.runtime.detector import Detector
    from rtdetr_deploy.runtime.sources import read_image
    from rtdetr_deploy.runtime.torch_backend import TorchBackend

    model = load_model(TINY, sampling="bilinear").set_speed_knobs(decoder_layers=layers, queries=queries)
    model.set_eval_size(size)
    model.info = dataclasses.replace(model.info, input_size=size)
    results = []
    with Detector(TorchBackend.from_module(model.deploy()), conf=0.0) as detector:
        for record in data.coco.images:
            image, _ = read_image(record.path)
            results += detector.detect([image])[0].to_coco(record.id)
    return coco_box_metrics(data.coco.coco, results)[0]["AP"]


def test_every_point_gets_the_ap_of_its_own_setting(small_set):
    pytest.importorskip("torch")
    pytest.importorskip("onnxruntime")
    from rtdetr_deploy.bench.frontier import run_frontier
    from rtdetr_deploy.eval.evaluate import load_eval_data

    config = FrontierConfig(
        weights=TINY,
        data=str(small_set),
        sizes=((128, 128),),
        decoder_layers=(1, 2),
        queries=(50,),
        sampling="bilinear",
        warmup=0,
        rounds=1,
        iters=1,
    )
    report = run_frontier(config)
    points = report["points"]
    assert [(p["decoder_layers"], p["queries"], p["size"]) for p in points] == [
        (1, 50, (128, 128)),
        (2, 50, (128, 128)),
    ]
    data = load_eval_data(small_set)
    for point in points:
        assert point["latency"]["runs"] == 1
        expected = _torch_ap(point["decoder_layers"], point["queries"], (128, 128), data)
        assert point["metrics"]["AP"] == pytest.approx(expected, abs=0.01)
    assert points[0]["metrics"]["AP"] != points[1]["metrics"]["AP"]
    assert any(p["pareto"] for p in points)


def test_device_must_be_cpu_or_cuda():
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        FrontierConfig(weights=TINY, data="synthetic", device="gpu")
    assert FrontierConfig(weights=TINY, data="synthetic", device="cuda:0").device == "cuda:0"


@pytest.mark.gpu
def test_frontier_times_on_a_gpu(small_set):
    """On a CUDA machine the same command times the graphs on ONNX Runtime's GPU provider; AP as on the CPU."""
    ort = pytest.importorskip("onnxruntime")
    if "CUDAExecutionProvider" not in ort.get_available_providers():
        pytest.skip("needs onnxruntime with CUDA (onnxruntime-gpu) and a CUDA device")
    from rtdetr_deploy.bench.frontier import run_frontier

    config = FrontierConfig(
        weights=TINY,
        data=str(small_set),
        sizes=((128, 128),),
        decoder_layers=(2,),
        queries=(50,),
        precisions=("fp32", "fp16"),
        sampling="bilinear",
        warmup=1,
        rounds=1,
        iters=2,
        device="cuda:0",
    )
    report = run_frontier(config)
    assert "cuda" in report["backend"].lower() or "tensorrt" in report["backend"].lower()
    fp32, fp16 = report["points"]
    assert abs(fp32["metrics"]["AP"] - fp16["metrics"]["AP"]) <= 0.02
