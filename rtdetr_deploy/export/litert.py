"""The verified ONNX converted to LiteRT / TensorFlow Lite (``.tflite``, FP32) with onnx2tf.

onnx2tf pins TensorFlow and its own onnx, so it runs as a command in the interpreter the user names
(``TargetsConfig.tflite_python``; this one when it has onnx2tf), never imported here. Options, and why:

- ``-kat images orig_target_sizes``: keep both inputs exactly as the ONNX declares them (NCHW images); onnx2tf
  would otherwise transpose the image input to NHWC and also the ``[N, 2]`` sizes.
- ``-rtpo Erf``: replace ``Erf`` (the exact GELU) by onnx2tf's built-in approximation made of ops LiteRT has;
  otherwise the file needs TensorFlow's Flex delegate, which ``ai-edge-litert`` does not ship.
- ``-n``: no progress output.

onnx2tf converts a copy of the ONNX with one exact rewrite (``split_sequence_first_transposes``): every
rank-3 ``Transpose(perm [2, 0, 1])`` (the encoder attention's ``[B, C, HW] -> [HW, B, C]`` of its values) becomes
``Transpose(perm [0, 2, 1])`` then ``Transpose(perm [1, 0, 2])``. onnx2tf re-lays rank-3 tensors channels-last and
maps the single permutation wrongly (the first encoder attention's values come out scrambled: top scores off by
0.65 on the trained tiny), while it maps both halves correctly.

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
from onnx import helper

from ..errors import ExportError

__all__ = ["ONNX2TF_OPTIONS", "convert_tflite", "split_sequence_first_transposes"]

ONNX2TF_OPTIONS = ("-kat", "images", "orig_target_sizes", "-rtpo", "Erf", "-n")
CONVERT_TIMEOUT_S = 1800


def split_sequence_first_transposes(model: onnx.ModelProto) -> int:
    """Replace, in place, every ``Transpose(perm [2, 0, 1])`` by ``Transpose(perm [0, 2, 1])`` followed by
    ``Transpose(perm [1, 0, 2])`` (the same permutation: ``[a, b, c] -> [a, c, b] -> [c, a, b]``).

    Returns:
        How many were replaced.
    """
    nodes, count = [], 0
    for node in model.graph.node:
        perm = next((list(a.ints) for a in node.attribute if a.name == "perm"), None)
        if node.op_type != "Transpose" or perm != [2, 0, 1]:
            nodes.append(node)
            continue
        middle = f"{node.output[0]}__batch_first"
        nodes.append(helper.make_node("Transpose", [node.input[0]], [middle], name=f"{node.name}__a", perm=[0, 2, 1]))
        nodes.append(helper.make_node("Transpose", [middle], list(node.output), name=f"{node.name}__b", perm=[1, 0, 2]))
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
        rewritten = split_sequence_first_transposes(model)
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
        "split_transposes": rewritten,
        "weights": "fp32",
    }
