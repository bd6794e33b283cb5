"""Does the video pipeline keep up with the GPU? Decode alone, inference alone and the pipeline, at batch 1 and 8.

    python -m benchmarks.gpu_pipeline --out benchmarks/results        # on a CUDA machine, ~5-8 min

On a device machine without network, carry a PyAV wheel for H.264 and the pyav decoder (without it the clip is
MPEG-4 part 2 and only OpenCV decodes, which the JSON records)::

    pip download av --only-binary=:all: --python-version 3.12 --platform manylinux_2_28_x86_64 -d .whl
    run: pip install --no-index .whl/av-*.whl; python -m benchmarks.gpu_pipeline --out $OUT

What it does, on a generated 1280x720 H.264 clip (``decode_throughput.write_h264_clip``) and RT-DETRv2 r18vd at
640x640 with random weights (speed does not depend on the weight values) on the torch backend in FP16:

1. decode alone, per decoder (pyav, opencv, nvdec when PyNvVideoCodec is installed) and thread count;
2. per variant and batch (1, 8): the first call's duration (compile and capture), inference alone through
   ``Detector.infer`` (CUDA-synchronised, p50), each stage alone (``bench.throughput``), and the threaded pipeline
   end to end (``run_pipeline``: decode, preprocessing workers, inference, post-processing, no-op consumer), with the
   stage that bounds it. Variants: ``fp16 + CUDA graph`` (the whole step captured: today's fastest), ``fp16 eager``,
   ``torch.compile reduce-overhead``, ``torch.compile max-autotune`` and ``torch.compile default + CUDA graph``; the
   CUDA-graph variant also runs the pipeline with 1, 2 and 4 preprocessing workers;
3. parity: every variant's detections on one frame against eager FP16 (``agreement.compare_detections``);
4. the verdict: whether a torch.compile mode beats the CUDA-graph replay (torch.compile stays opt-in unless it does).

A time budget (``--budget``) skips what would not fit and says so in the JSON; a variant that fails records its
error and the run goes on. Writes ``gpu_pipeline_<gpu>.json`` and ``.md`` into ``--out``, again after every case,
so a run cut short (a compilation longer than the budget allows) keeps what it measured.
"""

from __future__ import annotations

import argparse
import json
import re
import statistics
import sys
import tempfile
import time
import traceback
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

from benchmarks.decode_throughput import write_h264_clip
from rtdetr_deploy.agreement import compare_detections
from rtdetr_deploy.bench.device import describe_device
from rtdetr_deploy.bench.throughput import bound_line, measure_decode, measure_stage_rates
from rtdetr_deploy.bench.timing import cuda_synchronizer, measure_pipeline, time_calls
from rtdetr_deploy.models import build_model, get_preset
from rtdetr_deploy.runtime.decoders import DecoderConfig, resolve_decoder
from rtdetr_deploy.runtime.detector import Detector
from rtdetr_deploy.runtime.torch_backend import TorchBackend

DEVICE = "cuda:0"
# (label, cuda_graph, compile mode); the first is the reference the compiled modes must beat.
VARIANTS = (
    ("fp16 + CUDA graph", True, None),
    ("fp16 eager", False, None),
    ("fp16 + torch.compile reduce-overhead", False, "reduce-overhead"),
    ("fp16 + torch.compile max-autotune", False, "max-autotune"),
    ("fp16 + torch.compile default + CUDA graph", True, "default"),
)
# Seconds a torch.compile variant needs at least (two compilations, one per batch size) to be started.
COMPILE_RESERVE_S = 150


class Clock:
    """Seconds since the start, and whether ``need`` more still fit in the budget."""

    def __init__(self, budget_s: float) -> None:
        self.start, self.budget_s = time.perf_counter(), budget_s

    def elapsed(self) -> float:
        return time.perf_counter() - self.start

    def fits(self, need: float) -> bool:
        return self.elapsed() + need <= self.budget_s


def decode_rates(video: Path, *, frames: int, threads: tuple[int, ...]) -> list[dict[str, Any]]:
    """Decode alone per available decoder and thread count (nvdec once: it has no thread count)."""
    rows = []
    decoders = ["opencv"] + (["pyav"] if resolve_decoder("auto", kind="video") == "pyav" else [])
    plans = [(name, count) for name in decoders for count in threads]
    try:
        import PyNvVideoCodec  # noqa: F401

        plans.append(("nvdec", 0))
    except ImportError:
        pass
    for name, count in plans:
        try:
            rate, _ = measure_decode(video, decoder=DecoderConfig(name, count), frames=frames)
            rows.append(rate.as_dict())
        except Exception as exc:  # a decoder that cannot run here is recorded, not fatal
            rows.append({"decoder": name, "threads": count, "error": " ".join(str(exc).split())})
        print(f"decode {name:>6} threads {count or 'auto'}: {rows[-1].get('fps', float('nan')):.1f} frames/s")
    return rows


