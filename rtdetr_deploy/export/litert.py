"""The verified ONNX converted to LiteRT / TensorFlow Lite (``.tflite``, FP32) with onnx2tf.

onnx2tf pins TensorFlow and its own onnx, so it runs as a command in the interpreter the user names
(``TargetsConfig.tflite_python``; this one when it has onnx2tf), never imported here. Options, and why:

- ``-kat images orig_target_sizes``: keep both inputs exactly as the ONNX declares them (NCHW images); onnx2tf
  would otherwise transpose the image input to NHWC and also the ``[N, 2]`` sizes.
- ``-rtpo Erf``: replace ``Erf`` (the exact GELU) by onnx2tf's built-in approximation made of ops LiteRT has;
  otherwise the file needs TensorFlow's Flex delegate, which ``ai-edge-litert`` does not ship.
- ``-n``: no progress output.

onnx2tf converts a copy of the ONNX in which ``Where(mask, x, 0)`` (the anchor valid mask before the encoder
output; a ``Where`` so that NPU compilers do not fuse a ``Mul`` into the next ``Gemm``) is ``Mul(x, Cast(mask))``
again (``where_zero_as_mul``, exact for finite ``x``): onnx2tf 1.28 fails on that ``Where`` with a scalar zero.

The FP32 file onnx2tf writes (``<stem>_float32.tflite``) is the one published; the verification against ONNX
Runtime (``export.targets``) decides whether it is correct.
"""

from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import onnx
import onnx.numpy_helper
from onnx import TensorProto, helper

from ..errors import ExportError

__all__ = ["ONNX2TF_OPTIONS", "convert_tflite", "where_zero_as_mul"]

ONNX2TF_OPTIONS = ("-kat", "images", "orig_target_sizes", "-rtpo", "Erf", "-n")
CONVERT_TIMEOUT_S = 1800


def where_zero_as_mul(model: onnx.ModelProto) -> int:
    """Replace, in place, every ``Where(mask, x, c)`` whose ``c`` is an all-zero float initializer by
    ``Mul(x, Cast(mask, float))`` (equal wherever ``x`` is finite).

    Returns:
        How many were replaced.
    """
    constants = {init.name: init for init in model.graph.initializer}
    nodes, count = [], 0
    for node in model.graph.node:
        zero = constants.get(node.input[2]) if node.op_type == "Where" else None
        if zero is None or zero.data_type != TensorProto.FLOAT or onnx.numpy_helper.to_array(zero).any():
            nodes.append(node)
            continue
        mask = f"{node.name}__mask_float"
        nodes.append(helper.make_node("Cast", [node.input[0]], [mask], name=f"{node.name}__cast", to=TensorProto.FLOAT))
        nodes.append(helper.make_node("Mul", [node.input[1], mask], list(node.output), name=f"{node.name}__mul"))
        count += 1
    del model.graph.node[:]
    model.graph.node.extend(nodes)
    return count


def _onnx2tf_version(python: str) -> str:
    done = subprocess.run(
        [python, "-c", "import importlib.metadata as m; print(m.version('onnx2tf'), m.version('tensorflow'))"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    if done.returncode != 0:
        raise ExportError(
            f"onnx2tf is not importable in {python}: install onnx2tf and tensorflow there (pip install onnx2tf "
            "tensorflow tf-keras onnx-graphsurgeon sng4onnx ai-edge-litert psutil), or pass --tflite-python PATH"
        )
    return done.stdout.strip()


def convert_tflite(onnx_file: Path, tflite_file: Path, *, python: Path | None = None) -> dict[str, object]:
    """Convert ``onnx_file`` to ``tflite_file`` (FP32) with onnx2tf run by ``python`` (None: this interpreter).

    Returns:
        A JSON-ready record of the conversion (onnx2tf and TensorFlow versions, options).

    Raises:
        ExportError: onnx2tf is missing in that interpreter, failed, or wrote no FP32 file.
    """
    interpreter = str(python) if python is not None else sys.executable
    onnx2tf, tensorflow = _onnx2tf_version(interpreter).split()
    with tempfile.TemporaryDirectory(prefix="rtdetr-onnx2tf-") as work:
        model = onnx.load(str(onnx_file))
        rewritten = where_zero_as_mul(model)
        source = Path(work) / onnx_file.name
        onnx.save(model, str(source))
        command = [interpreter, "-m", "onnx2tf", "-i", str(source), "-o", work, *ONNX2TF_OPTIONS]
        try:
            done = subprocess.run(command, capture_output=True, text=True, timeout=CONVERT_TIMEOUT_S, cwd=work)
        except subprocess.TimeoutExpired:
            raise ExportError(f"onnx2tf did not finish within {CONVERT_TIMEOUT_S} s") from None
        written = Path(work) / f"{onnx_file.stem}_float32.tflite"
        if done.returncode != 0 or not written.is_file():
            lines = [line for line in (done.stdout + done.stderr).splitlines() if line.strip()]
            raise ExportError(f"onnx2tf failed on {onnx_file.name}: {' / '.join(lines[-3:]) or 'no output'}")
        shutil.move(str(written), str(tflite_file))
    return {
        "onnx2tf": onnx2tf,
        "tensorflow": tensorflow,
        "options": " ".join(ONNX2TF_OPTIONS),
        "where_as_mul": rewritten,
        "weights": "fp32",
    }
