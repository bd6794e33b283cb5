"""The explicit batch-first attention computes what ``nn.MultiheadAttention`` computes, from the same parameters,
in PyTorch and once traced into ONNX Runtime; its graph never moves the batch axis."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

torch = pytest.importorskip("torch")

from rtdetr_deploy.models.attention import Attention, set_explicit_attention  # noqa: E402


def _pair(seed: int = 0, dim: int = 64, heads: int = 8) -> tuple[torch.nn.MultiheadAttention, Attention]:
    torch.manual_seed(seed)
    reference = torch.nn.MultiheadAttention(dim, heads, batch_first=True).eval()
    with torch.no_grad():  # PyTorch initialises the projection biases to zero: make them count.
        reference.in_proj_bias.normal_()
        reference.out_proj.bias.normal_()
    ours = Attention(dim, heads, batch_first=True).eval()
    ours.load_state_dict(reference.state_dict(), strict=True)
    return reference, set_explicit_attention(ours, True)


def test_same_state_dict_keys_as_multihead_attention() -> None:
    reference, ours = _pair()
    assert list(ours.state_dict()) == list(reference.state_dict())


@pytest.mark.parametrize("mask", [None, "bool", "float"])
def test_explicit_form_equals_pytorch_multihead_attention(mask: str | None) -> None:
    reference, ours = _pair(seed=1)
    q, k, v = (torch.randn(2, 30, 64) for _ in range(3))
    attn_mask = None
    if mask == "bool":
        attn_mask = torch.rand(30, 30) > 0.7
        attn_mask.fill_diagonal_(False)  # every query keeps one key
    elif mask == "float":
        attn_mask = torch.randn(30, 30)
    with torch.no_grad():
        expected, _ = reference(q, k, v, attn_mask=attn_mask, need_weights=False)
        got, _ = ours(q, k, value=v, attn_mask=attn_mask)
    torch.testing.assert_close(got, expected, rtol=0, atol=2e-6)


def test_traced_explicit_form_in_onnxruntime_keeps_batch_first(tmp_path: Path) -> None:
    onnx = pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    reference, ours = _pair(seed=2)

    class SelfAttention(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.attention = ours

        def forward(self, x: torch.Tensor) -> torch.Tensor:
            return self.attention(x, x, x)[0]

    x = torch.randn(3, 40, 64)
    path = tmp_path / "attention.onnx"
    torch.onnx.export(SelfAttention().eval(), (x,), str(path), input_names=["x"], opset_version=17, dynamo=False)
    got = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"]).run(None, {"x": x.numpy()})[0]
    with torch.no_grad():
        expected = reference(x, x, x, need_weights=False)[0].numpy()
    np.testing.assert_allclose(got, expected, rtol=0, atol=2e-6)
    for node in onnx.load(str(path)).graph.node:
        if node.op_type == "Transpose":
            assert list(node.attribute[0].ints)[0] == 0, f"{node.name} moves the batch axis"
