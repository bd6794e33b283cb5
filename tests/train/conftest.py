"""Fixtures of the trainer tests: a tiny generated COCO set and a fast TrainConfig factory."""

from __future__ import annotations

from dataclasses import replace
from pathlib import Path

import pytest

pytest.importorskip("torch")
pytest.importorskip("scipy")
pytest.importorskip("faster_coco_eval")


@pytest.fixture(autouse=True)
def one_thread():
    """One intra-op thread: these models are tiny, and on a busy 2-core machine two spinning OpenMP threads
    slow each step down many times over."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture
def make_cfg(tiny_data: Path, tmp_path: Path):
    """``make_cfg(**overrides)``: the tiny preset at 64 px, batch 4, no workers, quick warm-up, quiet."""
    from rtdetr_deploy.train import TrainConfig

    base = TrainConfig(
        data=tiny_data,
        out=tmp_path / "run",
        preset="tiny",
        imgsz=(64, 64),
        epochs=2,
        batch=4,
        workers=0,
        threads=1,
        device="cpu",
        lr=4e-4,
        warmup_steps=2,
        ema_warmups=4,
        progress=False,
    )

    def make(**overrides: object) -> TrainConfig:
        return replace(base, **overrides)

    return make
