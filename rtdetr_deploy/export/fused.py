"""Fused preprocessing (``rtdetr-export --fuse-preprocess``): graphs that take raw frames and preprocess them.

Beside every ONNX graph of the export, ``<name>.fused.onnx`` is written. Its only input is ``frames``
``[N, H, W, 3]`` uint8 BGR with N, H and W dynamic (a fixed-batch export keeps its fixed N). In the graph:
cast to float, BGR to RGB (when the metadata says ``rgb``), transpose to NCHW, ``Resize`` (linear, half-pixel
centres: OpenCV's ``INTER_LINEAR``) to the model's ``(height, width)``, rounding half up to integer levels (what
OpenCV's uint8 resize returns), ``x * scale``, then ``(x - mean) / std`` when the metadata has them. The graph then
runs the published graph node for node.

``orig_target_sizes`` is derived from the frames' shape, ``(W, H)`` for every row, rather than kept as an input:
the fused graph cannot be fed a size that contradicts its frames, and a caller has one tensor to pass. The price is
that the frames of one batch share one size, as they must anyway to be stacked; the runtime batches frames by size
(``Detector.batch_key``). The metadata records ``preprocessing.fused = true``.

OpenCV resizes uint8 images in fixed point: weights quantised to 1/2048, intermediate sums truncated, results
rounded. A float resize cannot reproduce that bit for bit; rounded half up it agrees with OpenCV on about 88 to
100% of values (exactly, on an exact 2x reduction) and is never more than one level away (measured on natural and
random images from 320x320 to 3840x2160, up- and downscaled: at most 12.5% of values one level off, mean 9%).
Verification holds it to ``FusedTolerances``, in ONNX Runtime on the CPU:

1. **preprocessing**: the preprocessing subgraph alone against the runtime's ``preprocess`` on frames of several
   sizes (reductions, an enlargement, the model's own size): every value within ``levels`` uint8 levels, and at
   most ``off_share`` of them off at all.
2. **composition**: each fused graph gives, for the same frames, exactly what its published graph gives when fed
   the subgraph's output: the fusion changes nothing but the input.
3. **end to end** (reported, not a gate): the fused graph's top detections against the published graph fed by
   the runtime's own preprocessing (``gates.TOLERANCES.scores`` as the ranking margin), beside the same comparison for
   the published graph fed the runtime's preprocessing plus random one-level noise on the same share of values.
   A model can be as sensitive to one level as that: the trained tiny synthetic model keeps 86% of its decided top
   detections through the fused graph, and 79% through such noise (its top scores move by up to 0.2 either way),
   while random weights keep 99.7% (scores within 5e-6). Such a gate would judge the model, not the fusion.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Iterator
from contextlib import AbstractContextManager
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np
import onnx
from onnx import TensorProto, helper, numpy_helper

from ..agreement import compare_detections
from ..contract import OUTPUT_NAMES
from ..errors import ExportError
from ..metadata import ModelMetadata
from ..runtime.preprocess import preprocess
from .gates import TOLERANCES
from .graphs import run_graph

__all__ = ["FRAMES", "FusedTolerances", "fuse_preprocessing", "fused_path", "preprocessing_graph", "write_fused"]

FRAMES = "frames"
_PREFIX = "fused_preprocess."
# Frame sizes (H, W) the preprocessing is verified at, besides the model's own: common video sizes, odd ratios.
CHECK_SIZES_HW = ((720, 1280), (1080, 1920), (480, 640), (427, 640), (333, 517))


@dataclass(frozen=True)
class FusedTolerances:
    """What verification accepts of the in-graph preprocessing against the runtime's (OpenCV) preprocessing.

    Attributes:
        levels: largest difference of a value, in uint8 levels (before ``scale``, mean and std).
        off_share: largest share of values that may differ at all (measured: at most 12.5%).
    """

    levels: float = 1.0
    off_share: float = 0.2


def fused_path(path: Path) -> Path:
    """``best.onnx`` -> ``best.fused.onnx``, ``best.fp16.onnx`` -> ``best.fp16.fused.onnx``."""
    return path.with_name(f"{path.stem}.fused{path.suffix}")


def _const(name: str, array: np.ndarray) -> TensorProto:
    return numpy_helper.from_array(np.asarray(array), _PREFIX + name)


def _pixel_nodes(metadata: ModelMetadata, images: str, elem_type: int) -> tuple[list, list]:
    """Nodes and initializers: ``frames`` -> ``images [N, 3, h, w]`` of ``elem_type``."""
    p, prep = _PREFIX, metadata.preprocessing
    height, width = metadata.input_size
    inits = [
        _const("channels", np.array([2, 1, 0], np.int64)),
        _const("start", np.array([0], np.int64)),
        _const("two", np.array([2], np.int64)),
        _const("size_hw", np.array([height, width], np.int64)),
        _const("half", np.array(0.5, np.float32)),
        _const("scale", np.array(prep.scale, np.float32)),
    ]
    nodes = [helper.make_node("Cast", [FRAMES], [p + "float"], to=TensorProto.FLOAT)]
    source = p + "float"
    if prep.color == "rgb":
        nodes.append(helper.make_node("Gather", [source, p + "channels"], [p + "rgb"], axis=3))
        source = p + "rgb"
    nodes += [
        helper.make_node("Transpose", [source], [p + "nchw"], perm=[0, 3, 1, 2]),
        helper.make_node("Shape", [p + "nchw"], [p + "shape"]),
        helper.make_node("Slice", [p + "shape", p + "start", p + "two"], [p + "nc"]),
        helper.make_node("Concat", [p + "nc", p + "size_hw"], [p + "sizes"], axis=0),
        helper.make_node(
            "Resize",
            [p + "nchw", "", "", p + "sizes"],
            [p + "resized"],
            mode="linear",
            coordinate_transformation_mode="half_pixel",
        ),
        # Round half up to integer levels, as OpenCV's fixed-point uint8 resize rounds.
        helper.make_node("Add", [p + "resized", p + "half"], [p + "shifted"]),
        helper.make_node("Floor", [p + "shifted"], [p + "levels"]),
        helper.make_node("Mul", [p + "levels", p + "scale"], [p + "scaled"]),
    ]
    last = p + "scaled"
    for op, name, values in (("Sub", "mean", prep.mean), ("Div", "std", prep.std)):
        if values is not None:
            inits.append(_const(name, np.asarray(values, np.float32).reshape(1, 3, 1, 1)))
            nodes.append(helper.make_node(op, [last, p + name], [p + f"after_{name}"]))
            last = p + f"after_{name}"
    nodes.append(helper.make_node("Cast", [last], [images], to=elem_type))
    return nodes, inits


def _size_nodes(sizes: str, elem_type: int) -> tuple[list, list]:
    """Nodes and initializers: ``frames`` -> ``orig_target_sizes [N, 2]`` = ``(W, H)`` of the frames, per row."""
    p = _PREFIX
    inits = [_const("wh_index", np.array([2, 1], np.int64)), _const("zero", np.array([0], np.int64))]
    inits += [_const("one", np.array([1], np.int64)), _const("pair", np.array([2], np.int64))]
    nodes = [
        helper.make_node("Shape", [FRAMES], [p + "frame_shape"]),
        helper.make_node("Gather", [p + "frame_shape", p + "wh_index"], [p + "wh"]),
        helper.make_node("Unsqueeze", [p + "wh", p + "zero"], [p + "wh_row"]),
        helper.make_node("Slice", [p + "frame_shape", p + "zero", p + "one"], [p + "batch"]),
        helper.make_node("Concat", [p + "batch", p + "pair"], [p + "rows"], axis=0),
        helper.make_node("Expand", [p + "wh_row", p + "rows"], [p + "sizes_wh"]),
        helper.make_node("Cast", [p + "sizes_wh"], [sizes], to=elem_type),
    ]
    return nodes, inits


def _frames_input(batch_dim: onnx.TensorShapeProto.Dimension) -> onnx.ValueInfoProto:
    info = helper.make_tensor_value_info(FRAMES, TensorProto.UINT8, [None, "H", "W", 3])
    info.type.tensor_type.shape.dim[0].CopyFrom(batch_dim)
    return info


def fuse_preprocessing(model: onnx.ModelProto) -> onnx.ModelProto:
    """The graph of ``model`` (inputs ``images``, ``orig_target_sizes``) behind its own preprocessing (see the module
    docstring), with ``preprocessing.fused`` recorded in its metadata; ``model`` itself is not changed.

    Raises:
        ExportError: ``model`` lacks our metadata or the ``images``/``orig_target_sizes`` inputs, or is fused already.
    """
    props = {p.key: p.value for p in model.metadata_props}
    try:
        metadata = ModelMetadata.from_props(props)
    except ValueError as exc:
        raise ExportError(f"cannot fuse preprocessing into a graph without rtdetr-deploy metadata: {exc}") from None
    if metadata.preprocessing.fused:
        raise ExportError("the graph already does its own preprocessing (preprocessing.fused is true)")
    inputs = {info.name: info for info in model.graph.input}
    if set(inputs) != {"images", "orig_target_sizes"}:
        raise ExportError(f"cannot fuse preprocessing: inputs {sorted(inputs)}, expected images, orig_target_sizes")
    fused = onnx.ModelProto()
    fused.CopyFrom(model)
    graph = fused.graph
    images_type = inputs["images"].type.tensor_type.elem_type
    sizes_type = inputs["orig_target_sizes"].type.tensor_type.elem_type
    pixel_nodes, pixel_inits = _pixel_nodes(metadata, "images", images_type)
    size_nodes, size_inits = _size_nodes("orig_target_sizes", sizes_type)
    nodes = [*pixel_nodes, *size_nodes, *graph.node]
    del graph.node[:]
    graph.node.extend(nodes)
    graph.initializer.extend([*pixel_inits, *size_inits])
    del graph.input[:]
    graph.input.append(_frames_input(inputs["images"].type.tensor_type.shape.dim[0]))
    marked = dataclasses.replace(metadata, preprocessing=dataclasses.replace(metadata.preprocessing, fused=True))
    del fused.metadata_props[:]
    for key, value in marked.to_props().items():
        fused.metadata_props.add(key=key, value=value)
    fused.doc_string = f"{model.doc_string}; preprocessing in the graph (frames uint8 NHWC BGR)".lstrip("; ")
    onnx.checker.check_model(fused)
    return fused


def preprocessing_graph(metadata: ModelMetadata, *, opset: int) -> onnx.ModelProto:
    """The fused graphs' preprocessing alone: ``frames`` -> ``images`` (float32), ``orig_target_sizes`` (int64)."""
    pixel_nodes, pixel_inits = _pixel_nodes(metadata, "images", TensorProto.FLOAT)
    size_nodes, size_inits = _size_nodes("orig_target_sizes", TensorProto.INT64)
    height, width = metadata.input_size
    graph = helper.make_graph(
        [*pixel_nodes, *size_nodes],
        "rtdetr_preprocessing",
        [helper.make_tensor_value_info(FRAMES, TensorProto.UINT8, ["N", "H", "W", 3])],
        [
            helper.make_tensor_value_info("images", TensorProto.FLOAT, ["N", 3, height, width]),
            helper.make_tensor_value_info("orig_target_sizes", TensorProto.INT64, ["N", 2]),
        ],
        [*pixel_inits, *size_inits],
    )
    return helper.make_model(graph, opset_imports=[helper.make_opsetid("", opset)])


