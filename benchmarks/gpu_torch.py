"""PyTorch GPU paths of RT-DETRv2: eager FP32, eager FP16 and FP16 with CUDA-graph replay.

Measures the model alone (no pre/post-processing) on random input, for each preset x batch x sampling, with
CUDA-event timing after warm-up, and writes the results with a description of the device.

    python benchmarks/gpu_torch.py --presets r18vd --batch 1,8 --iters 200 --json benchmarks/results/gpu_torch.json
"""

from __future__ import annotations

import argparse
import json
import platform
import statistics
import sys
from pathlib import Path

import torch

from rtdetr_deploy.models import build_model, get_preset


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def _time(fn, *, warmup: int, iters: int) -> list[float]:  # noqa: ANN001
    """Per-iteration latency in milliseconds, each iteration bracketed by CUDA events."""
    for _ in range(warmup):
        fn()
    torch.cuda.synchronize()
    latencies = []
    for _ in range(iters):
        start, end = torch.cuda.Event(enable_timing=True), torch.cuda.Event(enable_timing=True)
        start.record()
        fn()
        end.record()
        end.synchronize()
        latencies.append(start.elapsed_time(end))
    return latencies


def _graphed(model: torch.nn.Module, static_input: torch.Tensor):  # noqa: ANN202
    """Capture one forward into a CUDA graph; returns a replay function writing to static outputs."""
    side = torch.cuda.Stream()
    side.wait_stream(torch.cuda.current_stream())
    with torch.cuda.stream(side), torch.no_grad():
        for _ in range(3):
            model(static_input)
    torch.cuda.current_stream().wait_stream(side)
    graph = torch.cuda.CUDAGraph()
    with torch.cuda.graph(graph), torch.no_grad():
        static_out = model(static_input)
    return graph.replay, static_out


def bench_case(preset: str, batch: int, sampling: str, *, warmup: int, iters: int) -> list[dict[str, object]]:
    config = get_preset(preset)
    torch.manual_seed(0)
    model = build_model(config, sampling=sampling).deploy().cuda()
    images = torch.rand(batch, 3, *config.eval_size, device="cuda")
    rows = []

    def record(mode: str, latencies: list[float]) -> None:
        rows.append(
            {
                "preset": preset,
                "batch": batch,
                "sampling": sampling,
                "mode": mode,
                "iters": iters,
                "warmup": warmup,
                "mean_ms": statistics.fmean(latencies),
                "p50_ms": _percentile(latencies, 50),
                "p90_ms": _percentile(latencies, 90),
                "p99_ms": _percentile(latencies, 99),
                "min_ms": min(latencies),
                "std_ms": statistics.pstdev(latencies),
                "images_per_s": batch * 1000.0 / statistics.fmean(latencies),
            }
        )

    with torch.no_grad():
        record("eager fp32", _time(lambda: model(images), warmup=warmup, iters=iters))
        half, half_images = model.half(), images.half()
        record("eager fp16", _time(lambda: half(half_images), warmup=warmup, iters=iters))
    replay, _ = _graphed(half, half_images)
    record("fp16 + CUDA graph", _time(replay, warmup=warmup, iters=iters))
    return rows


def device_description() -> dict[str, object]:
    props = torch.cuda.get_device_properties(0)
    return {
        "gpu": props.name,
        "compute_capability": f"{props.major}.{props.minor}",
        "memory_gib": round(props.total_memory / 2**30, 1),
        "torch": torch.__version__,
        "cuda": torch.version.cuda,
        "cudnn": torch.backends.cudnn.version(),
        "tf32_matmul": torch.backends.cuda.matmul.allow_tf32,
        "tf32_cudnn": torch.backends.cudnn.allow_tf32,
        "python": platform.python_version(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--presets", default="r18vd", help="comma-separated presets (default: r18vd)")
    parser.add_argument("--batch", default="1,8", help="comma-separated batch sizes (default: 1,8)")
    parser.add_argument("--sampling", default="bilinear,discrete", help="comma-separated sampling methods")
    parser.add_argument("--warmup", type=int, default=20)
    parser.add_argument("--iters", type=int, default=200)
    parser.add_argument("--json", type=Path, default=None, help="write the results here")
    args = parser.parse_args(argv)
    if not torch.cuda.is_available():
        print("gpu_torch.py: no CUDA device", file=sys.stderr)
        return 1
    rows = []
    for preset in args.presets.split(","):
        for batch in (int(b) for b in args.batch.split(",")):
            for sampling in args.sampling.split(","):
                rows += bench_case(preset, batch, sampling, warmup=args.warmup, iters=args.iters)
    device = device_description()
    print(f"{device['gpu']}, torch {device['torch']}, CUDA {device['cuda']}; model only, random input\n")
    print("| preset | batch | sampling | mode | p50 ms | p99 ms | images/s | vs eager fp32 |")
    print("|---|---|---|---|---|---|---|---|")
    for row in rows:
        same_case = ("preset", "batch", "sampling")
        base = next(r for r in rows if r["mode"] == "eager fp32" and all(r[k] == row[k] for k in same_case))
        speedup = base["mean_ms"] / row["mean_ms"]
        print(
            f"| {row['preset']} | {row['batch']} | {row['sampling']} | {row['mode']} | {row['p50_ms']:.2f} | "
            f"{row['p99_ms']:.2f} | {row['images_per_s']:.0f} | {speedup:.2f}x |"
        )
    if args.json:
        args.json.parent.mkdir(parents=True, exist_ok=True)
        args.json.write_text(json.dumps({"device": device, "results": rows}, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
