"""Where INT8 on ONNX Runtime (CPU) loses accuracy and where its time goes.

Three measurements, each written to ``benchmarks/results/int8_analysis_<tag>.json`` (and ``.md``):

1. *accuracy* (with ``--weights`` and ``--eval-data``): COCO AP of the FP32 graph and of INT8 calibrated with each
   method (min/max, entropy, percentile), and the sensitivity table: INT8 with one layer group kept in float at a
   time (``rtdetr_deploy.export.int8_sensitivity``);
2. *profile*: ONNX Runtime's per-operator profile of the FP32 and INT8 graphs (random R18 at 640 unless
   ``--weights``): the share of kernel time per operator type, and how much of the INT8 graph's time runs in
   integer kernels (QLinear*, QGemm, MatMulInteger*) against float ones and the Q/DQ conversions between them;
3. the operator census of the graph ONNX Runtime actually runs (``SessionOptions.optimized_model_filepath``).

    python -m benchmarks.int8_analysis --tag r18_profile                       # profile of R18 at 640
    python -m benchmarks.int8_analysis --weights best.pth --imgsz 256 --eval-data synthetic --calib DIR --tag tiny
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
from pathlib import Path
from typing import Any

import numpy as np

ROOT = Path(__file__).resolve().parents[1]
INTEGER_KERNELS = ("QLinear", "QGemm", "MatMulInteger", "DynamicQuantize", "QAttention", "NhwcMaxPool")


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--weights", type=Path, default=None, help="checkpoint (default: random r18vd, profile only)")
    p.add_argument("--sampling", default="discrete")
    p.add_argument("--imgsz", type=int, default=640)
    p.add_argument("--eval-data", default=None, help="labelled data for the accuracy part ('synthetic' or a folder)")
    p.add_argument("--calib", type=Path, default=None, help="calibration images (default: 8 generated scenes)")
    p.add_argument("--calib-images", type=int, default=64)
    p.add_argument("--profile-runs", type=int, default=10)
    p.add_argument("--tag", default="r18")
    return p


def _export(args: argparse.Namespace, work: Path, calib: Path) -> tuple[Path, Path]:
    from rtdetr_deploy.export.config import ExportConfig
    from rtdetr_deploy.export.pipeline import export

    weights = args.weights
    if weights is None:
        import torch

        from rtdetr_deploy.models import build_model, get_preset, save_model

        torch.manual_seed(0)
        weights = save_model(build_model(get_preset("r18vd"), num_classes=80), work / "r18vd.pth")
    config = ExportConfig(
        weights=weights,
        out_dir=work / "export",
        imgsz=(args.imgsz, args.imgsz),
        sampling=args.sampling,
        int8_cpu=True,
        calib=calib,
        calib_images=args.calib_images,
    )
    result = export(config, verbose=False)
    return result.onnx, result.onnx.with_name(f"{result.onnx.stem}.int8-cpu.onnx")


def profile(path: Path, *, runs: int) -> dict[str, Any]:
    """Kernel time per operator type over ``runs`` batch-1 runs (after 2 warm-up runs), and the optimised census."""
    import onnx
    import onnxruntime as ort

    from rtdetr_deploy.runtime.onnxruntime_backend import read_onnx_metadata

    metadata = read_onnx_metadata(path)
    with tempfile.TemporaryDirectory() as tmp:
        options = ort.SessionOptions()
        options.enable_profiling = True
        options.profile_file_prefix = str(Path(tmp) / "profile")
        options.optimized_model_filepath = str(Path(tmp) / "optimized.onnx")
        options.log_severity_level = 3
        session = ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])
        height, width = metadata.input_size
        feed = {
            "images": np.random.default_rng(0).random((1, 3, height, width), dtype=np.float32),
            "orig_target_sizes": np.array([[width, height]], np.int64),
        }
        for _ in range(2 + runs):
            session.run(None, feed)
        events = json.loads(Path(session.end_profiling()).read_text())
        census = collections.Counter(node.op_type for node in onnx.load(options.optimized_model_filepath).graph.node)
    by_op: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event["name"].endswith("_kernel_time"):
            by_op[event["args"]["op_name"]] += event["dur"]
    total = sum(by_op.values())
    integer = sum(v for op, v in by_op.items() if op.startswith(INTEGER_KERNELS))
    conversions = sum(v for op, v in by_op.items() if op in ("QuantizeLinear", "DequantizeLinear"))
    return {
        "kernel_ms_per_run": total / 1e3 / (2 + runs),
        "share_by_op": {op: v / total for op, v in by_op.most_common()},
        "share_integer_kernels": integer / total,
        "share_qdq_conversions": conversions / total,
        "share_float_kernels": 1 - (integer + conversions) / total,
        "optimized_census": dict(census.most_common()),
    }


def accuracy(fp32: Path, args: argparse.Namespace, calib: Path) -> dict[str, Any]:
    from rtdetr_deploy.eval.evaluate import evaluate_model, load_eval_data
    from rtdetr_deploy.export.int8_sensitivity import int8_sensitivity
    from rtdetr_deploy.export.quantize import CALIBRATION_METHODS, quantize_int8
    from rtdetr_deploy.runtime.sources import read_image_folder

    data = load_eval_data(args.eval_data)
    images = read_image_folder(calib, limit=args.calib_images)
    result: dict[str, Any] = {"fp32_AP": evaluate_model(fp32, data, progress=False).metrics["AP"], "calibration": {}}
    with tempfile.TemporaryDirectory() as tmp:
        for method in CALIBRATION_METHODS:
            path = quantize_int8(fp32, Path(tmp) / f"{method}.onnx", images, target="onnxruntime", calibration=method)
            result["calibration"][method] = evaluate_model(path, data, progress=False).metrics["AP"]
            print(f"calibration {method}: AP {result['calibration'][method]:.4f}", flush=True)
    result["sensitivity"] = int8_sensitivity(fp32, images, data, log=print)
    return result


def _markdown(record: dict[str, Any]) -> str:
    from rtdetr_deploy.tables import markdown_table

    lines = [f"INT8 analysis ({record['tag']}): {record['model']}", ""]
    for name in ("fp32", "int8"):
        prof = record["profile"][name]
        lines.append(f"- {name}: {prof['kernel_ms_per_run']:.1f} ms of kernels per run (profiled)")
    int8 = record["profile"]["int8"]
    lines.append(
        f"- INT8 time: {int8['share_integer_kernels']:.0%} integer kernels, {int8['share_qdq_conversions']:.0%} "
        f"Q/DQ conversions, {int8['share_float_kernels']:.0%} float kernels"
    )
    rows = [[op, f"{share:.1%}"] for op, share in list(int8["share_by_op"].items())[:15]]
    lines += ["", *markdown_table(["INT8 operator", "share of kernel time"], rows)]
    if "accuracy" in record:
        acc = record["accuracy"]
        rows = [["fp32", f"{acc['fp32_AP']:.4f}"]] + [
            [f"int8 {m}", f"{ap:.4f}"] for m, ap in acc["calibration"].items()
        ]
        lines += ["", *markdown_table(["graph", "AP"], rows), ""]
        sens = acc["sensitivity"]
        rows = [[g["group"], str(g["nodes"]), f"{g['AP']:.4f}", f"{g['recovered']:+.4f}"] for g in sens["groups"]]
        lines += markdown_table(["kept float", "nodes", "AP", "vs full INT8"], rows)
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    import cv2

    from rtdetr_deploy.bench.device import describe_device
    from rtdetr_deploy.data.scenes import cluttered_scenes

    with tempfile.TemporaryDirectory(prefix="int8-analysis-") as tmp:
        work = Path(tmp)
        calib = args.calib
        if calib is None:
            calib = work / "calibration"
            calib.mkdir()
            for index, image in enumerate(cluttered_scenes(8, seed=1000)):
                cv2.imwrite(str(calib / f"{index:03d}.png"), image)
        fp32, int8 = _export(args, work, calib)
        record: dict[str, Any] = {
            "tag": args.tag,
            "model": f"{args.weights or 'random r18vd'} at {args.imgsz}, {args.sampling} sampling",
            "machine": describe_device("cpu"),
            "profile": {"fp32": profile(fp32, runs=args.profile_runs), "int8": profile(int8, runs=args.profile_runs)},
        }
        if args.eval_data is not None:
            record["accuracy"] = accuracy(fp32, args, calib)
    out = ROOT / "benchmarks" / "results" / f"int8_analysis_{args.tag}"
    out.with_suffix(".json").write_text(json.dumps(record, indent=1) + "\n")
    out.with_suffix(".md").write_text(_markdown(record))
    print(_markdown(record))
    return 0


if __name__ == "__main__":
    sys.exit(main())
