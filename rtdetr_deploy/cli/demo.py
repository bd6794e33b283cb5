"""``rtdetr-demo``: the whole chain on the embedded default, on a CPU, with no downloads.

Generate the synthetic COCO-format dataset and video; start from the ``tiny`` checkpoint shipped with the package
(trained on that set) and fine-tune it with the trainer, then with discrete sampling; export it to ONNX (discrete
sampling, verified against PyTorch) with its FP16 and INT8 variants; measure the COCO AP of every artifact with
``rtdetr-eval``; run ``python -m rtdetr_deploy.infer`` on the video; benchmark the ONNX; and summarise what was
produced where. ``--from-scratch`` trains from random weights instead. Every figure printed is measured in this
run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

from .frame import CommandParser, run_command

__all__ = ["DemoResult", "main", "run"]

PROG = "rtdetr-demo"
STEPS = 7

# Settings for a budget of minutes on a CPU (the official recipe, made for 72 GPU epochs, learns next to nothing
# in that time): 256 px, no strong augmentation, short warm-up, a 10x learning rate from scratch.
SHORT_BUDGET = {"imgsz": (256, 256), "stop_epoch": 0, "batch": 8, "workers": 1}
FROM_SCRATCH = {"lr": 1e-3, "backbone_lr": 1e-3, "warmup_steps": 100}
FROM_SHIPPED = {"lr": 2e-4, "backbone_lr": 2e-4, "warmup_steps": 20}
DISCRETE_FINE_TUNE = {"sampling": "discrete", "lr": 2e-4, "backbone_lr": 2e-4, "warmup_steps": 20}


@dataclass
class DemoResult:
    """Files the demo produced, by name, and what it measured."""

    files: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)
    start: str = ""


def build_parser() -> argparse.ArgumentParser:
    parser = CommandParser(
        prog=PROG,
        description="Run the rtdetr-deploy chain on the embedded synthetic dataset (CPU, no downloads): data, "
        "fine-tuning of the shipped weights, discrete-sampling export with verification, FP16 and INT8, COCO AP of "
        "every artifact, video inference, benchmark.",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: runs/demo)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=None,
        help="training before the discrete fine-tune (default: 1, or 4 from scratch)",
    )
    parser.add_argument(
        "--discrete-minutes", type=float, default=2.0, help="fine-tuning with discrete sampling (default: 2)"
    )
    parser.add_argument("--from-scratch", action="store_true", help="train from random weights, not the shipped ones")
    parser.add_argument("--train-images", type=int, default=800, help="synthetic training images (default: 800)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the training (default: 0)")
    return parser


def _step(index: int, text: str) -> None:
    print(f"\n[{index}/{STEPS}] {text}", flush=True)


def _run_cli(module: str, argv: list[str]) -> None:
    """Run one of the package's commands in this process; a non-zero exit stops the demo."""
    import importlib

    code = importlib.import_module(module).main(argv)
    if code:
        raise RuntimeError(f"{module} {' '.join(argv)} exited with {code}")


def _train(out: Path, data_root: Path, *, minutes: float, discrete_minutes: float, from_scratch: bool, seed: int):  # noqa: ANN202
    """Fine-tune (or train) then fine-tune with discrete sampling; returns ``(fit result, discrete fit result,
    where training started)``."""
    from ..data import pretrained_tiny
    from ..train.config import TrainConfig
    from ..train.fit import fit

    start = None if from_scratch else pretrained_tiny()
    settings = {**SHORT_BUDGET, **(FROM_SCRATCH if from_scratch else FROM_SHIPPED)}
    base = TrainConfig(
        data=data_root,
        out=out / "train",
        preset="tiny",
        minutes=minutes,
        seed=seed,
        overwrite=True,
        init=start,
        **settings,
    )
    trained = fit(base)
    # Fine-tune with the sampling the export uses (offsets frozen, the official dsp recipe): the swap alone costs
    # a model trained with bilinear sampling much of its AP.
    tuned = fit(
        replace(base, out=out / "train_discrete", init=trained.best, minutes=discrete_minutes, **DISCRETE_FINE_TUNE)
    )
    return trained, tuned, "random weights" if start is None else f"the shipped checkpoint {start.name}"


