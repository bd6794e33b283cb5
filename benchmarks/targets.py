"""The measured compatibility matrix: every target engine, both samplings, written to ``docs/targets.md``.

For each model (the shipped trained tiny; ``--models tiny,r18`` adds the official-layout R18: the trained reference
of docs/frontier.md with ``--r18-reference DIR``, else random weights) and each sampling (discrete, bilinear), with
the weights trained (or fine-tuned) for that sampling, exports the verified ONNX with the project's exporter, then
converts it to every target (``export.targets.convert_target``: MNN, LiteRT via onnx2tf, RKNN rk3588 FP16 in
rknn-toolkit2's simulator, ncnn via pnnx from the model itself, bilinear only) and records, per target: whether it
converts (else the converter's error), whether it runs, the largest difference of its decided top-20 detections to
PyTorch's (score, box px) on the verification images, the COCO AP on the synthetic validation split and its
difference to ONNX Runtime's (trained weights only), and the p50 latency of ``Backend.infer`` on one preprocessed
image on this CPU (none for the simulator). ONNX Runtime's own row is the reference. Nothing in the table is typed
by hand; the machine is recorded.

    python benchmarks/targets.py --onnx2tf-python ENV/onnx2tf/bin/python --rknn-python ENV/rknn/bin/python \
        --ncnn-python ENV/pnnx/bin/python
    python benchmarks/targets.py --models tiny,r18 --r18-reference runs/r18_reference ...   # docs/targets.md
    python benchmarks/targets.py --targets mnn --runs 5          # a quick run without the separate interpreters
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
import traceback
from pathlib import Path
from typing import Any

import numpy as np

from rtdetr_deploy.agreement import compare_detections
from rtdetr_deploy.atomic import atomic_path
from rtdetr_deploy.bench.device import describe_device
from rtdetr_deploy.bench.report import device_line
from rtdetr_deploy.coco import coco_box_metrics
from rtdetr_deploy.eval.evaluate import evaluate_model, load_eval_data
from rtdetr_deploy.export.config import ExportConfig
from rtdetr_deploy.export.graphs import run_graph
from rtdetr_deploy.export.pipeline import export
from rtdetr_deploy.export.target_config import TargetsConfig
from rtdetr_deploy.export.targets import convert_target
from rtdetr_deploy.export.verify import verification_images
from rtdetr_deploy.runtime import open_backend
from rtdetr_deploy.runtime.onnxruntime_backend import read_onnx_metadata
from rtdetr_deploy.runtime.preprocess import preprocess
from rtdetr_deploy.runtime.sources import read_image
from rtdetr_deploy.tables import markdown_table

try:
    from benchmarks.targets_usage import NCNN, USAGE
except ModuleNotFoundError:  # run as a script, ``python benchmarks/targets.py``: this folder is on the path
    from targets_usage import NCNN, USAGE  # type: ignore[no-redef]

ROOT = Path(__file__).resolve().parents[1]
WEIGHTS = ROOT / "rtdetr_deploy" / "data" / "weights"
# Each sampling's rows use the weights trained (or fine-tuned) with that sampling.
TINY = {"bilinear": WEIGHTS / "tiny_synthetic.pth", "discrete": WEIGHTS / "tiny_synthetic_discrete.pth"}
TARGET_FILES = {
    "mnn": "model.mnn",
    "litert": "model.tflite",
    "rknn": "model.rk3588-fp16.rknn",
    "ncnn": "model.ncnn",
}
OUTPUTS = ("labels", "boxes", "scores")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--models", default="tiny", help="comma-separated: tiny, r18 (default: tiny)")
    parser.add_argument(
        "--r18-reference",
        type=Path,
        default=None,
        metavar="DIR",
        help="trained R18 reference: DIR/bilinear/best.pth and DIR/discrete/best.pth (default: random weights)",
    )
    parser.add_argument(
        "--targets",
        default="mnn,litert,rknn,ncnn",
        help="comma-separated: mnn, litert, rknn, ncnn (default: all four)",
    )
    parser.add_argument("--samplings", default="discrete,bilinear")
    parser.add_argument("--onnx2tf-python", type=Path, default=None, help="interpreter with onnx2tf (LiteRT)")
    parser.add_argument("--rknn-python", type=Path, default=None, help="interpreter with rknn-toolkit2 (RKNN)")
    parser.add_argument("--ncnn-python", type=Path, default=None, help="interpreter with pnnx (ncnn)")
    parser.add_argument("--runs", type=int, default=20, help="timed inferences per engine (default: 20)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "targets.json")
    parser.add_argument("--doc", type=Path, default=ROOT / "docs" / "targets.md")
    parser.add_argument(
        "--render-only", action="store_true", help="rewrite --doc from the JSON at --out, measure nothing"
    )
    return parser


def _p50_ms(infer: Any, feed: dict[str, np.ndarray], runs: int) -> float:
    for _ in range(3):
        infer(feed)
    times = []
    for _ in range(runs):
        start = time.perf_counter()
        infer(feed)
        times.append((time.perf_counter() - start) * 1e3)
    return float(np.median(times))


def _ap_of_outputs(outputs: dict[str, np.ndarray], data: Any, metadata: Any) -> float:
    """COCO AP of raw deploy outputs on ``data``'s images (boxes already in original pixels)."""
    results = []
    for record, labels, boxes, scores in zip(data.coco.images, *(outputs[n] for n in OUTPUTS), strict=True):
        for label, (x1, y1, x2, y2), score in zip(labels, boxes, scores, strict=True):
            bbox = [float(x1), float(y1), float(x2 - x1), float(y2 - y1)]
            category = metadata.category_ids[int(label)]
            results.append({"image_id": record.id, "category_id": category, "bbox": bbox, "score": float(score)})
    return float(coco_box_metrics(data.coco.coco, results)[0]["AP"])


