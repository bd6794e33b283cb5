"""Calibrate the label-free acceptance rule of lossy variants on variants whose labelled AP loss is known.

For each checkpoint (exported in the sampling given), this writes the FP32 ONNX and a set of variants: the INT8
graphs the exporter makes (ONNX Runtime and TensorRT Q/DQ targets), FP16 with FP32 islands, and deliberately
broken ones: INT8 without the FP32 islands, and INT8 whose decoder value projection weights are
dequantized with a wrong scale (``--wrong-scale`` times the calibrated one). Each variant gets

- its labelled COCO AP on a held-out synthetic set (``rtdetr-eval``'s instrument) and its loss against FP32;
- its *kept AP* (``export.kept_ap``) on generated scenes (the export's 4 verification scenes, and 16), at
  two confidences of the pseudo ground truth, which is what the exporter judges without labels, and the older
  rule's share of matched decided detections; and the kept AP over FP32's noise floor (FP32's own kept AP on the
  scenes with +-2 grey levels of noise, ``kept_ap.perturbed``), which is what the rule compares.

    python benchmarks/acceptance_calibration.py tiny=rtdetr_deploy/data/weights/tiny_synthetic.pth:discrete

Writes ``benchmarks/results/acceptance_calibration.json``.
"""

from __future__ import annotations

import argparse
import json
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

import numpy as np
import onnx
from onnx import numpy_helper

ROOT = Path(__file__).resolve().parent.parent
RESULTS = Path(__file__).resolve().parent / "results"


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("models", nargs="+", help="NAME=CHECKPOINT:SAMPLING")
    p.add_argument("--wrong-scale", type=float, nargs="+", default=[2.0])
    p.add_argument("--json", type=Path, default=RESULTS / "acceptance_calibration.json")
    return p.parse_args(argv)


def wrong_value_proj_scale(int8_in: Path, out: Path, factor: float) -> Path:
    """Multiply the dequantization scale of every decoder value-projection weight by ``factor``."""
    from rtdetr_deploy.export.int8_groups import group_of

    model = onnx.load(str(int8_in))
    inits = {init.name: init for init in model.graph.initializer}
    producers = {out_name: node for node in model.graph.node for out_name in node.output}
    changed = 0
    for node in model.graph.node:
        if node.op_type in ("MatMul", "Gemm", "Conv") and group_of(node.name) == "decoder.value_proj":
            for name in node.input:
                dq = producers.get(name)
                if dq is not None and dq.op_type == "DequantizeLinear" and dq.input[0] in inits:
                    scale = inits[dq.input[1]]
                    scale.CopyFrom(numpy_helper.from_array(numpy_helper.to_array(scale) * factor, scale.name))
                    changed += 1
    if not changed:
        raise RuntimeError("no quantized value projection weight found")
    onnx.save(model, str(out))
    return out


def write_variants(fp32: Path, calib: Path, folder: Path, wrong_scales: list[float]) -> dict[str, Path]:
    from rtdetr_deploy.export import quantize
    from rtdetr_deploy.export.precision import convert_fp16
    from rtdetr_deploy.export.quantize import quantize_int8

    paths = {
        "int8-cpu": quantize_int8(fp32, folder / "int8-cpu.onnx", calib, target="onnxruntime"),
        "int8-trt": quantize_int8(fp32, folder / "int8-trt.onnx", calib, target="tensorrt"),
        "fp16": convert_fp16(fp32, folder / "fp16.onnx"),
    }
    for factor in wrong_scales:
        paths[f"broken: int8-cpu value_proj scale x{factor:g}"] = wrong_value_proj_scale(
            paths["int8-cpu"], folder / f"int8-wrong-scale-{factor:g}.onnx", factor
        )
    with mock.patch.object(quantize, "fp32_islands", lambda model: set()):
        paths["broken: int8-cpu without FP32 islands"] = quantize_int8(
            fp32, folder / "int8-no-islands.onnx", calib, target="onnxruntime"
        )
    return paths


def measure(name: str, checkpoint: Path, sampling: str, data_root: Path, wrong_scales: list[float]) -> dict:
    from rtdetr_deploy.agreement import compare_detections
    from rtdetr_deploy.eval.evaluate import evaluate_models, load_eval_data
    from rtdetr_deploy.export.config import ExportConfig
    from rtdetr_deploy.export.graphs import file_inputs, run_graph
    from rtdetr_deploy.export.kept_ap import kept_ap, perturbed
    from rtdetr_deploy.export.pipeline import export
    from rtdetr_deploy.export.verify import verification_images

    folder = Path(tempfile.mkdtemp(prefix=f"calib-{name}-"))
    result = export(ExportConfig(weights=checkpoint, out_dir=folder, sampling=sampling), verbose=False)
    paths = {"fp32": result.onnx, **write_variants(result.onnx, data_root / "images" / "train", folder, wrong_scales)}
    scores = evaluate_models(list(paths.values()), load_eval_data(data_root), progress=False)
    scenes = {count: verification_images(None, count=count) for count in (4, 16)}
    references = {
        count: run_graph(result.onnx, *file_inputs(result.onnx, im), batch=(1, 1, 1)) for count, im in scenes.items()
    }
    noisy = {
        count: run_graph(result.onnx, *file_inputs(result.onnx, perturbed(im)), batch=(1, 1, 1))
        for count, im in scenes.items()
    }
    floors = {
        (count, confidence): kept_ap(references[count], noisy[count], confidence=confidence).ap
        for count in scenes
        for confidence in (0.3, 0.5)
    }
    rows = {}
    for (variant, path), score in zip(paths.items(), scores, strict=True):
        row = {"AP": score.metrics["AP"], "delta_AP": score.metrics["AP"] - scores[0].metrics["AP"]}
        for count, images in scenes.items():
            outputs = run_graph(path, *file_inputs(path, images), batch=(1, 1, 1))
            for confidence in (0.3, 0.5):
                kept = kept_ap(references[count], outputs, confidence=confidence)
                row[f"kept_AP@{confidence}/{count}"] = kept.ap
                row[f"relative@{confidence}/{count}"] = kept.ap / floors[count, confidence]
                row[f"pseudo_objects@{confidence}/{count}"] = kept.pseudo_objects
            row[f"matched_decided/{count}"] = compare_detections(references[count], outputs, topn=100, margin=0.05)[
                "matched"
            ]
        rows[variant] = row
        print(f"{name:<14} {variant:<40} " + " ".join(f"{k} {v:.3f}" for k, v in row.items()), flush=True)
    floor_record = {f"{confidence}/{count}": value for (count, confidence), value in floors.items()}
    return {"checkpoint": str(checkpoint), "sampling": sampling, "noise_floor": floor_record, "variants": rows}


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    from rtdetr_deploy.data import SyntheticConfig, generate_synthetic

    data_root = Path(tempfile.mkdtemp(prefix="calib-data-"))
    generate_synthetic(data_root, SyntheticConfig(seed=11, num_train=64, num_val=100, video_frames=0))
    started = time.perf_counter()
    record = {"held_out": "synthetic seed 11: 64 calibration, 100 evaluation images", "models": {}}
    for item in args.models:
        name, spec = item.split("=", 1)
        checkpoint, sampling = spec.rsplit(":", 1)
        record["models"][name] = measure(name, Path(checkpoint), sampling, data_root, args.wrong_scale)
    record["minutes"] = round((time.perf_counter() - started) / 60, 1)
    record["wrong_scale"] = args.wrong_scale
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(record, indent=1, default=lambda v: float(v) if np.isscalar(v) else str(v)))
    print(f"wrote {args.json} ({record['minutes']} min)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
