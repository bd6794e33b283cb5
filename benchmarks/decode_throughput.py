"""Decoding alone: frames per second of each decoder at each thread count, on a generated 1280x720 H.264 clip.

    python -m benchmarks.decode_throughput                      # writes benchmarks/results/decode_throughput_cpu.json
    python -m benchmarks.decode_throughput --threads 1,2,4,8,0 --frames 600 --json out.json

Each measurement is ``rtdetr_deploy.bench.throughput.measure_decode``: the source's decoder, with its threads,
reading BGR frames and nothing else, after 8 untimed frames. Thread count 0 lets FFmpeg choose (one per core).
The clip is x264 ``veryfast`` at CRF 18 with B-frames, about 5 Mbit/s: a textured scene panning under a moving
disc plus sensor noise, so that decoding does real work (a flat synthetic clip decodes several times faster).
Every row records how many CPUs this process kept busy (did the threads run at once?) and the share of the CPUs
other processes used meanwhile, and the JSON the machine, its load and the library versions: on a shared machine
the figures are lower bounds, and scaling needs idle cores to show.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from rtdetr_deploy.bench.device import describe_device
from rtdetr_deploy.bench.throughput import measure_decode
from rtdetr_deploy.bench.timing import CpuContention
from rtdetr_deploy.runtime.decoders import DecoderConfig
from rtdetr_deploy.runtime.sinks import VideoWriter

RESULTS = Path(__file__).parent / "results"


def write_h264_clip(path: Path, *, frames: int, size_wh: tuple[int, int] = (1280, 720), fps: int = 30) -> str:
    """Write the test clip (H.264 through PyAV; MPEG-4 part 2 through OpenCV without PyAV); returns its codec."""
    width, height = size_wh
    rng = np.random.default_rng(0)
    pan = 6 * frames
    coarse = rng.integers(0, 256, (height // 16, (width + pan) // 16 + 1, 3), dtype=np.uint8)
    scene = cv2.resize(coarse, (width + pan, height), interpolation=cv2.INTER_CUBIC)
    scene = cv2.add(scene, rng.integers(0, 48, scene.shape, dtype=np.uint8))
    noise = [rng.integers(0, 16, (height, width, 3), dtype=np.uint8) for _ in range(8)]

    def frame(i: int) -> np.ndarray:
        image = scene[:, 6 * i : 6 * i + width].copy()
        cv2.circle(image, ((13 * i) % width, height // 2), height // 12, (0, 255, 255), -1)
        return cv2.add(image, noise[i % len(noise)])

    try:
        import av
    except ImportError:
        with VideoWriter(path, fps=fps, size_wh=size_wh) as writer:
            for i in range(frames):
                writer.write(frame(i))
        return "mpeg4 (mp4v: PyAV, needed for H.264, is not installed)"
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.width, stream.height, stream.pix_fmt = width, height, "yuv420p"
        stream.options = {"preset": "veryfast", "crf": "18"}
        for i in range(frames):
            for packet in stream.encode(av.VideoFrame.from_ndarray(frame(i), format="bgr24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return "h264 (libx264 veryfast, CRF 18, B-frames)"


def measure_all(video: Path, *, decoders: list[str], threads: list[int], frames: int, repeats: int) -> list[dict]:
    """One row per decoder and thread count: the median of ``repeats`` runs, each run's rate, the contention."""
    rows = []
    for decoder in decoders:
        for count in threads:
            rates, shares, cpus = [], [], []
            for _ in range(repeats):
                own, wall = sum(os.times()[:2]), time.perf_counter()
                with CpuContention() as contention:
                    rate, _ = measure_decode(video, decoder=DecoderConfig(decoder, count), frames=frames)
                cpus.append((sum(os.times()[:2]) - own) / (time.perf_counter() - wall))
                rates.append(rate.fps)
                shares.append(contention.other_share)
            rows.append(
                {
                    "decoder": rate.decoder,
                    "threads": count,
                    "threads_label": str(count) if count else "auto",
                    "frames": rate.frames,
                    "fps_median": statistics.median(rates),
                    "fps_runs": rates,
                    "cpus_used_median": statistics.median(cpus),
                    "other_cpu_share_max": max((s for s in shares if s is not None), default=None),
                }
            )
            print(f"{decoder:>6}, threads {rows[-1]['threads_label']:>4}: {rows[-1]['fps_median']:7.1f} frames/s")
    return rows


def _markdown(report: dict[str, Any]) -> str:
    lines = [
        f"Decoding alone, {report['clip']['size_wh'][0]}x{report['clip']['size_wh'][1]} {report['clip']['codec']}, "
        f"{report['clip']['frames']} frames; {report['device']['cpu']['model']} "
        f"({report['device']['cpu']['logical_cpus']} logical CPUs), load average {report['device']['load_average']}",
        "",
        "| decoder | threads | frames/s (median) | runs | CPUs this process used | other CPU (max) |",
        "|---|---|---|---|---|---|",
    ]
    for row in report["results"]:
        share = row["other_cpu_share_max"]
        lines.append(
            f"| {row['decoder']} | {row['threads_label']} | {row['fps_median']:.1f} | "
            f"{', '.join(f'{r:.0f}' for r in row['fps_runs'])} | {row['cpus_used_median']:.2f} | "
            f"{'-' if share is None else f'{share:.0%}'} |"
        )
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--video", type=Path, default=None, help="a video to decode (default: the generated clip)")
    parser.add_argument("--clip-frames", type=int, default=160, help="frames of the generated clip (default: 160)")
    parser.add_argument("--frames", type=int, default=150, help="timed frames per run (default: 150)")
    parser.add_argument("--decoders", default="opencv,pyav", help="comma-separated (default: opencv,pyav)")
    parser.add_argument("--threads", default="1,2,4,0", help="comma-separated thread counts, 0: auto")
    parser.add_argument("--repeats", type=int, default=3, help="runs per row; the median is reported (default: 3)")
    parser.add_argument("--json", type=Path, default=RESULTS / "decode_throughput_cpu.json", help="where to write")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="rtdetr-decode-") as work:
        video, codec = args.video, "as given"
        if video is None:
            video = Path(work) / "clip720.mp4"
            codec = write_h264_clip(video, frames=args.clip_frames)
        capture = cv2.VideoCapture(str(video))
        size_wh = [int(capture.get(cv2.CAP_PROP_FRAME_WIDTH)), int(capture.get(cv2.CAP_PROP_FRAME_HEIGHT))]
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT))
        capture.release()
        clip = {"codec": codec, "size_wh": size_wh, "frames": count, "bytes": video.stat().st_size}
        threads = [int(t) for t in args.threads.split(",")]
        rows = measure_all(
            video, decoders=args.decoders.split(","), threads=threads, frames=args.frames, repeats=args.repeats
        )
    device = describe_device("cpu")
    versions = {"opencv": cv2.__version__}
    try:
        import av

        versions["av"] = av.__version__
    except ImportError:
        pass
    report = {"device": device, "versions": versions, "clip": clip, "results": rows}
    report["note"] = (
        "taken on a shared machine (see load_average and other_cpu_share_max): other processes' work lowers these "
        "rates and flattens their scaling with threads"
    )
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=2) + "\n")
    args.json.with_suffix(".md").write_text(_markdown(report))
    print(_markdown(report), end="")
    print(f"wrote {args.json} and {args.json.with_suffix('.md')}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
