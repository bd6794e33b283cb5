"""End-to-end training on a tiny generated set: learning, checkpoints, exact resume, init, discrete sampling."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

torch = pytest.importorskip("torch")

from rtdetr_deploy import load_model  # noqa: E402
from rtdetr_deploy.models import build_model, get_preset, save_model  # noqa: E402
from rtdetr_deploy.train import fit  # noqa: E402
from rtdetr_deploy.train.checkpoint import load_init_weights  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
ENV = {**os.environ, "OMP_NUM_THREADS": "1"}


class Killed(Exception):
    pass


def _state(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def _assert_same_training_state(a: dict, b: dict) -> None:
    assert a["train"]["step"] == b["train"]["step"]
    assert a["train"]["epoch"] == b["train"]["epoch"]
    for key in ("model",):
        for name, tensor in a[key].items():
            assert torch.equal(tensor, b[key][name]), f"{key}.{name}"
    for name, tensor in a["ema"]["module"].items():
        assert torch.equal(tensor, b["ema"]["module"][name]), f"ema.{name}"
    assert a["ema"]["updates"] == b["ema"]["updates"]
    assert a["lr_scheduler"] == b["lr_scheduler"]
    for pid, state in a["optimizer"]["state"].items():
        for k, v in state.items():
            assert torch.equal(v, b["optimizer"]["state"][pid][k]), f"optimizer {pid}.{k}"
    assert torch.equal(a["train"]["rng"][0]["torch"], b["train"]["rng"][0]["torch"])


@pytest.fixture(scope="module")
def learned(tiny_data: Path, tmp_path_factory: pytest.TempPathFactory):
    """30 steps at a high learning rate without strong augmentation: enough for the loss to fall clearly."""
    from rtdetr_deploy.train import TrainConfig

    torch.set_num_threads(1)
    cfg = TrainConfig(
        data=tiny_data,
        out=tmp_path_factory.mktemp("learned"),
        preset="tiny",
        imgsz=(64, 64),
        epochs=15,
        stop_epoch=0,
        batch=4,
        workers=0,
        threads=1,
        device="cpu",
        lr=1e-3,
        warmup_steps=2,
        ema_warmups=4,
        progress=False,
    )
    return cfg, fit(cfg, log=lambda line: None)


def test_loss_falls_and_the_checkpoint_loads_with_its_classes(learned):
    cfg, result = learned
    losses = [r["loss"] for r in result.history]
    assert len(losses) == 15 and result.steps == 30
    # Counted in steps, seeded, on one thread: the run does not depend on the machine's speed or load. The loss
    # falls: the last three epochs average below the first three.
    assert sum(losses[-3:]) < sum(losses[:3]), losses
    model = load_model(result.last)
    assert model.info.class_names == ("circle", "square", "triangle", "star", "cross")
    assert model.info.category_ids == (3, 7, 12, 18, 25)
    assert model.info.input_size == (64, 64) and model.info.config.eval_size == (64, 64)
    assert result.best.is_file()
    for name in ("history.csv", "history.json", "training.png"):
        assert (cfg.out / name).is_file(), name
    assert {"AP", "AP50", "loss_vfl", "lr", "minutes"} <= set(result.history[-1])


def test_the_trained_checkpoint_exports_and_runs_in_the_runtime(learned, tmp_path):
    _, result = learned
    from rtdetr_deploy.export.config import ExportConfig
    from rtdetr_deploy.export.pipeline import export

    exported = export(ExportConfig(weights=result.last, out_dir=tmp_path), verbose=False)
    assert exported.report.passed
    runtime = pytest.importorskip("rtdetr_deploy.runtime")
    import numpy as np

    with runtime.Detector(exported.onnx, backend="onnxruntime", conf=0.0) as detector:
        detections = detector(np.zeros((64, 80, 3), np.uint8))
    assert len(detections) > 0
    assert {entry["category_id"] for entry in detections.to_coco(1)} <= {3, 7, 12, 18, 25}


def test_interrupted_run_resumes_to_the_identical_state(make_cfg, tmp_path):
    reference = make_cfg(out=tmp_path / "reference", epochs=3, stop_epoch=2, checkpoint_steps=1)
    fit(reference, log=lambda line: None)

    interrupted = make_cfg(out=tmp_path / "interrupted", epochs=3, stop_epoch=2, checkpoint_steps=1)

    def crash(epoch: int, batch: int) -> None:
        if (epoch, batch) == (1, 1):
            raise Killed

    with pytest.raises(Killed):
        fit(interrupted, log=lambda line: None, on_step=crash)
    saved = _state(interrupted.out / "last.pth")
    assert (saved["train"]["epoch"], saved["train"]["batch"], saved["train"]["step"]) == (1, 1, 3)
    resumed = fit(make_cfg(out=interrupted.out, epochs=3, stop_epoch=2, resume=interrupted.out / "last.pth"))
    assert resumed.steps == 6
    _assert_same_training_state(_state(reference.out / "last.pth"), _state(interrupted.out / "last.pth"))


_KILLED_RUN = """
import sys, time
from pathlib import Path
from rtdetr_deploy.cli.train import parse_args
from rtdetr_deploy.train import TrainConfig, fit

marker = Path(sys.argv[1])

