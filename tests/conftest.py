"""Shared fixtures: a small checkpoint of the tiny preset, its exported ONNX, and a tiny synthetic COCO set."""

from __future__ import annotations

import importlib.util
import os
import subprocess
import sys
import warnings
from collections.abc import Iterator
from pathlib import Path

import pytest

DATA_DIR = Path(__file__).parent / "data"
# The [track] packages, installed for the tests without their dependencies when the environment lacks them:
# trackers declares opencv-python, whose cv2 would overwrite opencv-python-headless's. Their other dependencies
# are in the dev extra (pydeprecate, defusedxml, requests; the rest come with the other extras). Exact versions so
# that list stays right; a bump is checked by running the tracking tests.
TRACK_PACKAGES = ("trackers==2.6.1", "supervision==0.31.2")


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


@pytest.fixture(scope="session")
def track_packages(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[None]:
    """Make ``trackers`` and ``supervision`` importable, here and in subprocesses, without opencv-python.

    Those of ``TRACK_PACKAGES`` the environment lacks are put by ``pip install --no-deps --target`` into a folder
    of pytest's cache (later runs reuse it), which is added to ``sys.path`` and ``PYTHONPATH`` for the session.
    Where pip fails (no registry), the tests' own ``importorskip`` skips them and a warning gives pip's reason; a
    package that installs but does not import (a dependency missing from the dev extra) fails the tests.
    """
    missing = [spec for spec in TRACK_PACKAGES if importlib.util.find_spec(spec.split("==")[0]) is None]
    if not missing:
        yield
        return
    name = "track-packages-" + "-".join(spec.replace("==", "-") for spec in missing)
    cache = getattr(request.config, "cache", None)
    folder = cache.mkdir(name) if cache is not None else tmp_path_factory.mktemp(name)
    if not (folder / "complete").exists():
        command = [sys.executable, "-m", "pip", "install", "--quiet", "--no-deps", "--no-compile", "--upgrade"]
        command += ["--target", str(folder), *missing]
        try:
            proc = subprocess.run(command, capture_output=True, text=True, timeout=300)
            failure = None if proc.returncode == 0 else (proc.stderr.strip().splitlines() or ["no message"])[-1]
        except subprocess.TimeoutExpired:
            failure = "pip ran for more than 300 s"
        if failure is not None:
            reason = failure
            warnings.warn(f"could not install {', '.join(missing)} for the tracking tests: {reason}", stacklevel=1)
            yield
            return
        (folder / "complete").write_text("\n".join(missing) + "\n")
    path = os.environ.get("PYTHONPATH")
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(sys, "path", [*sys.path, str(folder)])  # after site-packages: installed packages come first
        patch.setenv("PYTHONPATH", os.pathsep.join([path, str(folder)]) if path else str(folder))
        importlib.invalidate_caches()
        try:
            for spec in missing:
                importlib.import_module(spec.split("==")[0])
        except ImportError as exc:
            pytest.fail(f"{spec} installed without dependencies does not import ({exc}): the dev extra lacks one")
        yield
