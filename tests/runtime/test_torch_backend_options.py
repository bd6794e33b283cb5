"""The torch backend's precision and CUDA-graph options: refused on the CPU, and on CUDA equal to eager."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from rtdetr_deploy.runtime import TorchBackend

pytest.importorskip("torch")


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [
        ({"precision": "fp16"}, "FP16 on CUDA only"),
        ({"precision": "int8"}, "unknown torch precision"),
        ({"cuda_graph": True}, "CUDA graphs need a CUDA device"),
    ],
)
def test_cpu_refuses_gpu_options(tiny_checkpoint: Path, kwargs: dict, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        TorchBackend.from_path(tiny_checkpoint, device="cpu", **kwargs)


def test_cpu_default_is_fp32(tiny_checkpoint: Path) -> None:
    with TorchBackend.from_path(tiny_checkpoint, precision="fp32") as backend:
        assert backend.metadata.precision == "fp32" and not backend.cuda_graph
        assert backend.description.endswith("(cpu, fp32)")


@pytest.mark.gpu
@pytest.mark.parametrize("precision", ["fp32", "fp16"])
def test_cuda_graph_replay_matches_eager(tiny_checkpoint: Path, precision: str) -> None:
    rng = np.random.default_rng(0)
    feeds = [
        {
            "images": rng.random((batch, 3, 320, 320), dtype=np.float32),
            "orig_target_sizes": np.tile(np.array([[640, 480]]), (batch, 1)),
        }
        for batch in (1, 2, 1)
    ]
    with (
        TorchBackend.from_path(tiny_checkpoint, device="cuda:0", precision=precision) as eager,
        TorchBackend.from_path(tiny_checkpoint, device="cuda:0", precision=precision, cuda_graph=True) as graphed,
    ):
        assert "CUDA graph" in graphed.description and graphed.metadata.precision == precision
        atol = 1e-5 if precision == "fp32" else 2e-3
        for feed in feeds:  # batch 1 is captured, then batch 2, then batch 1 replays its graph again
            ref, out = eager.infer(feed), graphed.infer(feed)
            np.testing.assert_allclose(out["scores"], ref["scores"], atol=atol)
            np.testing.assert_array_equal(out["labels"][:, :10], ref["labels"][:, :10])
            np.testing.assert_allclose(out["boxes"][:, :10], ref["boxes"][:, :10], atol=0.5)
        assert sorted(graphed._graphs) == [1, 2]
