"""The model converted to ncnn: a ``NAME.ncnn/`` folder of two graphs around the query selection, with pnnx.

ncnn has no TopK or GatherElements layer, so the published ONNX does not convert: the model is traced again as
the two graphs of ``export.split_graphs`` (bilinear sampling), each converted by pnnx, and the query selection runs
on the host (``runtime.ncnn_backend``). pnnx pins its own torch, so it is never imported here: it runs in the
interpreter the user names (``--ncnn-python`` / ``RTDETR_NCNN_PYTHON``), through the ``pnnx`` package's own
executable, with no network and nothing installed. The folder is written complete or not at all (a temporary
folder beside it, renamed into place)::

    NAME.ncnn/encoder.ncnn.param, encoder.ncnn.bin    images -> memory, output_memory, scores
    NAME.ncnn/decoder.ncnn.param, decoder.ncnn.bin    content, anchors, memory -> pred_logits, pred_boxes
    NAME.ncnn/anchors.npy                             [L, 4] float32 inverse-sigmoid anchors
    NAME.ncnn/model.json                              the runtime's sidecar (runtime.engine_sidecar)

Each ``.param`` is checked for what ncnn would load but compute wrongly or not at all: pnnx operators it left
unconverted (a ``.`` in the layer type) and ``Reduction`` layers over no axis without ``reduce_all`` (pnnx's form of
an opset-13+ ``ReduceSum``, which ncnn runs as a copy).
"""

from __future__ import annotations

import shutil
import subprocess
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from ..atomic import replace_folder
from ..errors import ExportError
from ..metadata import ModelMetadata
from ..models.rtdetr import RTDETR
from ..runtime.engine_sidecar import write_engine_sidecar
from ..runtime.ncnn_backend import ANCHORS_FILE, ncnn_graph_files
from .split_graphs import export_split_graphs

__all__ = ["ParamCensus", "convert_ncnn", "param_census"]

# The child interpreter prints pnnx's version, then runs the package's executable with this script's arguments.
_PNNX = """
import importlib.metadata, subprocess, sys
import pnnx
print("pnnx-version", importlib.metadata.version("pnnx"), flush=True)
sys.exit(subprocess.call([pnnx.EXEC_PATH, *sys.argv[1:]]))
"""
PNNX_TIMEOUT_S = 1800


@dataclass(frozen=True)
class ParamCensus:
    """The layers of an ncnn ``.param`` file.

    Attributes:
        layers: layer type -> count.
        unconverted: pnnx operators left as they were (no ncnn layer; ncnn cannot load the file).
        broken: names of ``Reduction`` layers over no axis without ``reduce_all`` (ncnn computes a copy).
    """

    layers: dict[str, int]
    unconverted: tuple[str, ...]
    broken: tuple[str, ...]


def param_census(param: Path) -> ParamCensus:
    """The ``ParamCensus`` of the ncnn ``.param`` file ``param`` (magic line, counts line, one layer a line)."""
    layers: dict[str, int] = {}
    broken = []
    for line in param.read_text().splitlines()[2:]:
        words = line.split()
        if len(words) < 2:
            continue
        layers[words[0]] = layers.get(words[0], 0) + 1
        if words[0] == "Reduction" and "-23303=0" in words and "1=1" not in words:
            broken.append(words[1])
    unconverted = tuple(kind for kind in layers if "." in kind)
    return ParamCensus(layers, unconverted, tuple(broken))


