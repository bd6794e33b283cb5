"""Two CPU processes under torchrun (gloo): DistributedDataParallel, sharded data, rank-0 checkpoints and logs."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from rtdetr_deploy import load_model  # noqa: E402

REPO = Path(__file__).resolve().parents[2]


def test_two_gloo_processes_train_evaluate_and_resume(tiny_data: Path, tmp_path: Path):
    out = tmp_path / "ddp"
    command = [
        sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node", "2",
        "-m", "rtdetr_deploy.train", "--data", str(tiny_data), "--preset", "tiny", "--imgsz", "64",
        "--batch", "4", "--workers", "0", "--device", "cpu", "--no-progress", "--out", str(out),
        "--checkpoint-steps", "1",
    ]  # fmt: skip
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    first = subprocess.run([*command, "--epochs", "1"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300)
    assert first.returncode == 0, first.stderr[-3000:]
    assert "x 2 processes" in first.stdout
    assert first.stdout.count("epoch     min") == 1, "only rank 0 prints the table"
    state = torch.load(out / "last.pth", map_location="cpu", weights_only=True)
    # 8 images over 2 processes with 2 images each per step: 2 steps per epoch.
    assert state["train"]["step"] == 2 and len(state["train"]["rng"]) == 2
    assert not torch.equal(state["train"]["rng"][0]["torch"], state["train"]["rng"][1]["torch"])

    second = subprocess.run(
        [*command, "--epochs", "2", "--resume"], cwd=REPO, env=env, capture_output=True, text=True, timeout=300
    )
    assert second.returncode == 0, second.stderr[-3000:]
    history = json.loads((out / "history.json").read_text())
    assert [r["epoch"] for r in history] == [1, 2]
    assert torch.load(out / "last.pth", map_location="cpu", weights_only=True)["train"]["step"] == 4
    assert load_model(out / "best.pth").info.category_ids == (3, 7, 12, 18, 25)