def _val_inputs(data: Any, metadata: Any) -> tuple[np.ndarray, np.ndarray]:
    images = [read_image(record.path)[0] for record in data.coco.images]
    return preprocess(images, input_size=metadata.input_size, preprocessing=metadata.preprocessing)


def _weights(model: str, sampling: str, folder: Path, r18_reference: Path | None) -> tuple[Path, bool]:
    """The checkpoint of ``model`` for ``sampling`` and whether it is trained (on the synthetic data)."""
    if model == "tiny":
        return TINY[sampling], True
    if r18_reference is not None:
        return r18_reference / sampling / "best.pth", True
    from rtdetr_deploy.models import build_model, get_preset, save_model

    return save_model(build_model(get_preset("r18vd")), folder / "r18vd_random.pth"), False


def _export(weights: Path, sampling: str, folder: Path) -> Path:
    """The verified ONNX of ``weights``."""
    config = ExportConfig(weights=weights, out_dir=folder, sampling=sampling)
    return export(config, verbose=False).onnx


def _row(target: str, engine: Path, deploy: Path, ctx: dict[str, Any]) -> dict[str, Any]:
    row: dict[str, Any] = {"target": target, "converts": False, "runs": False}
    if target.startswith("rknn") and ctx["config"].rknn is None:
        row["error"] = "not measured: no --rknn-python"
        return row
    if target == "ncnn" and ctx["sampling"] != "bilinear":
        row["error"] = "not applicable: ncnn has no GatherElements layer (--ncnn needs --sampling bilinear)"
        return row
    if target == "ncnn" and not ctx["config"].ncnn:
        row["error"] = "not measured: no --ncnn-python"
        return row
    inputs, count = ctx["inputs"], len(ctx["inputs"][0])
    config = ctx["config"]
    if target == "rknn" and ctx["data"] is not None:  # one simulator run: verification images, then the val split
        run_on = tuple(np.concatenate([a, b]) for a, b in zip(inputs, ctx["val_inputs"], strict=True))
    else:
        run_on = inputs
    try:
        start = time.perf_counter()
        model = _bilinear_model(ctx) if target == "ncnn" else None
        outputs, record, precision = convert_target(target, config, deploy, engine, run_on, model=model)
        row.update(converts=True, runs=True, precision=precision, conversion=record)
        row["convert_s"] = round(time.perf_counter() - start, 1)
    except Exception as exc:  # each converter's failure is a result of the matrix
        row["error"] = " ".join(str(exc).split())[:300] or type(exc).__name__
        return row
    agreement = compare_detections(ctx["torch"], {n: outputs[n][:count] for n in OUTPUTS}, topn=20, margin=1e-3)
    row.update(
        decided=agreement["compared"],
        matched=agreement["matched"],
        max_score_delta=agreement["max_score_delta"],
        max_box_delta_px=agreement["max_box_delta_px"],
    )
    if ctx["data"] is not None:
        if target == "rknn":
            row["AP"] = _ap_of_outputs({n: outputs[n][count:] for n in OUTPUTS}, ctx["data"], ctx["metadata"])
        else:
            row["AP"] = evaluate_model(engine, ctx["data"], progress=False).metrics["AP"]
        row["dAP"] = row["AP"] - ctx["ort_ap"]
    if target != "rknn":
        with open_backend(engine) as backend:
            feed = {"images": inputs[0][:1], "orig_target_sizes": inputs[1][:1]}
            row["p50_ms"] = _p50_ms(backend.infer, feed, ctx["runs"])
    return row


