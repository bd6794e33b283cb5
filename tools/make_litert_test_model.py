"""Regenerate ``tests/data/tiny_synthetic.tflite`` (and its ``.json`` sidecar), the LiteRT file CI runs for real.

onnx2tf pins TensorFlow, so CI cannot convert; it runs this committed file with ``ai-edge-litert`` and compares it
with ONNX Runtime on the same checkpoint exported by the code under test. This script makes the file the way users
do: ``rtdetr-export`` of the shipped tiny checkpoint (default graph: discrete sampling, FP32) with ``--tflite``,
whose own verification must pass.

    python tools/make_litert_test_model.py --tflite-python /opt/onnx2tf/bin/python
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"
DEST = ROOT / "tests" / "data"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tflite-python", type=Path, required=True, help="interpreter that has onnx2tf")
    args = parser.parse_args(argv)
    from rtdetr_deploy.cli.export import main as export_main

    with tempfile.TemporaryDirectory() as work:
        status = export_main([str(WEIGHTS), "-o", work, "--tflite", "--tflite-python", str(args.tflite_python)])
        if status != 0:
            return status
        for name in ("tiny_synthetic.tflite", "tiny_synthetic.tflite.json"):
            shutil.copyfile(Path(work) / name, DEST / name)
            print(f"wrote {DEST / name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
