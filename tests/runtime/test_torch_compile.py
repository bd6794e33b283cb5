"""The torch backend's opt-in ``torch.compile`` and its whole-step CUDA graph.

On the CPU: the options are validated and a compiled backend describes itself (compiling the model here takes
minutes on a small machine, so the compiled forward pass is checked on a GPU). On a GPU: each compile mode and the
whole-step CUDA graph give eager's detections, and the compile time is recorded per batch size.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

pytest.importorskip("torch")

from rtdetr_deploy.runtime.torch_backend import COMPILE_MODES, TorchBackend, _check_options  # noqa: E402


def test_unknown_compile_mode_is_refused(tiny_checkpoint: Path) -> None:
    with pytest.raises(ValueError, match="unknown torch.compile mode 'fast'; choose from default, reduce-overhead"):
        TorchBackend.from_path(tiny_checkpoint, compile_mode="fast")


@pytest.mark.parametrize("mode", ["reduce-overhead", "max-autotune"])
def test_modes_with_their_own_cuda_graphs_refuse_ours(mode: str) -> None:
    with pytest.raises(ValueError, match=f"mode '{mode}' replays CUDA graphs of its own; drop cuda_graph"):
        _check_options("cuda", "fp16", True, mode)


@pytest.mark.parametrize("mode", ["default", "max-autotune-no-cudagraphs"])
def test_modes_without_cuda_graphs_combine_with_ours(mode: str) -> None:
    assert _check_options("cuda", None, True, mode) == "fp16"


def test_a_compiled_backend_says_so_and_compiles_lazily(tiny_checkpoint: Path) -> None:
    with TorchBackend.from_path(tiny_checkpoint, compile_mode="default") as backend:
        assert backend.description.endswith("(cpu, fp32, torch.compile default)")
        assert backend.compile_mode == "default" and backend.compile_seconds == {}
    assert COMPILE_MODES == ("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs")


def _feeds(size: tuple[int, int]) -> list[dict[str, np.ndarray]]:
    rng = np.random.default_rng(0)
    return [
        {
            "images": rng.random((batch, 3, *size), dtype=np.float32),
            "orig_target_sizes": np.tile(np.array([[1280, 720]]), (batch, 1)),
        }
        for batch in (1, 4, 1)
    ]


@pytest.mark.gpu
@pytest.mark.slow
@pytest.mark.parametrize(("mode", "cuda_graph"), [("default", True), ("reduce-overhead", False)])
def test_compiled_backends_match_eager_on_cuda(tiny_checkpoint: Path, mode: str, cuda_graph: bool) -> None:
    with (
        TorchBackend.from_path(tiny_checkpoint, device="cuda:0", precision="fp32") as eager,
        TorchBackend.from_path(
            tiny_checkpoint, device="cuda:0", precision="fp32", cuda_graph=cuda_graph, compile_mode=mode
        ) as compiled,
    ):
        for feed in _feeds(tuple(eager.metadata.input_size)):
            want, got = eager.infer(feed), compiled.infer(feed)
            np.testing.assert_array_equal(got["labels"][:, :10], want["labels"][:, :10])
            np.testing.assert_allclose(got["scores"], want["scores"], atol=1e-3)
        assert sorted(compiled.compile_seconds) == [1, 4] and min(compiled.compile_seconds.values()) > 0


@pytest.mark.gpu
def test_whole_step_graph_returns_fresh_arrays_each_call(tiny_checkpoint: Path) -> None:
    """The pinned output buffers are reused by the next replay: what a call returned must not change after it."""
    with TorchBackend.from_path(tiny_checkpoint, device="cuda:0", cuda_graph=True) as graphed:
        first_feed, second_feed = _feeds(tuple(graphed.metadata.input_size))[::2]
        second_feed = {**second_feed, "images": 1.0 - second_feed["images"]}
        first = graphed.infer(first_feed)
        kept = {name: array.copy() for name, array in first.items()}
        graphed.infer(second_feed)
        for name in kept:
            np.testing.assert_array_equal(first[name], kept[name])