def _bilinear_model(ctx: dict[str, Any]) -> Any:
    """The case's checkpoint as the exporter loads it for ``--ncnn`` (bilinear sampling, the export's input size)."""
    from rtdetr_deploy.models.checkpoint import load_model

    return load_model(ctx["weights_path"], sampling="bilinear").set_eval_size(ctx["metadata"].input_size)


def _pytorch(weights: Path, sampling: str, metadata: Any, inputs: tuple[np.ndarray, np.ndarray]) -> dict:
    """The checkpoint in PyTorch with the export's sampling and post-processing: ``labels``/``boxes``/``scores``."""
    import torch

    from rtdetr_deploy.models.checkpoint import load_model
    from rtdetr_deploy.models.postprocess import DeployModel, PostProcessor

    model = load_model(weights, sampling=sampling)
    model.set_eval_size(metadata.input_size)
    deploy = DeployModel(model.deploy(), PostProcessor(topk=metadata.topk)).eval()
    with torch.no_grad():
        outputs = deploy(torch.from_numpy(inputs[0]), torch.from_numpy(inputs[1]))
    return {name: value.numpy() for name, value in zip(OUTPUTS, outputs, strict=True)}


def _reference(model: str, sampling: str, folder: Path, args: argparse.Namespace, data: Any) -> tuple[Path, dict]:
    """Export, then the PyTorch and ONNX Runtime reference rows and the context every target row uses."""
    weights, trained = _weights(model, sampling, folder, args.r18_reference)
    deploy = _export(weights, sampling, folder)
    metadata = read_onnx_metadata(deploy)
    inputs = preprocess(verification_images(None), input_size=metadata.input_size, preprocessing=metadata.preprocessing)
    torch_outputs = _pytorch(weights, sampling, metadata, inputs)
    ort_outputs = run_graph(deploy, *inputs, batch=metadata.batch)
    agreement = compare_detections(torch_outputs, ort_outputs, topn=20, margin=1e-3)
    ort_row: dict[str, Any] = {"target": "onnxruntime", "converts": True, "runs": True, "precision": "fp32"}
    ort_row.update(decided=agreement["compared"], matched=agreement["matched"])
    ort_row["max_score_delta"] = agreement["max_score_delta"]
    ort_row["max_box_delta_px"] = agreement["max_box_delta_px"]
    ctx: dict[str, Any] = {"inputs": inputs, "torch": torch_outputs, "metadata": metadata, "runs": args.runs}
    ctx["data"] = data if trained else None
    ctx["weights"] = weights.name if model == "tiny" else ("trained" if trained else "random")
    ctx["sampling"], ctx["weights_path"] = sampling, weights
    rknn = "rk3588" if args.rknn_python is not None else None
    ncnn = {"ncnn": True, "ncnn_python": args.ncnn_python} if args.ncnn_python is not None else {}
    ctx["config"] = TargetsConfig(tflite_python=args.onnx2tf_python, rknn=rknn, rknn_python=args.rknn_python, **ncnn)
    if ctx["data"] is not None:
        ort_row["AP"] = ctx["ort_ap"] = evaluate_model(deploy, data, progress=False).metrics["AP"]
        ort_row["dAP"] = 0.0
        ctx["val_inputs"] = _val_inputs(data, metadata)
    with open_backend(deploy) as backend:
        feed = {"images": inputs[0][:1], "orig_target_sizes": inputs[1][:1]}
        ort_row["p50_ms"] = _p50_ms(backend.infer, feed, args.runs)
    ctx["rows"] = [ort_row]
    return deploy, ctx