def run(
    out: Path,
    *,
    minutes: float | None = None,
    discrete_minutes: float = 2.0,
    from_scratch: bool = False,
    train_images: int = 800,
    seed: int = 0,
) -> DemoResult:
    """Run the chain into ``out``; raises on the first failing step."""
    from ..data.synthetic import SyntheticConfig, ensure_synthetic
    from ..export.config import ExportConfig
    from ..export.pipeline import export

    minutes = minutes if minutes is not None else (4.0 if from_scratch else 1.0)
    result = DemoResult()
    _step(1, "data: synthetic COCO-format dataset and video")
    data = ensure_synthetic(out / "data", SyntheticConfig(seed=seed, num_train=train_images))
    print(f"  {data.train_images} ({len(list(data.train_images.iterdir()))} images), {data.val_images}, {data.video}")
    result.files.update({"dataset": data.root, "video": data.video})

    origin = "from random weights" if from_scratch else "from the shipped tiny checkpoint (trained on this set)"
    _step(2, f"train: {minutes:g} min {origin}, then {discrete_minutes:g} min with discrete sampling")
    trained, tuned, result.start = _train(
        out, data.root, minutes=minutes, discrete_minutes=discrete_minutes, from_scratch=from_scratch, seed=seed
    )
    result.figures.update({"AP (bilinear)": trained.metrics["AP"], "AP": tuned.metrics["AP"]})
    result.files.update({"checkpoint": tuned.best, "training curve": trained.out / "training.png"})

    _step(3, "export: ONNX with the discrete sampling operator, verified against PyTorch; FP16 and INT8 beside it")
    exported = export(
        ExportConfig(
            weights=tuned.best,
            out_dir=out / "export",
            batch=(1, 2, 4),
            verify_images=data.val_images,
            fp16=True,
            int8_cpu=True,
            calib=data.train_images,
            eval_data=data.root,
        )
    )
    result.files.update({"onnx": exported.onnx, "verification report": exported.report_path})
    _evaluate(out, data.root, tuned.best, exported.onnx, result)
    _infer_and_bench(out, data, exported.onnx, result)

    _step(7, "check: every file named in the summary exists")
    missing = [name for name, path in result.files.items() if path is None or not Path(path).exists()]
    if missing:
        raise RuntimeError(f"the chain did not produce: {', '.join(missing)}")
    return result


def _evaluate(out: Path, data_root: Path, checkpoint: Path, onnx_path: Path, result: DemoResult) -> None:
    from ..artifacts import onnx_path as variant_path

    _step(4, "eval: rtdetr-eval, COCO AP of every artifact on the validation split")
    folder, stem = onnx_path.parent, onnx_path.stem
    models = [checkpoint, onnx_path, variant_path(folder, stem, "fp16"), variant_path(folder, stem, "int8-cpu")]
    report = out / "eval" / "eval.json"
    report.parent.mkdir(parents=True, exist_ok=True)
    argv = [
        *map(str, models),
        "--data",
        str(data_root),
        "--json",
        str(report),
        "--markdown",
        str(report.with_suffix(".md")),
    ]
    _run_cli("rtdetr_deploy.cli.eval", [*argv, "--no-progress"])
    result.files.update({"accuracy table": report.with_suffix(".md"), "accuracy JSON": report})


