"""Side-by-side comparisons of measured cases, as ratios, and the detection agreement between them.

Cases differ in one field at a time (sampling, precision, backend, CUDA graph, batch); every comparison pairs two
results that agree on all other fields. Speed ratios use the median (p50) latency, which a busy machine disturbs
least. All functions take the JSON-ready result records of ``run.run_benchmark``, so a saved report can be
compared again.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from ..agreement import compare_detections

__all__ = ["VARIATIONS", "compare_results", "overhead_rows", "agreement_rows"]

# (field that differs, comparison name, baseline value, candidate value)
VARIATIONS: tuple[tuple[str, str, object, object], ...] = (
    ("sampling", "discrete vs bilinear sampling", "bilinear", "discrete"),
    ("precision", "INT8 vs FP32", "fp32", "int8"),
    ("precision", "FP16 vs FP32", "fp32", "fp16"),
    ("backend", "ONNX Runtime vs PyTorch eager", "torch", "onnxruntime"),
    ("backend", "TensorRT vs ONNX Runtime", "onnxruntime", "tensorrt"),
    ("backend", "TensorRT vs PyTorch eager", "torch", "tensorrt"),
    ("cuda_graph", "CUDA graph vs eager", False, True),
)
CASE_FIELDS = ("backend", "precision", "sampling", "device", "cuda_graph", "batch")


def _describe(record: Mapping[str, Any], skip: str) -> str:
    """The fields held fixed in a comparison, e.g. ``"onnxruntime fp32, cpu, batch 1"``."""
    parts = [str(record[f]) for f in ("backend", "precision", "sampling") if f != skip]
    if record.get("cuda_graph") and skip != "cuda_graph":
        parts.append("CUDA graph")
    return f"{' '.join(parts)}, {record['device']}, batch {record['batch']}"


def _key(record: Mapping[str, Any], skip: str) -> tuple[object, ...]:
    return tuple(record[f] for f in CASE_FIELDS if f != skip)


def _row(name: str, fixed: str, baseline: str, candidate: str, b: float, c: float, unit: str, ratio: float) -> dict:
    if unit == "ms" and abs(ratio - 1) < 0.01:
        reading = f"{candidate} and {baseline} are equally fast (within 1%)"
    elif unit == "ms":
        factor, how = (ratio, "faster") if ratio >= 1 or ratio <= 0 else (1 / ratio, "slower")
        reading = f"{candidate} is {factor:.2f}x {how} than {baseline}"
    else:
        reading = f"{candidate} delivers {ratio:.2f}x the images/s of {baseline}"
    return {
        "comparison": name,
        "fixed": fixed,
        "baseline": baseline,
        "candidate": candidate,
        "baseline_value": b,
        "candidate_value": c,
        "unit": "ms p50" if unit == "ms" else unit,
        "ratio": ratio,
        "reading": reading,
    }


def compare_results(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """Speed ratios between results that differ in one field (see ``VARIATIONS``), and batch scaling.

    Returns:
        One row per pair: ``comparison``, ``fixed`` (what both share), ``baseline``, ``candidate``, their values,
        ``unit``, ``ratio`` (> 1: the candidate is faster) and a one-line ``reading``.
    """
    rows = []
    for field_name, name, base_value, cand_value in VARIATIONS:
        baselines = {_key(r, field_name): r for r in results if r[field_name] == base_value}
        for record in results:
            if record[field_name] != cand_value:
                continue
            base = baselines.get(_key(record, field_name))
            if base is None:
                continue
            b, c = base["latency"]["p50_ms"], record["latency"]["p50_ms"]
            label = {False: "eager", True: "CUDA graph"} if field_name == "cuda_graph" else {}
            rows.append(
                _row(
                    name,
                    _describe(record, field_name),
                    str(label.get(base_value, base_value)),
                    str(label.get(cand_value, cand_value)),
                    b,
                    c,
                    "ms",
                    b / c if c > 0 else 0.0,
                )
            )
    by_case: dict[str, list[Mapping[str, Any]]] = {}
    for record in results:
        by_case.setdefault(f"{record['case']}, {record['device']}", []).append(record)
    for case, records in by_case.items():
        records = sorted(records, key=lambda r: r["batch"])
        first = records[0]
        for record in records[1:]:
            b, c = first["latency"]["images_per_s"], record["latency"]["images_per_s"]
            rows.append(
                _row(
                    "batch scaling",
                    case,
                    f"batch {first['batch']}",
                    f"batch {record['batch']}",
                    b,
                    c,
                    "images/s",
                    c / b if b > 0 else 0.0,
                )
            )
    return rows


def overhead_rows(results: Sequence[Mapping[str, Any]]) -> list[dict[str, Any]]:
    """The runtime's overhead and the video pipeline's efficiency, for results with a per-stage split.

    Returns rows (same fields as ``compare_results``) of three kinds:
        ``runtime overhead``: (preprocess + postprocess) per frame / inference per frame, from the stage split.
        ``runtime end-to-end vs bare inference``: (preprocess + inference + postprocess) per frame through
            ``Detector`` / the bare backend's mean inference time per image.
        ``video pipeline vs inference``: end-to-end FPS of the threaded pipeline / the backend's images/s at
            median latency (``batch / p50``), the rate inference alone would allow; with ``stage_rates`` the
            reading also names the stage that bounds the pipeline (the slowest stage alone).
    """
    rows = []
    for record in results:
        fixed = f"{record['case']}, {record['device']}, batch {record['batch']}"
        stages = record.get("stages")
        if stages:
            per_frame = stages["per_frame_ms"]
            extra = per_frame["preprocess"] + per_frame["postprocess"]
            inference = per_frame["inference"]
            share = extra / inference if inference > 0 else 0.0
            row = _row(
                "runtime overhead", fixed, "inference", "preprocess + postprocess", inference, extra, "ms/frame", share
            )
            row["reading"] = f"preprocess + postprocess = {share:.1%} of inference time"
            rows.append(row)
            bare = record["latency"]["mean_ms"] / record["batch"]
            runtime = extra + inference
            ratio = runtime / bare if bare > 0 else 0.0
            row = _row(
                "runtime end-to-end vs bare inference",
                fixed,
                "bare backend.infer",
                "Detector end to end",
                bare,
                runtime,
                "ms/frame",
                ratio,
            )
            row["reading"] = _runtime_reading(record, runtime, bare)
            rows.append(row)
        pipeline = record.get("pipeline")
        if pipeline:
            allowed = record["batch"] * 1e3 / record["latency"]["p50_ms"]
            ratio = pipeline["fps"] / allowed if allowed > 0 else 0.0
            row = _row(
                "video pipeline vs inference",
                fixed,
                "1 / inference latency",
                "pipeline end-to-end FPS",
                allowed,
                pipeline["fps"],
                "images/s",
                ratio,
            )
            row["reading"] = f"the video pipeline reaches {ratio:.1%} of the rate inference alone allows"
            rates = record.get("stage_rates")
            if rates:
                stage = rates["bound_by"]
                row["reading"] += f"; bound by {stage} ({rates['fps'][stage]:.1f} frames/s alone)"
            rows.append(row)
    return rows


def _runtime_reading(record: Mapping[str, Any], runtime_ms: float, bare_ms: float) -> str:
    """What the runtime adds per frame, or "within noise" when the difference lies inside the spread of the two
    measurements (their standard deviations per frame): a cost under the noise, or a negative one, is no cost."""
    batch = record["batch"]
    spread = record["latency"].get("std_ms", 0.0) / batch
    stage = (record.get("stages") or {}).get("stages", {}).get("inference")
    if stage:
        spread = max(spread, stage.get("std_ms", 0.0) / batch)
    if runtime_ms - bare_ms <= spread:
        return f"the runtime's cost is within noise ({runtime_ms - bare_ms:+.2f} ms per frame, spread {spread:.2f} ms)"
    return f"the runtime adds {runtime_ms / bare_ms - 1:.1%} to the bare inference time"


def agreement_rows(
    outputs: Mapping[str, Mapping[str, np.ndarray]], cases: Sequence[Mapping[str, Any]], *, iou: float = 0.9
) -> list[dict[str, Any]]:
    """How many of a reference's top-100 detections each variant finds again (same label, IoU >= ``iou``).

    Args:
        outputs: case label -> ``labels``/``boxes``/``scores`` on the same images.
        cases: one record per case label (fields ``case``, ``backend``, ``precision``, ``sampling``, ``device``,
            ``cuda_graph``); pairs are formed as in ``VARIATIONS``, the baseline being the reference.
    """
    rows = []
    for field_name, name, base_value, cand_value in VARIATIONS:
        for candidate in cases:
            if candidate[field_name] != cand_value or candidate["case"] not in outputs:
                continue
            key = tuple(candidate[f] for f in CASE_FIELDS if f not in (field_name, "batch"))
            reference = next(
                (
                    r
                    for r in cases
                    if r[field_name] == base_value
                    and tuple(r[f] for f in CASE_FIELDS if f not in (field_name, "batch")) == key
                    and r["case"] in outputs
                ),
                None,
            )
            if reference is None:
                continue
            ref_out, cand_out = outputs[reference["case"]], outputs[candidate["case"]]
            result = compare_detections(ref_out, cand_out, iou=iou, topn=min(100, ref_out["scores"].shape[1]))
            rows.append(
                {
                    "comparison": name,
                    "reference": reference["case"],
                    "candidate": candidate["case"],
                    "device": candidate["device"],
                    "images": int(ref_out["labels"].shape[0]),
                    "iou": iou,
                    "matched": result["matched"],
                    "min_image_matched": result["min_image_matched"],
                    "max_score_delta": result["max_score_delta"],
                    "mean_iou": result["mean_iou"],
                }
            )
    return rows
