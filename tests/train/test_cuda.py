"""Training on CUDA with mixed precision, and exact resume there (skipped without a GPU)."""

from __future__ import annotations

import pytest

torch = pytest.importorskip("torch")

from rtdetr_deploy.train import fit  # noqa: E402


@pytest.mark.gpu
def test_amp_training_on_cuda_saves_scaler_and_cuda_rng_and_resumes(make_cfg, tmp_path):
    cfg = make_cfg(device="cuda", out=tmp_path / "cuda", epochs=2, checkpoint_steps=1)
    result = fit(cfg, log=lambda line: None)
    state = torch.load(result.last, map_location="cpu", weights_only=True)
    assert state["scaler"], "the loss scaler is enabled and saved on CUDA"
    assert "cuda" in state["train"]["rng"][0]
    resumed = fit(make_cfg(device="cuda", out=cfg.out, epochs=3, resume=result.last), log=lambda line: None)
    assert resumed.steps == 6 and [r["epoch"] for r in resumed.history] == [1, 2, 3]