def _session(model: onnx.ModelProto | Path):  # noqa: ANN202 - onnxruntime is imported lazily
    import onnxruntime as ort

    options = ort.SessionOptions()
    options.log_severity_level = 3
    source = model.SerializeToString() if isinstance(model, onnx.ModelProto) else str(model)
    return ort.InferenceSession(source, options, providers=["CPUExecutionProvider"])


def check_frames(images_bgr: list[np.ndarray], input_size: tuple[int, int]) -> list[np.ndarray]:
    """The verification frames: each image at every size of ``CHECK_SIZES_HW``, at the model's own size, and at
    half of it (an enlargement), in that order (``INTER_AREA``: natural-looking frames, not the resize under test)."""
    height, width = input_size
    sizes = [*CHECK_SIZES_HW, (height, width), (max(height // 2, 1), max(width // 2, 1))]
    return [cv2.resize(image, (w, h), interpolation=cv2.INTER_AREA) for image in images_bgr for h, w in sizes]


def _run_frames(session: object, frames: list[np.ndarray], *, low: int, outputs: list[str]) -> dict[str, np.ndarray]:
    """Each frame alone (padded by repetition to a fixed batch of ``low``), outputs concatenated ``[N, ...]``."""
    rows: list[list[np.ndarray]] = []
    for frame in frames:
        batch = np.repeat(frame[None], max(low, 1), axis=0)
        rows.append([r[:1] for r in session.run(outputs, {FRAMES: batch})])  # type: ignore[attr-defined]
    return {name: np.concatenate([row[i] for row in rows]) for i, name in enumerate(outputs)}


def _preprocessing_report(metadata: ModelMetadata, frames: list[np.ndarray]) -> dict:
    """The preprocessing subgraph against the runtime's ``preprocess``, frame by frame, in uint8 levels."""
    session = _session(preprocessing_graph(metadata, opset=metadata.opset))
    graph_out = _run_frames(session, frames, low=1, outputs=["images", "orig_target_sizes"])
    prep = metadata.preprocessing
    runtime = [preprocess([f], input_size=metadata.input_size, preprocessing=prep) for f in frames]
    reference = np.concatenate([pixels for pixels, _ in runtime])
    sizes = np.concatenate([orig for _, orig in runtime])
    std = np.asarray(prep.std if prep.std is not None else (1.0, 1.0, 1.0), np.float32).reshape(1, 3, 1, 1)
    levels = np.abs(graph_out["images"] - reference) * std / np.float32(prep.scale)
    return {
        "frame_sizes_hw": sorted({tuple(int(d) for d in f.shape[:2]) for f in frames}),
        "values": int(levels.size),
        "max_level_delta": float(levels.max()),
        "off_share": float((levels > 1e-3).mean()),
        "sizes_equal": bool(np.array_equal(graph_out["orig_target_sizes"], sizes)),
        "images": graph_out["images"],
        "reference": reference,
        "sizes_wh": sizes,
    }


def _one_level_noise(pre: dict, metadata: ModelMetadata, *, seed: int = 0) -> np.ndarray:
    """The runtime's preprocessed inputs with one level added or taken on a random ``off_share`` of the values."""
    rng = np.random.default_rng(seed)
    prep = metadata.preprocessing
    std = np.asarray(prep.std if prep.std is not None else (1.0, 1.0, 1.0), np.float32).reshape(1, 3, 1, 1)
    reference = pre["reference"]
    flips = (rng.random(reference.shape) < pre["off_share"]) * rng.choice(
        np.array([-1.0, 1.0], np.float32), reference.shape
    )
    return (reference + flips.astype(np.float32) * np.float32(prep.scale) / std).astype(np.float32)


def _agreement(reference: dict, candidate: dict, topk: int) -> dict[str, object]:
    result = compare_detections(reference, candidate, topn=min(100, topk), margin=TOLERANCES.scores)
    keys = ("compared", "matched", "max_score_delta", "max_sorted_score_delta")
    return {key: result[key] for key in keys}


def _graph_report(fused: Path, published: Path, frames: list[np.ndarray], pre: dict) -> dict:
    """Composition (exact: the gate) and end-to-end agreement (reported) of a fused graph with its published graph."""
    metadata = ModelMetadata.from_props({p.key: p.value for p in onnx.load(str(published)).metadata_props})
    got = _run_frames(_session(fused), frames, low=metadata.batch[0], outputs=list(OUTPUT_NAMES))

    def published_on(pixels: np.ndarray) -> dict[str, np.ndarray]:
        return run_graph(published, pixels, pre["sizes_wh"], batch=metadata.batch, outputs=OUTPUT_NAMES)

    runtime = published_on(pre["reference"])
    same = all(np.array_equal(got[name], value) for name, value in published_on(pre["images"]).items())
    return {
        "file": fused.name,
        "published": published.name,
        "composition_exact": same,
        "end_to_end": _agreement(runtime, got, metadata.topk),
        "one_level_noise": _agreement(runtime, published_on(_one_level_noise(pre, metadata)), metadata.topk),
        "passed": same,
    }


def write_fused(
    published: list[Path],
    images_bgr: list[np.ndarray],
    *,
    step: Callable[[str], AbstractContextManager[dict[str, str]]],
    tolerances: FusedTolerances = FusedTolerances(),
) -> dict[str, object]:
    """Write ``fused_path(p)`` beside each published graph and verify every one (see the module docstring).

    Args:
        published: the published graphs of the export (the FP32 one first), in the staging folder.
        images_bgr: the verification images.
        step: the export's step timer (``steps.Steps.step``).
        tolerances: what the preprocessing and the end-to-end check accept.

    Returns:
        The JSON-ready report: ``preprocessing`` (the subgraph against the runtime), one entry per fused graph in
        ``graphs``, the ``tolerances``, ``passed`` and ``failures``.

    Raises:
        ExportError: a graph cannot be fused, or the verification fails (nothing is published then).
    """
    with step("fuse") as note:
        first = onnx.load(str(published[0]), load_external_data=False)
        metadata = ModelMetadata.from_props({p.key: p.value for p in first.metadata_props})
        frames = check_frames(images_bgr, metadata.input_size)
        pre = _preprocessing_report(metadata, frames)
        graphs = []
        for path in published:
            onnx.save(fuse_preprocessing(onnx.load(str(path))), str(fused_path(path)))
            graphs.append(_graph_report(fused_path(path), path, frames, pre))
        failures = list(_failures(pre, graphs, tolerances))
        e2e, noise = graphs[0]["end_to_end"], graphs[0]["one_level_noise"]
        shown = {k: v for k, v in pre.items() if k not in ("images", "reference", "sizes_wh")}
        report = {"preprocessing": shown, "graphs": graphs, "tolerances": dataclasses.asdict(tolerances)}
        report.update(passed=not failures, failures=failures)
        note["detail"] = (
            f"{len(graphs)} fused; preprocessing within {shown['max_level_delta']:.2f} levels of OpenCV's, "
            f"{shown['off_share']:.1%} of values off by one; {e2e['matched']:.1%} of decided detections kept "
            f"(one-level noise: {noise['matched']:.1%})"
        )
    if failures:
        raise ExportError("fused preprocessing failed verification: " + "; ".join(failures))
    return report


def _failures(pre: dict, graphs: list[dict], tol: FusedTolerances) -> Iterator[str]:
    if pre["max_level_delta"] > tol.levels + 1e-3:
        delta = pre["max_level_delta"]
        yield f"in-graph preprocessing differs from the runtime's by {delta:.2f} levels (> {tol.levels:g})"
    if pre["off_share"] > tol.off_share:
        share = pre["off_share"]
        yield f"{share:.1%} of in-graph preprocessed values differ from the runtime's (> {tol.off_share:.0%})"
    if not pre["sizes_equal"]:
        yield "the in-graph orig_target_sizes differ from the frames' (width, height)"
    for graph in graphs:
        if not graph["composition_exact"]:
            yield f"{graph['file']} does not compute what {graph['published']} computes on its own preprocessing"