def _run_pnnx(python: Path, onnx_file: Path, shapes: Sequence[Sequence[int]], work: Path) -> tuple[Path, str]:
    """Convert ``onnx_file`` with pnnx into ``work``; the ``.param`` written (its ``.bin`` beside) and pnnx's version.

    Raises:
        ExportError: the interpreter lacks pnnx, pnnx failed, or it wrote nothing.
    """
    stem = onnx_file.stem
    param, weights = ncnn_graph_files(work, stem)
    scratch = work / f"pnnx-{stem}"
    scratch.mkdir()
    shape_arg = ",".join("[" + ",".join(str(d) for d in shape) + "]" for shape in shapes)
    outputs = {"ncnnparam": param, "ncnnbin": weights, "ncnnpy": scratch / "ncnn.py", "pnnxparam": scratch / "p"}
    outputs.update({"pnnxbin": scratch / "b", "pnnxpy": scratch / "pnnx.py", "pnnxonnx": scratch / "pnnx.onnx"})
    command = [str(python), "-c", _PNNX, str(onnx_file), f"inputshape={shape_arg}", "fp16=0"]
    command += [f"{key}={value}" for key, value in outputs.items()]
    try:
        done = subprocess.run(command, capture_output=True, text=True, timeout=PNNX_TIMEOUT_S, cwd=scratch)
    except subprocess.TimeoutExpired:
        raise ExportError(f"pnnx did not finish {onnx_file.name} within {PNNX_TIMEOUT_S} s") from None
    text = done.stdout + done.stderr
    if "No module named 'pnnx'" in text:
        raise ExportError(f"pnnx is not installed in {python}: pip install pnnx ncnn there")
    if done.returncode != 0 or not param.is_file() or not weights.is_file():
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        raise ExportError(f"pnnx failed on {onnx_file.name} (exit {done.returncode}): {' / '.join(lines[-3:])}")
    version = next((line.split()[1] for line in text.splitlines() if line.startswith("pnnx-version ")), "?")
    return param, version


def _checked(param: Path) -> ParamCensus:
    census = param_census(param)
    if census.unconverted:
        raise ExportError(f"pnnx left operators ncnn has no layer for in {param.name}: {', '.join(census.unconverted)}")
    if census.broken:
        raise ExportError(
            f"pnnx wrote Reduction layers over no axis in {param.name} ({', '.join(census.broken)}), which ncnn "
            "computes as a copy: a ReduceSum reached the graph"
        )
    return census


def convert_ncnn(
    model: RTDETR, folder: Path, *, python: Path, metadata: ModelMetadata, conversion: dict[str, object] | None = None
) -> dict[str, object]:
    """Write the ``.ncnn`` folder ``folder`` of ``model`` (see the module docstring), its sidecar from ``metadata``.

    Args:
        model: bilinear sampling, input size set (its anchors are those of ``metadata.input_size``).
        python: interpreter that has pnnx.
        conversion: more of the record to keep in the sidecar.

    Returns:
        A JSON-ready record of the conversion (pnnx's version, the layers of each graph).

    Raises:
        ExportError: discrete sampling, pnnx missing or failed, or a graph ncnn would compute wrongly.
    """
    if tuple(model.decoder.eval_size or ()) != tuple(metadata.input_size):
        raise ExportError(f"the model's input size {model.decoder.eval_size} is not {metadata.input_size}")
    with tempfile.TemporaryDirectory(prefix="rtdetr-ncnn-") as work_dir:
        work = Path(work_dir)
        graphs = export_split_graphs(model, work, opset=metadata.opset)
        record: dict[str, object] = {"converter": "pnnx (fp16=0)", "weights": "fp32", "queries": graphs.queries}
        layers = {}
        for name, onnx_file in (("encoder", graphs.encoder), ("decoder", graphs.decoder)):
            param, record["pnnx"] = _run_pnnx(python, onnx_file, graphs.input_shapes[name], work)
            layers[name] = sum(_checked(param).layers.values())
        record["layers"] = layers
        staging = Path(tempfile.mkdtemp(prefix=f".{folder.stem}-", suffix=".ncnn", dir=folder.parent))
        try:
            for name in ("encoder", "decoder"):
                for file in ncnn_graph_files(work, name):
                    shutil.copyfile(file, staging / file.name)
            np.save(staging / ANCHORS_FILE, graphs.anchors)
            write_engine_sidecar(staging, metadata, engine="ncnn", conversion={**record, **(conversion or {})})
            replace_folder(staging, folder)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return record
