"""Shared fixtures: a small checkpoint of the tiny preset, its exported ONNX, and a tiny synthetic COCO set."""

from __future__ import annotations

from pathlib import Path

import pytest

DATA_DIR = Path(__file__).parent / "data"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    """Skip GPU tests without CUDA, so CPU-only CI passes and a GPU machine runs everything."""
    try:
        import torch

        has_cuda = torch.cuda.is_available()
    except ImportError:
        has_cuda = False
    skip_gpu = pytest.mark.skip(reason="needs a CUDA device (none found)")
    for item in items:
        if "gpu" in item.keywords and not has_cuda:
            item.add_marker(skip_gpu)


@pytest.fixture(scope="session")
def tiny_checkpoint(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """Checkpoint of the tiny preset (3 classes with ids 1, 5, 9), random weights, package format."""
    torch = pytest.importorskip("torch")
    from helpers import CATEGORY_IDS, CLASS_NAMES, randomize_heads

    from rtdetr_deploy.models import build_model, get_preset, save_model

    torch.manual_seed(0)
    model = build_model(get_preset("tiny"), num_classes=len(CLASS_NAMES))
    randomize_heads(model)
    path = tmp_path_factory.mktemp("tiny") / "tiny.pth"
    return save_model(model, path, class_names=CLASS_NAMES, category_ids=CATEGORY_IDS)


@pytest.fixture(scope="session")
def tiny_onnx(tiny_checkpoint: Path, tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny checkpoint exported by the export pipeline: discrete sampling, batch 1..4, verified."""
    pytest.importorskip("torch")
    from rtdetr_deploy.export.config import ExportConfig
    from rtdetr_deploy.export.pipeline import export

    out_dir = tmp_path_factory.mktemp("tiny_onnx")
    result = export(ExportConfig(weights=tiny_checkpoint, out_dir=out_dir, batch=(1, 2, 4), topk=100), verbose=False)
    return result.onnx


@pytest.fixture(scope="session")
def tiny_data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """8 train and 4 val synthetic images of 64 px (5 classes with ids 3, 7, 12, 18, 25), no video."""
    from rtdetr_deploy.data import SyntheticConfig, generate_synthetic

    root = tmp_path_factory.mktemp("tiny_data")
    generate_synthetic(root, SyntheticConfig(seed=1, num_train=8, num_val=4, image_size=64, video_frames=0))
    return root
