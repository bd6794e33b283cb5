"""Regenerate ``tests/data/tiny_synthetic.ncnn/``, the ncnn folder CI runs for real.

pnnx pins its own torch, so CI does not convert; it runs this committed folder with the ``ncnn`` package and
compares it with ONNX Runtime on the same checkpoint exported by the code under test. This script makes the folder
the way users do: ``rtdetr-export`` of the shipped tiny checkpoint with ``--sampling bilinear --ncnn``, whose own
verification must pass.

    python tools/make_ncnn_test_model.py --ncnn-python /opt/pnnx/bin/python
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "rtdetr_deploy" / "data" / "weights" / "tiny_synthetic.pth"
DEST = ROOT / "tests" / "data" / "tiny_synthetic.ncnn"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--ncnn-python", type=Path, required=True, help="interpreter that has pnnx")
    args = parser.parse_args(argv)
    from rtdetr_deploy.cli.export import main as export_main

    with tempfile.TemporaryDirectory() as work:
        flags = ["--sampling", "bilinear", "--ncnn", "--ncnn-python", str(args.ncnn_python)]
        status = export_main([str(WEIGHTS), "-o", work, *flags])
        if status != 0:
            return status
        shutil.rmtree(DEST, ignore_errors=True)
        shutil.copytree(Path(work) / DEST.name, DEST)
        print(f"wrote {DEST}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
