"""The verified ONNX converted to MNN (``.mnn``, FP32 weights), with a converter that cannot install anything.

MNN's Python converter (``MNN.tools.mnnconvert``, the ``mnnconvert`` command) imports a usage-logging module that
runs ``pip install -U aliyun-log-python-sdk`` through the first ``pip`` on PATH when that package is missing, and
then sends a record of every conversion over the network. The exporter never imports it. It calls the compiled
converter underneath (``_tools.mnnconvert``, which the logging wrapper itself calls) in a child interpreter whose
PATH is an empty folder (no ``pip`` to run) and whose pip is told to reach no index (``PIP_NO_INDEX``), so a
conversion changes nothing in the user's environment (``tests/export/test_mnn.py`` checks it).
"""

from __future__ import annotations

import importlib.metadata
import importlib.util
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from ..errors import ExportError

__all__ = ["convert_mnn", "converter_environment", "mnn_version"]

# The child interpreter runs the compiled converter only; its argv is the mnnconvert command line.
_CONVERT = """
import sys
import _tools
ok = _tools.mnnconvert(["mnnconvert", "-f", "ONNX", "--modelFile", sys.argv[1], "--MNNModel", sys.argv[2],
                        "--bizCode", "rtdetr-deploy"])
sys.exit(0 if ok in (True, 0, None) else 1)
"""
CONVERT_TIMEOUT_S = 600


def mnn_version() -> str:
    """The installed MNN's version.

    Raises:
        ImportError: MNN is not installed (the CLI names the ``mnn`` extra).
    """
    if importlib.util.find_spec("_tools") is None or importlib.util.find_spec("MNN") is None:
        raise ImportError("No module named 'MNN'", name="MNN")
    return importlib.metadata.version("MNN")


def converter_environment(empty_dir: Path) -> dict[str, str]:
    """The child's environment: the user's, with PATH reduced to ``empty_dir`` and pip unable to reach an index."""
    env = {key: value for key, value in os.environ.items() if not key.startswith("PIP_")}
    env.update({"PATH": str(empty_dir), "PIP_NO_INDEX": "1", "PIP_DISABLE_PIP_VERSION_CHECK": "1"})
    env["PYTHONNOUSERSITE"] = "1"
    return env


def convert_mnn(onnx_file: Path, mnn_file: Path) -> dict[str, object]:
    """Convert ``onnx_file`` to ``mnn_file`` (FP32) with MNN's compiled converter in a sealed child interpreter.

    Returns:
        A JSON-ready record of the conversion (MNN version, how the converter was run).

    Raises:
        ImportError: MNN is not installed.
        ExportError: the converter failed or wrote nothing.
    """
    version = mnn_version()
    with tempfile.TemporaryDirectory(prefix="rtdetr-mnn-path-") as empty:
        try:
            done = subprocess.run(
                [sys.executable, "-c", _CONVERT, str(onnx_file), str(mnn_file)],
                env=converter_environment(Path(empty)),
                capture_output=True,
                text=True,
                timeout=CONVERT_TIMEOUT_S,
            )
        except subprocess.TimeoutExpired:
            raise ExportError(f"MNN's converter did not finish within {CONVERT_TIMEOUT_S} s") from None
    if done.returncode != 0 or not mnn_file.is_file() or mnn_file.stat().st_size == 0:
        lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
        raise ExportError(f"MNN's converter failed on {onnx_file.name}: {' / '.join(lines[-3:]) or 'no output'}")
    return {"mnn": version, "converter": "_tools.mnnconvert (no logging wrapper, PATH without pip)", "weights": "fp32"}
