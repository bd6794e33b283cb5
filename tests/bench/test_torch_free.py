"""Benchmarking an exported model needs no torch: the deployed machine may have none."""

from __future__ import annotations

import json
from pathlib import Path

from helpers import run_without_torch


def test_onnx_benchmark_without_torch(tiny_onnx: Path, tmp_path: Path) -> None:
    out = tmp_path / "r.json"
    code = f"""
        from rtdetr_deploy.cli.bench import main
        rc = main([{str(tiny_onnx)!r}, "--iters", "2", "--warmup", "0", "--no-peak", "--json", {str(out)!r}])
        assert rc == 0, rc
        assert not any(m == "torch" or m.startswith("torch.") for m in sys.modules), "torch got imported"
        print("ok")
        """
    proc = run_without_torch(code)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
    assert json.loads(out.read_text())["results"][0]["backend"] == "onnxruntime"
