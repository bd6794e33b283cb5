"""Every CPU precision side by side: ONNX Runtime FP32 and INT8 (``--int8-cpu``), OpenVINO FP32, BF16, NNCF INT8.

Exports RT-DETRv2-R18 (r18vd, official layout) at 640 with ``rtdetr-export``'s pipeline (``--int8-cpu --openvino
fp32,bf16,int8``: every file verified as the export verifies it), then times the model alone (``Backend.infer``
on one preprocessed image, batch 1) of every file alternately in one process: warm-up first, then ``--runs``
rounds, each round running every model once in a rotated order (round-robin), so that whatever else the machine
does slows all of them alike. Records the machine (``describe_device``, plus the OpenVINO and NNCF versions) and
the share of the CPUs other processes used while timing (``CpuContention``), and writes
``benchmarks/results/cpu_precisions*.json`` and ``.md``.

Random weights by default (speed does not depend on them); ``--weights`` exports a trained checkpoint instead,
and ``--eval-data`` then adds the COCO AP of every file (the export's AP gates) to the report.

    python -m benchmarks.cpu_precisions                       # 30 runs each (the figures)
    python -m benchmarks.cpu_precisions --runs 5 --warmup 2   # a smoke run
    python -m benchmarks.cpu_precisions --weights best.pth --eval-data data/coco --calib data/coco/images/train
"""

from __future__ import annotations

import argparse
import importlib.metadata
import json
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rtdetr_deploy.artifacts import onnx_path, openvino_path
from rtdetr_deploy.bench.device import describe_device
from rtdetr_deploy.bench.report import device_line, other_cpu
from rtdetr_deploy.bench.stats import summarize
from rtdetr_deploy.bench.timing import CpuContention
from rtdetr_deploy.export.report import AccuracyGate, ExportReport
from rtdetr_deploy.runtime import OpenVinoBackend, OrtBackend
from rtdetr_deploy.runtime.preprocess import preprocess
from rtdetr_deploy.tables import markdown_table

ROOT = Path(__file__).resolve().parents[1]
# (label, backend, precision, export variant: the key of the export's reports and AP gates)
CASES = (
    ("onnxruntime fp32", "onnxruntime", "fp32", "fp32"),
    ("onnxruntime int8 (--int8-cpu)", "onnxruntime", "int8", "int8-cpu"),
    ("openvino fp32 (f32 hint)", "openvino", "fp32", "openvino-fp32"),
    ("openvino bf16", "openvino", "bf16", "openvino-bf16"),
    ("openvino int8 (NNCF)", "openvino", "int8", "openvino-int8"),
)


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=30, help="timed runs per model (default: 30)")
    parser.add_argument("--warmup", type=int, default=5, help="untimed runs per model first (default: 5)")
    parser.add_argument("--imgsz", type=int, default=640, help="input size (default: 640)")
    parser.add_argument("--weights", type=Path, default=None, help="checkpoint to export (default: random r18vd)")
    parser.add_argument("--eval-data", type=Path, default=None, help="labelled COCO data: AP of every file")
    parser.add_argument("--calib", type=Path, default=None, help="calibration images (default: 8 generated scenes)")
    parser.add_argument("--sampling", default="discrete", help="sampling of the export (default: discrete)")
    parser.add_argument("--calib-method", default="minmax", help="INT8 calibration of the ONNX (default: minmax)")
    parser.add_argument("--threads", type=int, default=None, help="threads of every runtime (default: theirs)")
    parser.add_argument("--work", type=Path, default=None, help="folder for the exported files (default: temporary)")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "cpu_precisions")
    return parser


def _weights(args: argparse.Namespace, work: Path) -> Path:
    if args.weights is not None:
        return args.weights
    import torch

    from rtdetr_deploy.models import build_model, get_preset, save_model

    torch.manual_seed(0)
    model = build_model(get_preset("r18vd"), num_classes=80)
    return save_model(model, work / "r18vd.pth")