def _cell(row: dict[str, Any], key: str) -> str:
    value = row.get(key)
    if value is None:
        return "-"
    if key in ("AP", "dAP"):
        return f"{value:+.4f}" if key == "dAP" else f"{value:.4f}"
    if key == "matched":
        return f"{value:.0%}"
    if key in ("max_score_delta", "max_box_delta_px") and not row.get("matched", 1):
        return "-"  # nothing was found again: there is no difference to report
    if key == "max_score_delta":
        return f"{value:.1e}"
    return f"{value:.2f}" if isinstance(value, float) else str(value)


def _markdown(report: dict[str, Any]) -> str:
    header = [
        "model",
        "sampling",
        "target",
        "precision",
        "converts",
        "runs",
        "decided top-20",
        "found again",
        "max score diff",
        "max box diff px",
        "AP",
        "dAP vs ORT",
        "p50 ms",
        "note",
    ]
    rows = []
    for case in report["cases"]:
        for row in case["rows"]:
            note = row.get("error", "")
            if row["target"].startswith("rknn") and row.get("runs"):
                note = "run in rknn-toolkit2's x86 simulator (no latency)"
            weights = case.get("weights")
            cells = [
                f"{case['model']} ({weights})" if weights else case["model"],
                case["sampling"],
                row["target"],
                row.get("precision", "-"),
                "yes" if row["converts"] else "no",
                "yes" if row["runs"] else "no",
            ]
            cells += [
                _cell(row, k)
                for k in ("decided", "matched", "max_score_delta", "max_box_delta_px", "AP", "dAP", "p50_ms")
            ]
            rows.append([*cells, note])
    lines = [
        "# Target engines: the measured compatibility matrix",
        "",
        "Generated by `python benchmarks/targets.py` (do not edit by hand); raw figures in "
        "`benchmarks/results/targets.json`.",
        "",
        f"Machine: {device_line(report['device'])}. Command: `{report['command']}`. Took {report['seconds']:.0f} s.",
        "",
        "Differences are against PyTorch (the checkpoint with the same sampling and post-processing) on the "
        "export's 4 generated verification scenes, over the top-20 detections that are decided at a 1e-3 score margin. "
        "AP is COCO AP on "
        "the synthetic validation split (trained weights only), dAP against ONNX Runtime FP32. p50 is "
        "`Backend.infer` on one preprocessed image, batch 1.",
        "",
        *markdown_table(header, rows),
        USAGE,
        NCNN,
    ]
    return "\n".join(lines)


def _write_doc(path: Path, report: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(path) as tmp:
        tmp.write_text(_markdown(report))


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.render_only:
        _write_doc(args.doc, json.loads(args.out.read_text()))
        return 0
    started = time.perf_counter()
    data = load_eval_data("synthetic", split="val")
    cases = []
    for model in args.models.split(","):
        for sampling in args.samplings.split(","):
            with tempfile.TemporaryDirectory(prefix="rtdetr-targets-") as tmp:
                deploy, ctx = _reference(model, sampling, Path(tmp), args, data)
                for target in args.targets.split(","):
                    row = _row(target, Path(tmp) / TARGET_FILES[target], deploy, ctx)
                    print(model, sampling, json.dumps(row, default=str)[:400], flush=True)
                    ctx["rows"].append(row)
            case = {"model": model, "weights": ctx["weights"], "sampling": sampling, "rows": ctx["rows"]}
            cases.append(case)
    report = {
        "command": "python benchmarks/targets.py " + " ".join(argv if argv is not None else sys.argv[1:]),
        "device": describe_device("cpu"),
        "seconds": time.perf_counter() - started,
        "cases": cases,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    with atomic_path(args.out) as tmp:
        tmp.write_text(json.dumps(report, indent=2, default=str))
    _write_doc(args.doc, report)
    print(f"wrote {args.out} and {args.doc}")
    return 0


if __name__ == "__main__":
    try:
        sys.exit(main())
    except KeyboardInterrupt:
        traceback.print_exc()
        sys.exit(130)