def on_step(epoch, batch):
    if (epoch, batch) == (1, 1):  # step 3, in the middle of the second epoch: its checkpoint is written
        marker.write_text("step 3")
        time.sleep(600)

fit(TrainConfig(**vars(parse_args(sys.argv[2:]))), on_step=on_step, log=lambda line: None)
"""


def test_kill_9_mid_epoch_then_resume_matches_an_uninterrupted_run(make_cfg, tmp_path):
    reference = make_cfg(out=tmp_path / "reference", epochs=6, stop_epoch=3, checkpoint_steps=1)
    fit(reference, log=lambda line: None)

    out = tmp_path / "killed"
    args = [
        "--data", str(reference.data), "--preset", "tiny", "--imgsz", "64", "--epochs", "6", "--stop-epoch", "3",
        "--batch", "4", "--workers", "0", "--threads", "1", "--device", "cpu", "--lr", "4e-4", "--warmup-steps", "2",
        "--ema-warmups", "4", "--checkpoint-steps", "1", "--no-progress", "--out", str(out),
    ]  # fmt: skip
    marker = tmp_path / "at_step_3"
    command = [sys.executable, "-c", _KILLED_RUN, str(marker), *args]
    process = subprocess.Popen(command, cwd=REPO, env=ENV, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        # Wait for the event (the run reached step 3 and paused there), not for a time.
        while not marker.exists() and process.poll() is None:
            time.sleep(0.02)
        assert marker.exists(), process.stderr.read().decode()
        os.kill(process.pid, signal.SIGKILL)
        process.wait(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
    assert process.returncode == -signal.SIGKILL
    assert _state(out / "last.pth")["train"]["step"] == 3

    command = [sys.executable, "-m", "rtdetr_deploy.train", *args, "--resume"]
    result = subprocess.run(command, cwd=REPO, env=ENV, capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr
    assert "resuming" in result.stdout
    assert not list(out.glob(".*.partial")), "the write cut short by the kill is cleaned up"
    _assert_same_training_state(_state(reference.out / "last.pth"), _state(out / "last.pth"))


class _StepClock:
    """A ``time`` stand-in for the trainer whose clock jumps past any budget once ``steps`` steps are done:
    the budget then runs out at a known step, however fast or busy the machine is."""

    def __init__(self, steps: int) -> None:
        self.steps, self.now = steps, 0.0

    def monotonic(self) -> float:
        return self.now

    def on_step(self, epoch: int, batch: int) -> None:
        self.steps -= 1
        if self.steps == 0:
            self.now = 1e9


def test_time_budget_stops_training_then_evaluates_and_saves(make_cfg, monkeypatch):
    import importlib

    engine = importlib.import_module("rtdetr_deploy.train.engine")
    fit_module = importlib.import_module("rtdetr_deploy.train.fit")

    clock = _StepClock(steps=3)  # 3 steps: the middle of the second epoch (2 batches per epoch)
    monkeypatch.setattr(fit_module, "time", clock)
    monkeypatch.setattr(engine, "time", clock)
    result = fit(make_cfg(epochs=1000, minutes=0.04), on_step=clock.on_step, log=lambda line: None)
    assert result.stopped_by_budget and result.steps == 3 and "AP50" in result.history[-1]
    saved = _state(result.last)["train"]
    assert saved["epoch"] < 1000
    # Stopped mid-epoch: the checkpoint resumes inside it; stopped on an epoch's last batch: at the next one.
    assert (saved["batch"] > 0) == result.history[-1]["partial"]


def test_init_reinitialises_heads_for_another_class_count(make_cfg, tmp_path):
    torch.manual_seed(7)
    source = build_model(get_preset("tiny").with_eval_size((64, 64)), num_classes=3)
    path = save_model(source, tmp_path / "three.pth")
    model = build_model(get_preset("tiny").with_eval_size((64, 64)), num_classes=5)
    summary = load_init_weights(model, path)
    assert "class heads re-initialised (3 -> 5 classes)" in summary
    assert torch.equal(model.backbone.conv1[0].conv.weight, source.backbone.conv1[0].conv.weight)
    assert torch.equal(
        model.decoder.dec_bbox_head[0].layers[0].weight, source.decoder.dec_bbox_head[0].layers[0].weight
    )
    result = fit(make_cfg(epochs=1, init=path), log=lambda line: None)
    assert load_model(result.last).num_classes == 5


def test_discrete_sampling_trains_with_frozen_offsets(make_cfg):
    cfg = make_cfg(epochs=1, sampling="discrete")
    lines: list[str] = []
    result = fit(cfg, log=lines.append)
    assert any("sampling-offset tensors frozen" in line for line in lines)
    torch.manual_seed(cfg.seed)
    initial = build_model(get_preset("tiny").with_eval_size((64, 64)), num_classes=5).state_dict()
    trained = _state(result.last)
    assert trained["sampling"] == "discrete"
    offsets = [k for k in initial if "sampling_offsets" in k]
    assert offsets and all(torch.equal(initial[k], trained["model"][k]) for k in offsets)
    assert not torch.equal(
        initial["decoder.enc_output.proj.weight"], trained["model"]["decoder.enc_output.proj.weight"]
    )
    assert load_model(result.last).info.sampling == "discrete"