def _calibration(args: argparse.Namespace, work: Path) -> Path:
    if args.calib is not None:
        return args.calib
    from rtdetr_deploy.data.scenes import cluttered_scenes

    folder = work / "calibration"
    folder.mkdir(parents=True, exist_ok=True)
    for index, image in enumerate(cluttered_scenes(8, seed=1000)):
        cv2.imwrite(str(folder / f"{index:03d}.png"), image)
    return folder


def _export(args: argparse.Namespace, work: Path, precisions: tuple[str, ...]) -> tuple[Path, dict[str, Any], float]:
    from rtdetr_deploy.export.config import ExportConfig
    from rtdetr_deploy.export.pipeline import export

    config = ExportConfig(
        weights=_weights(args, work),
        out_dir=work / "export",
        imgsz=(args.imgsz, args.imgsz),
        sampling=args.sampling,
        int8_cpu=True,
        openvino=precisions,
        calib=_calibration(args, work),
        calib_method=args.calib_method,
        eval_data=args.eval_data,
        # A benchmark records what every precision costs; it does not refuse one (the export's gates would).
        max_fp16_drop=1.0,
        max_int8_drop=1.0,
        max_bf16_drop=1.0,
    )
    start = time.perf_counter()
    result = export(config, verbose=True)
    return result.onnx, result.report, time.perf_counter() - start


def _open(backend: str, path: Path, threads: int | None) -> Any:
    if backend == "openvino":
        return OpenVinoBackend.from_path(path, threads=threads)
    if threads is None:
        return OrtBackend.from_path(path)
    import onnxruntime as ort

    from rtdetr_deploy.runtime.onnxruntime_backend import read_onnx_metadata

    options = ort.SessionOptions()
    options.intra_op_num_threads = threads
    session = ort.InferenceSession(str(path), sess_options=options, providers=["CPUExecutionProvider"])
    return OrtBackend(session, metadata=read_onnx_metadata(path), path=path, device="cpu")


def _time_round_robin(backends: list[Any], feed: dict[str, np.ndarray], *, warmup: int, runs: int) -> list[list[float]]:
    """Per-backend latencies in seconds: ``warmup`` untimed calls each, then ``runs`` rounds in rotated order."""
    for backend in backends:
        for _ in range(warmup):
            backend.infer(feed)
    latencies: list[list[float]] = [[] for _ in backends]
    for round_index in range(runs):
        for step in range(len(backends)):
            index = (round_index + step) % len(backends)
            start = time.perf_counter()
            backends[index].infer(feed)
            latencies[index].append(time.perf_counter() - start)
    return latencies


def _markdown(report: dict[str, Any]) -> str:
    rows = []
    for record in report["results"]:
        stats, accuracy = record["latency"], record.get("accuracy") or {}
        ap = f"{accuracy['AP']:.4f}" if accuracy else "-"
        delta = f"{accuracy['delta_AP']:+.4f}" if accuracy else "-"
        rows.append(
            [
                record["label"],
                record["inference_precision"] or "-",
                f"{stats['p50_ms']:.1f}",
                f"{stats['p90_ms']:.1f}",
                f"{stats['mean_ms']:.1f}",
                f"{record['speedup_vs_onnxruntime_fp32']:.2f}x",
                ap,
                delta,
            ]
        )
    header = ["model", "OpenVINO precision hint", "p50 ms", "p90 ms", "mean ms", "vs ORT FP32 (p50)", "AP", "ΔAP"]
    settings, model = report["settings"], report["model"]
    lines = [
        f"# OpenVINO vs ONNX Runtime on the CPU: {model['preset']} at {model['input_size']}, batch 1",
        "",
        f"Machine: {device_line(report['machine'])}; OpenVINO {report['versions']['openvino']}, "
        f"NNCF {report['versions']['nncf']}. Other processes used {other_cpu(report['other_cpu_share'])} of the CPUs "
        f"while timing. {settings['runs']} runs per model after {settings['warmup']} warm-up runs, round-robin in one "
        f"process; model alone (Backend.infer), {model['weights']} weights.",
        "",
        *markdown_table(header, rows),
        "",
    ]
    return "\n".join(lines)


