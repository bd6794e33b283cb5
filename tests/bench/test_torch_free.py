"""Benchmarking an exported model needs no torch: the deployed machine may have none."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path

BLOCK_TORCH = textwrap.dedent(
    """
    import importlib.abc, importlib.util, sys

    class BlockTorch(importlib.abc.MetaPathFinder):
        def find_spec(self, name, path=None, target=None):
            if name == "torch" or name.startswith(("torch.", "torchvision")):
                raise ImportError(f"{name} is blocked: the benchmark of an exported model must not need it")
            return None

    sys.meta_path.insert(0, BlockTorch())
    real_find_spec = importlib.util.find_spec
    importlib.util.find_spec = lambda name, *a: None if name == "torch" else real_find_spec(name, *a)
    """
)


def test_onnx_benchmark_without_torch(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code = f"""
        from rtdetr_deploy.bench_cli import main
        rc = main([{str(tiny_onnx)!r}, "--iters", "2", "--warmup", "0", "--no-peak", "--json", {str(out)!r}])
        assert rc == 0, rc
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch got imported"
        print("ok")
        """
    proc = subprocess.run(
        [sys.executable, "-c", BLOCK_TORCH + textwrap.dedent(code)], capture_output=True, text=True, timeout=120
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
    assert json.loads(out.read_text())["results"][0]["backend"] == "onnxruntime"
