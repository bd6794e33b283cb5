"""``rtdetr-demo``: the whole chain on the embedded default, on a CPU, with no downloads.

Generate the synthetic COCO-format dataset and video, train the ``tiny`` preset for a short time budget,
evaluate it (COCO AP), export it to ONNX with the discrete sampling operator and verify the export against
PyTorch, run ``python -m rtdetr_deploy.infer`` on the video, benchmark the ONNX model, and summarise what was
produced where. Every figure printed was measured in this run.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from dataclasses import dataclass, field, replace
from pathlib import Path

__all__ = ["main", "run", "DemoResult"]

STEPS = 6

# Settings for a budget of minutes on a CPU (the official recipe, made for 72 GPU epochs, learns next to
# nothing in that time): a 10x learning rate, no strong augmentation, 256 px, short warm-up.
SHORT_BUDGET = {
    "imgsz": (256, 256),
    "lr": 1e-3,
    "backbone_lr": 1e-3,
    "stop_epoch": 0,
    "warmup_steps": 100,
    "batch": 8,
    "workers": 1,
}
DISCRETE_FINE_TUNE = {
    "sampling": "discrete",
    "lr": 2e-4,
    "backbone_lr": 2e-4,
    "warmup_steps": 20,
}


@dataclass
class DemoResult:
    """Files the demo produced, by name, and the figures it measured."""

    files: dict[str, Path] = field(default_factory=dict)
    figures: dict[str, float] = field(default_factory=dict)


def _parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="rtdetr-demo",
        description="Run the rtdetr-deploy chain on the embedded synthetic dataset (CPU, no downloads): "
        "data, training, evaluation, discrete-sampling export with verification, video inference, benchmark.",
    )
    parser.add_argument("--out", type=Path, default=Path("runs/demo"), help="output folder (default: runs/demo)")
    parser.add_argument(
        "--minutes",
        type=float,
        default=4.0,
        help="training time budget, before 1 min of discrete fine-tuning (default: 4)",
    )
    parser.add_argument(
        "--discrete-minutes", type=float, default=1.0, help="fine-tuning with discrete sampling (default: 1)"
    )
    parser.add_argument("--train-images", type=int, default=800, help="synthetic training images (default: 800)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the data and the weights (default: 0)")
    return parser.parse_args(argv)


def _step(index: int, text: str) -> None:
    print(f"\n[{index}/{STEPS}] {text}", flush=True)


def run(
    out: Path, *, minutes: float, discrete_minutes: float = 1.0, train_images: int = 800, seed: int = 0
) -> DemoResult:
    """Run the chain into ``out``; raises on the first failing step."""
    from .data.synthetic import SyntheticConfig, ensure_synthetic
    from .export.config import ExportConfig
    from .export.pipeline import export
    from .train.config import TrainConfig
    from .train.fit import fit

    result = DemoResult()
    _step(1, "data: synthetic COCO-format dataset and video")
    data = ensure_synthetic(out / "data", SyntheticConfig(seed=seed, num_train=train_images))
    print(f"  {data.train_images} ({len(list(data.train_images.iterdir()))} images), {data.val_images}, {data.video}")
    result.files.update({"dataset": data.root, "video": data.video})

    _step(2, f"train: tiny preset for {minutes:g} min on the CPU, then {discrete_minutes:g} min with discrete sampling")
    base = TrainConfig(
        data=data.root, out=out / "train", preset="tiny", minutes=minutes, seed=seed, overwrite=True, **SHORT_BUDGET
    )
    trained = fit(base)
    # Fine-tune with the sampling the export uses (offsets frozen, official dsp recipe): the swap alone costs a
    # model trained with bilinear sampling much of its AP.
    tuned = fit(
        replace(base, out=out / "train_discrete", init=trained.best, minutes=discrete_minutes, **DISCRETE_FINE_TUNE)
    )
    result.figures.update(
        {"AP (bilinear)": trained.metrics["AP"], "AP": tuned.metrics["AP"], "AP50": tuned.metrics["AP50"]}
    )
    result.files["checkpoint"] = tuned.best
    result.files["training curve"] = trained.out / "training.png"
    result.files["training log"] = trained.out / "history.csv"

    _step(3, "export: ONNX with the discrete sampling operator, verified against PyTorch")
    exported = export(
        ExportConfig(weights=tuned.best, out_dir=out / "export", batch=(1, 2, 4), verify_images=data.val_images)
    )
    result.files.update({"onnx": exported.onnx, "verification report": exported.report_path})

    _step(4, "infer: python -m rtdetr_deploy.infer on the synthetic video")
    infer_dir = out / "infer"
    infer_args = ["--model", str(exported.onnx), "--save", str(infer_dir), "--json", str(infer_dir / "detections.json")]
    _run_cli("rtdetr_deploy.infer", [str(data.video), *infer_args])
    result.files.update({"annotated video": infer_dir / data.video.name, "COCO results": infer_dir / "detections.json"})
    result.files["contact sheet"] = contact_sheet(exported.onnx, data.val_images, out / "contact_sheet.png")

    _step(5, "bench: rtdetr-bench on the exported model (CPU)")
    bench_json = out / "bench" / "bench.json"
    bench_args = ["--batch", "1", "--seconds", "10", "--video", str(data.video)]
    bench_args += ["--json", str(bench_json), "--plot", str(bench_json.with_suffix(".png"))]
    _run_cli("rtdetr_deploy.bench_cli", [str(exported.onnx), *bench_args])
    result.files.update({"benchmark JSON": bench_json, "benchmark plot": bench_json.with_suffix(".png")})
    result.figures.update(_bench_figures(bench_json))

    _step(6, "check: every file named in the summary exists")
    missing = [name for name, path in result.files.items() if path is None or not Path(path).exists()]
    if missing:
        raise RuntimeError(f"the chain did not produce: {', '.join(missing)}")
    return result


def _run_cli(module: str, argv: list[str]) -> None:
    """Run one of our command-line tools in this process; a non-zero exit stops the demo."""
    import importlib

    code = importlib.import_module(module).main(argv)
    if code:
        raise RuntimeError(f"{module} {' '.join(argv)} exited with {code}")


def _bench_figures(bench_json: Path) -> dict[str, float]:
    """Latency, throughput and video FPS of the first benchmarked case, as the benchmark recorded them."""
    first = json.loads(bench_json.read_text())["results"][0]
    figures = {
        "inference p50 ms": float(first["latency"]["p50_ms"]),
        "inference images/s": float(first["latency"]["images_per_s"]),
    }
    if first.get("pipeline"):
        figures["video end-to-end FPS"] = float(first["pipeline"]["fps"])
    return figures


def contact_sheet(model: Path, images_dir: Path, path: Path, *, count: int = 8, columns: int = 4) -> Path:
    """Detections of ``model`` drawn on the first ``count`` images of ``images_dir``, tiled into one PNG."""
    import cv2
    import numpy as np

    from .atomic import atomic_path
    from .runtime import Detector
    from .runtime.drawing import draw_detections

    files = sorted(p for p in images_dir.iterdir() if p.suffix.lower() in (".jpg", ".png"))[:count]
    detector = Detector(model, conf=0.5)
    tiles = []
    for file in files:
        image = cv2.imread(str(file), cv2.IMREAD_COLOR)
        drawn = draw_detections(image, detector(image))
        tiles.append(cv2.resize(drawn, (320, 320)))
    while len(tiles) % columns:
        tiles.append(np.zeros_like(tiles[0]))
    rows = [np.hstack(tiles[i : i + columns]) for i in range(0, len(tiles), columns)]
    with atomic_path(path) as tmp:
        ok, encoded = cv2.imencode(".png", np.vstack(rows))
        tmp.write_bytes(encoded.tobytes())
    return path


def _summary(result: DemoResult, seconds: float) -> str:
    lines = [f"\nDone in {seconds / 60:.1f} min. Produced:"]
    lines += [f"  {name:<20} {path}" for name, path in result.files.items()]
    lines.append("Measured:")
    ap, ap50 = result.figures["AP"], result.figures["AP50"]
    lines.append(f"  {'AP / AP50':<20} {ap:.3f} / {ap50:.3f} (COCO metrics on the validation split, discrete sampling)")
    lines.append(f"  {'AP (bilinear)':<20} {result.figures['AP (bilinear)']:.3f} (before the discrete fine-tune)")
    for name, value in result.figures.items():
        if name not in ("AP", "AP50", "AP (bilinear)"):
            lines.append(f"  {name:<20} {value:.1f}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = _parse_args(argv)
    start = time.perf_counter()
    try:
        result = run(
            args.out,
            minutes=args.minutes,
            discrete_minutes=args.discrete_minutes,
            train_images=args.train_images,
            seed=args.seed,
        )
    except KeyboardInterrupt:
        print("rtdetr-demo: interrupted", file=sys.stderr)
        return 130
    except ImportError as exc:
        print(f"rtdetr-demo: {exc.name or exc} is not installed: pip install 'rtdetr-deploy[all]'", file=sys.stderr)
        return 1
    except (OSError, ValueError, RuntimeError) as exc:
        print(f"rtdetr-demo: {exc}", file=sys.stderr)
        return 1
    print(_summary(result, time.perf_counter() - start))
    return 0


if __name__ == "__main__":
    sys.exit(main())