def _accuracy(gate: AccuracyGate) -> dict[str, float]:
    return {"AP": gate.ap, "AP50": gate.metrics["AP50"], "delta_AP": gate.delta_ap}


def _record(
    case: tuple[str, str, str, str], path: Path, backend: Any, seconds: list[float], report: ExportReport
) -> dict:
    label, name, precision, variant = case
    gates = report.accuracy.gates if report.accuracy is not None else {}
    return {
        "label": label,
        "backend": name,
        "precision": precision,
        "file": path.name,
        "description": backend.description,
        "inference_precision": getattr(backend, "inference_precision", None),
        "latency": summarize(seconds).as_dict(),
        "accuracy": _accuracy(gates[variant]) if variant in gates else None,
    }


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.runs < 1 or args.warmup < 0:
        raise SystemExit("cpu_precisions.py: error: --runs must be positive and --warmup 0 or more")
    import openvino

    has_bf16 = "BF16" in openvino.Core().get_property("CPU", "OPTIMIZATION_CAPABILITIES")
    precisions = ("fp32", "bf16", "int8") if has_bf16 else ("fp32", "int8")
    with tempfile.TemporaryDirectory(prefix="openvino-cpu-") as tmp:
        work = args.work or Path(tmp)
        onnx_file, export_report, export_s = _export(args, work, precisions)
        folder, stem = onnx_file.parent, onnx_file.stem
        paths = [onnx_path(folder, stem), onnx_path(folder, stem, "int8-cpu")]
        paths += [openvino_path(folder, stem, precision) for precision in precisions]
        cases = [case for case in CASES if case[0].startswith("onnxruntime") or case[2] in precisions]
        backends = [_open(case[1], path, args.threads) for case, path in zip(cases, paths, strict=True)]
        metadata = backends[0].metadata
        from rtdetr_deploy.data.scenes import cluttered_scenes

        image = cluttered_scenes(1, size_hw=(480, 640), seed=7)[0]
        pixels, sizes = preprocess([image], input_size=metadata.input_size, preprocessing=metadata.preprocessing)
        feed = {"images": pixels, "orig_target_sizes": sizes}
        with CpuContention() as contention:
            latencies = _time_round_robin(backends, feed, warmup=args.warmup, runs=args.runs)
        records = [
            _record(case, path, backend, seconds, export_report)
            for case, path, backend, seconds in zip(cases, paths, backends, latencies, strict=True)
        ]
        for backend in backends:
            backend.close()
    reference = records[0]["latency"]["p50_ms"]
    for record in records:
        record["speedup_vs_onnxruntime_fp32"] = reference / record["latency"]["p50_ms"]
    report = {
        "benchmark": "cpu_precisions",
        "machine": describe_device("cpu"),
        "versions": {name: importlib.metadata.version(name) for name in ("openvino", "nncf", "onnxruntime")},
        "model": {
            "preset": metadata.preset,
            "input_size": list(metadata.input_size),
            "sampling": metadata.sampling,
            "weights": "random" if args.weights is None else str(args.weights),
        },
        "settings": {"runs": args.runs, "warmup": args.warmup, "order": "round-robin", "threads": args.threads},
        "other_cpu_share": contention.other_share,
        "export_seconds": export_s,
        "verification_passed": {variant: r.passed for variant, r in export_report.all_variants().items()},
        "results": records,
    }
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.with_suffix(".json").write_text(json.dumps(report, indent=2) + "\n")
    args.out.with_suffix(".md").write_text(_markdown(report))
    print(_markdown(report))
    print(f"wrote {args.out.with_suffix('.json')} and {args.out.with_suffix('.md')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