def _infer_and_bench(out: Path, data, onnx_path: Path, result: DemoResult) -> None:  # noqa: ANN001 - SyntheticPaths
    _step(5, "infer: python -m rtdetr_deploy.infer on the synthetic video")
    infer_dir = out / "infer"
    infer_args = ["--model", str(onnx_path), "--save", str(infer_dir), "--json", str(infer_dir / "detections.json")]
    _run_cli("rtdetr_deploy.cli.infer", [str(data.video), *infer_args])
    result.files.update({"annotated video": infer_dir / data.video.name, "COCO results": infer_dir / "detections.json"})
    result.files["contact sheet"] = contact_sheet(onnx_path, data.val_images, out / "contact_sheet.png")

    _step(6, "bench: rtdetr-bench on the exported model, FP32 and INT8 (CPU)")
    bench_json = out / "bench" / "bench.json"
    bench_args = ["--precision", "fp32,int8", "--batch", "1", "--seconds", "5", "--video", str(data.video), "--no-peak"]
    bench_args += ["--json", str(bench_json), "--plot", str(bench_json.with_suffix(".png"))]
    _run_cli("rtdetr_deploy.cli.bench", [str(onnx_path), *bench_args])
    result.files.update({"benchmark JSON": bench_json, "benchmark plot": bench_json.with_suffix(".png")})


def contact_sheet(model: Path, images_dir: Path, path: Path, *, count: int = 8, columns: int = 4) -> Path:
    """Detections of ``model`` (score >= 0.5) drawn on the first ``count`` images of ``images_dir``, tiled."""
    import cv2
    import numpy as np

    from ..atomic import atomic_path
    from ..runtime import Detector
    from ..runtime.drawing import draw_detections
    from ..runtime.sources import image_files, read_image

    tiles = []
    with Detector(model, conf=0.5) as detector:
        for file in image_files(images_dir)[:count]:
            image, _ = read_image(file)
            tiles.append(cv2.resize(draw_detections(image, detector(image)), (320, 320)))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    with atomic_path(path) as tmp:
        ok, encoded = cv2.imencode(".png", np.vstack(rows))
        tmp.write_bytes(encoded.tobytes())
    return path


def _speed_lines(bench_json: Path) -> list[str]:
    """What the benchmark measured, as it measured it: latency per precision and the video pipeline."""
    report = json.loads(bench_json.read_text())
    lines = []
    for record in report["results"]:
        latency = record["latency"]
        line = f"  {record['case']:<28} p50 {latency['p50_ms']:.1f} ms, {latency['images_per_s']:.0f} images/s"
        if record.get("pipeline"):
            line += f"; video end to end {record['pipeline']['fps']:.0f} FPS"
        lines.append(line)
    for row in report["overheads"]:
        if row["comparison"] == "runtime end-to-end vs bare inference":
            lines.append(f"  {row['fixed']}: {row['reading']}")
    return lines


def _summary(result: DemoResult, seconds: float) -> str:
    lines = [f"\nDone in {seconds / 60:.1f} min, starting from {result.start}. Produced:"]
    lines += [f"  {name:<20} {path}" for name, path in result.files.items()]
    lines += [
        "Training (COCO AP on the validation split, the trainer's evaluation):",
        f"  after the fine-tune (bilinear)      {result.figures['AP (bilinear)']:.3f}",
        f"  after the discrete fine-tune        {result.figures['AP']:.3f}",
        "Accuracy of every artifact (rtdetr-eval, ONNX Runtime on the CPU):",
        "",
        Path(result.files["accuracy table"]).read_text().split("\n", 2)[2].rstrip(),
        "",
        "Speed on this machine (rtdetr-bench, batch 1):",
        *_speed_lines(Path(result.files["benchmark JSON"])),
    ]
    return "\n".join(lines)


def _demo(args: argparse.Namespace) -> int:
    start = time.perf_counter()
    result = run(
        args.out,
        minutes=args.minutes,
        discrete_minutes=args.discrete_minutes,
        from_scratch=args.from_scratch,
        train_images=args.train_images,
        seed=args.seed,
    )
    print(_summary(result, time.perf_counter() - start))
    return 0


def main(argv: list[str] | None = None) -> int:
    """``rtdetr-demo``; returns the exit status (0 done, 1 failed, 2 bad input, 130 interrupted)."""
    return run_command(PROG, build_parser(), argv, _demo)


if __name__ == "__main__":
    sys.exit(main())