def _model(preset: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(get_preset(preset), sampling="discrete").deploy()


def _first_frames(video: Path, count: int) -> list[np.ndarray]:
    _, frames = measure_decode(video, decoder=DecoderConfig(), frames=count, keep=count)
    return frames


def _one_case(
    detector: Detector, video: Path, *, batch: int, frames: list[np.ndarray], clip_frames: int, workers: tuple[int, ...]
) -> dict[str, Any]:
    """First call, inference alone, each stage alone and the pipeline, for one variant at one batch size."""
    sync = cuda_synchronizer(DEVICE)
    prepared = detector.preprocess([frames[i % len(frames)] for i in range(batch)])
    start = time.perf_counter()
    detector.infer(prepared)
    torch.cuda.synchronize()
    first_call_s = time.perf_counter() - start
    latencies = time_calls(lambda: detector.infer(prepared), warmup=10, iters=100, synchronize=sync)
    p50 = statistics.median(latencies)
    rates = measure_stage_rates(
        detector, video, batch=batch, frames=200, preprocess_workers=max(workers), synchronize=sync
    )
    pipelines = []
    for count in workers:
        measure_pipeline(detector, video, batch=batch, frames=48, preprocess_workers=count)  # warm-up run
        run = measure_pipeline(detector, video, batch=batch, frames=clip_frames, preprocess_workers=count)
        pipelines.append(run.as_dict())
    best = max(pipelines, key=lambda run: run["fps"])
    return {
        "batch": batch,
        "first_call_s": first_call_s,
        "inference_p50_ms": p50 * 1e3,
        "inference_images_per_s": batch / p50,
        "stage_rates": rates.as_dict(),
        "pipelines": pipelines,
        "pipeline_fps": best["fps"],
        "pipeline_share_of_inference": best["fps"] / (batch / p50),
        "bound": bound_line(rates.as_dict(), best["fps"]),
    }


def _parity(detector: Detector, reference: Detector, frame: np.ndarray) -> dict[str, Any]:
    outputs = [d.infer(d.preprocess([frame])) for d in (reference, detector)]
    agreement = compare_detections(outputs[0], outputs[1], topn=100, margin=0.02)
    return {key: agreement[key] for key in ("compared", "matched", "max_score_delta", "max_sorted_score_delta")}


def run_variants(
    args: argparse.Namespace, video: Path, clock: Clock, results: list[dict[str, Any]], save: Callable[[], None]
) -> None:
    """Measure every variant into ``results``, calling ``save`` after each case (a run cut short keeps them)."""
    model = _model(args.preset)
    frames = _first_frames(video, 16)
    reference = Detector(TorchBackend.from_module(model, device=DEVICE, precision="fp16"), conf=0.25)
    for label, cuda_graph, mode in VARIANTS:
        if mode is not None and mode not in args.compile:
            continue
        entry: dict[str, Any] = {"variant": label, "cuda_graph": cuda_graph, "compile_mode": mode, "cases": []}
        results.append(entry)
        if not clock.fits(COMPILE_RESERVE_S if mode else 30):
            entry["skipped"] = f"time budget: {clock.elapsed():.0f} s of {clock.budget_s:.0f} s spent"
            print(f"{label}: skipped ({entry['skipped']})")
            continue
        try:
            if mode is not None:
                torch._dynamo.reset()
            backend = TorchBackend.from_module(
                model, device=DEVICE, precision="fp16", cuda_graph=cuda_graph, compile_mode=mode
            )
            detector = Detector(backend, conf=0.25)
            for batch in args.batches:
                if not clock.fits(COMPILE_RESERVE_S / 2 if mode else 15):
                    entry["skipped"] = f"batch {batch} and beyond: time budget, {clock.elapsed():.0f} s spent"
                    break
                workers = (1, 2, 4) if label == VARIANTS[0][0] else (args.workers,)
                entry["cases"].append(
                    _one_case(
                        detector, video, batch=batch, frames=frames, clip_frames=args.clip_frames, workers=workers
                    )
                )
                case = entry["cases"][-1]
                print(f"{label}, batch {batch}: {case['inference_images_per_s']:.0f} images/s alone; {case['bound']}")
                save()
            entry["compile_seconds"] = {str(k): v for k, v in backend.compile_seconds.items()}
            entry["parity_vs_eager_fp16"] = _parity(detector, reference, frames[0])
            entry["description"] = backend.description
        except Exception as exc:  # one failing variant must not lose the others
            entry["error"] = " ".join(str(exc).split())[:500]
            entry["traceback"] = traceback.format_exc(limit=6)
            print(f"{label}: FAILED {entry['error']}")
        save()


def verdict(results: list[dict[str, Any]]) -> list[str]:
    """Per batch: does any torch.compile variant beat the CUDA-graph replay, alone and in the pipeline?"""
    lines = []
    base = next((r for r in results if r["variant"] == VARIANTS[0][0] and r["cases"]), None)
    if base is None:
        return ["no CUDA-graph baseline was measured"]
    for case in base["cases"]:
        batch = case["batch"]
        rivals = [(r["variant"], c) for r in results if r["compile_mode"] for c in r["cases"] if c["batch"] == batch]
        if not rivals:
            lines.append(f"batch {batch}: no torch.compile variant measured; torch.compile stays opt-in")
            continue
        name, best = max(rivals, key=lambda item: item[1]["inference_images_per_s"])
        faster = best["inference_images_per_s"] > case["inference_images_per_s"] * 1.02
        lines.append(
            f"batch {batch}: best torch.compile variant {name}: {best['inference_images_per_s']:.0f} images/s alone "
            f"(pipeline {best['pipeline_fps']:.0f} FPS) vs CUDA graph {case['inference_images_per_s']:.0f} "
            f"(pipeline {case['pipeline_fps']:.0f}): "
            + ("faster by more than 2%: a candidate for the default" if faster else "not faster: stays opt-in")
        )
    return lines


def markdown(report: dict[str, Any]) -> str:
    gpu = (report["device"].get("gpu") or {}).get("name", "GPU")
    lines = [f"**{gpu}**, torch {torch.__version__}, clip {report['clip']['codec']} 1280x720", "", "Decode alone:", ""]
    lines += ["| decoder | threads | frames/s |", "|---|---|---|"]
    for row in report["decode"]:
        fps = f"{row['fps']:.1f}" if "fps" in row else row.get("error", "-")
        lines.append(f"| {row['decoder']} | {row['threads'] or 'auto'} | {fps} |")
    lines += ["", "Per variant (inference alone: Detector.infer, CUDA-synchronised p50; stages alone in frames/s):", ""]
    header = "| variant | batch | first call s | inference images/s | decode | preprocess | inference | postprocess |"
    lines += [header + " pipeline FPS | share | bound by |", "|" + "---|" * 11]
    for entry in report["variants"]:
        if entry.get("skipped") or entry.get("error"):
            lines.append(f"| {entry['variant']} | - | {entry.get('skipped') or 'FAILED: ' + entry['error'][:80]} |")
        for case in entry["cases"]:
            fps = case["stage_rates"]["fps"]
            lines.append(
                f"| {entry['variant']} | {case['batch']} | {case['first_call_s']:.1f} | "
                f"{case['inference_images_per_s']:.0f} | {fps['decode']:.0f} | {fps['preprocess']:.0f} | "
                f"{fps['inference']:.0f} | {fps['postprocess']:.0f} | {case['pipeline_fps']:.0f} | "
                f"{case['pipeline_share_of_inference']:.0%} | {case['stage_rates']['bound_by']} |"
            )
    lines += ["", *(f"- {line}" for line in report["verdict"])]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--preset", default="r18vd", help="model preset (default: r18vd, 640x640)")
    parser.add_argument("--clip-frames", type=int, default=600, help="frames of the clip (default: 600, 20 s)")
    parser.add_argument("--batches", default="1,8", help="comma-separated batch sizes (default: 1,8)")
    parser.add_argument("--workers", type=int, default=4, help="preprocessing workers of the pipeline (default: 4)")
    parser.add_argument("--compile", default="reduce-overhead,max-autotune,default", help="torch.compile modes to try")
    parser.add_argument("--budget", type=float, default=450.0, help="seconds to spend at most (default: 450)")
    parser.add_argument("--out", type=Path, default=Path(__file__).parent / "results", help="folder for the results")
    args = parser.parse_args(argv)
    args.batches = tuple(int(b) for b in args.batches.split(","))
    args.compile = tuple(m for m in args.compile.split(",") if m)
    if not torch.cuda.is_available():
        print("gpu_pipeline.py: no CUDA device", file=sys.stderr)
        return 1
    clock = Clock(args.budget)
    report: dict[str, Any] = {
        "device": describe_device(DEVICE),
        "clip": {"size_wh": [1280, 720], "frames": args.clip_frames},
        "model": {"preset": args.preset, "weights": "random (speed does not depend on them)", "precision": "fp16"},
        "decode": [],
        "variants": [],
    }
    slug = re.sub(r"[^a-z0-9]+", "-", (report["device"].get("gpu") or {}).get("name", "gpu").lower()).strip("-")
    paths = [args.out / f"gpu_pipeline_{slug.removeprefix('nvidia-')}{suffix}" for suffix in (".json", ".md")]
    args.out.mkdir(parents=True, exist_ok=True)

    def save() -> None:
        report["elapsed_s"] = clock.elapsed()
        report["verdict"] = verdict(report["variants"])
        paths[0].write_text(json.dumps(report, indent=2) + "\n")
        paths[1].write_text(markdown(report))

    with tempfile.TemporaryDirectory(prefix="rtdetr-gpu-pipeline-") as work:
        video = Path(work) / "clip720.mp4"
        report["clip"]["codec"] = write_h264_clip(video, frames=args.clip_frames)
        size_mib = video.stat().st_size / 2**20
        print(f"clip: {report['clip']['codec']}, {size_mib:.1f} MiB ({clock.elapsed():.0f} s)")
        report["decode"] = decode_rates(video, frames=min(300, args.clip_frames - 10), threads=(1, 4, 8, 0))
        save()
        run_variants(args, video, clock, report["variants"], save)
    save()
    print(markdown(report), end="")
    return 0


if __name__ == "__main__":
    sys.exit(main())
