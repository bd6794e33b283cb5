"""The runtime imports and runs without torch (a deployed machine has none)."""

from __future__ import annotations

from pathlib import Path

from helpers import run_without_torch


def test_runtime_and_cli_import_without_torch() -> None:
    proc = run_without_torch(
        """
        import pkgutil, rtdetr_deploy.runtime as runtime, rtdetr_deploy.infer
        for module in pkgutil.iter_modules(runtime.__path__):
            __import__(f"rtdetr_deploy.runtime.{module.name}")
        assert not any(name == "torch" or name.startswith("torch.") for name in sys.modules), "torch got imported"
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "ok"


def test_onnx_inference_and_cli_without_torch(tiny_onnx: Path, real_image_paths: list[Path], tmp_path: Path) -> None:
    proc = run_without_torch(
        f"""
        import cv2
        from rtdetr_deploy.runtime import Detector
        from rtdetr_deploy.infer import main

        with Detector({str(tiny_onnx)!r}, conf=0.0) as detector:
            det = detector(cv2.imread({str(real_image_paths[0])!r}))
        assert len(det) == detector.metadata.topk
        rc = main([{str(real_image_paths[0])!r}, "--model", {str(tiny_onnx)!r}, "--json", {str(tmp_path / "r.json")!r}])
        assert rc == 0, rc
        assert "torch" not in sys.modules
        print("ok")
        """
    )
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip().endswith("ok")
    assert (tmp_path / "r.json").is_file()


def test_torch_backend_without_torch_is_one_clear_error(tmp_path: Path, real_image_paths: list[Path]) -> None:
    weights = tmp_path / "weights.pth"
    weights.write_bytes(b"x")
    proc = run_without_torch(
        f"""
        from rtdetr_deploy.infer import main
        raise SystemExit(main([{str(real_image_paths[0])!r}, "--model", {str(weights)!r}]))
        """
    )
    assert proc.returncode == 1
    assert "Traceback" not in proc.stderr
    assert (
        proc.stderr.strip()
        == "rtdetr-infer: error: the torch backend needs PyTorch: pip install 'rtdetr-deploy[torch]'"
    )
