"""``python -m rtdetr_deploy.infer SOURCE``: detect objects in images, folders, videos, cameras and streams.

Runs an exported model (``.onnx`` on ONNX Runtime, ``.engine`` on TensorRT) or a checkpoint (``.pth`` on PyTorch),
writes annotated images or video and a COCO-results JSON, shows a progress bar with the live frame rate and ends
with a per-stage timing summary. Bad input ends with one ``error:`` line and a non-zero exit status, never a
traceback; whatever was produced before an interruption or a broken stream is still written.
"""

from __future__ import annotations

import argparse
import dataclasses
import logging
import sys
from pathlib import Path
from typing import TextIO

from ..runtime.config import RuntimeConfig
from ..runtime.decoders import DECODERS, DecoderConfig
from ..runtime.detections import Detections
from ..runtime.detector import Detector
from ..runtime.drawing import draw_detections
from ..runtime.pipeline import DEFAULT_PREPROCESS_WORKERS, PipelineOptions, PipelineResult, run_pipeline
from ..runtime.registry import BACKEND_CHOICES
from ..runtime.sinks import CocoResultsWriter, ImageWriter, VideoWriter
from ..runtime.slicing import run_sliced
from ..runtime.sources import Frame, ImageSource, VideoSource, open_source
from ..zoo import default_model_dir, resolve_default_model
from .frame import EXIT_INTERRUPTED, EXIT_OK, CommandParser, run_command
from .infer_analytics import (
    TrackingStage,
    add_analytics_flags,
    analytics_from_args,
    check_track_source,
    sequence_source,
    slice_config,
)
from .names import add_names_option, names_from_args

__all__ = ["main", "run", "build_parser", "config_from_args", "video_options_from_args"]

PROG = "rtdetr-infer"
logger = logging.getLogger(__name__)
WINDOW = "rtdetr-deploy"


def build_parser() -> argparse.ArgumentParser:
    """The command line of ``python -m rtdetr_deploy.infer`` / ``rtdetr-infer``."""
    parser = CommandParser(
        prog=PROG,
        description="NMS-free RT-DETRv2 inference on images, folders, globs, videos, cameras and RTSP/HTTP streams.",
    )
    parser.add_argument("source", help="image, folder, glob ('imgs/*.jpg'), video file, camera index or stream URL")
    parser.add_argument(
        "--model",
        help="model: .onnx (onnxruntime), .engine (TensorRT), .xml (OpenVINO), or .pth / .safetensors / "
        "transformers folder (PyTorch); default: the official "
        "RT-DETRv2-S COCO checkpoint, downloaded and exported once into the user cache",
    )
    parser.add_argument("--backend", default="auto", choices=BACKEND_CHOICES, help="default: by the model's suffix")
    parser.add_argument("--device", help="cpu or cuda:N (default: cuda:0 for .engine, cpu otherwise)")
    parser.add_argument(
        "--conf",
        type=float,
        default=None,
        help="score threshold in [0, 1] (default: 0.25; with --track: the tracker's low score)",
    )
    parser.add_argument("--classes", nargs="+", metavar="CLASS", help="keep only these classes (names or indices)")
    parser.add_argument("--save", metavar="DIR", help="write annotated images, or the annotated video, into DIR")
    parser.add_argument("--json", metavar="FILE", help="write COCO results (frame index as image_id for video)")
    parser.add_argument("--show", action="store_true", help="display annotated frames (q or Esc stops)")
    parser.add_argument("--batch", type=int, default=1, help="images per inference call (default: 1)")
    parser.add_argument(
        "--decoder",
        default="auto",
        choices=DECODERS,
        help="video decoder: pyav (FFmpeg frame threads), opencv, nvdec (NVIDIA GPU, PyNvVideoCodec); default: "
        "pyav for video files when installed, else opencv",
    )
    parser.add_argument(
        "--decode-threads", type=int, default=0, metavar="N", help="FFmpeg decoder threads (default: 0, one per core)"
    )
    parser.add_argument(
        "--preprocess-workers",
        type=int,
        default=DEFAULT_PREPROCESS_WORKERS,
        metavar="N",
        help=f"threads preprocessing batches beside inference; frames keep their order (default: "
        f"{DEFAULT_PREPROCESS_WORKERS})",
    )
    add_names_option(parser, applies_to=" (a checkpoint --model only)")
    add_analytics_flags(parser)
    return parser


def config_from_args(args: argparse.Namespace) -> RuntimeConfig:
    """Map parsed flags onto a ``RuntimeConfig`` (validated there)."""
    return RuntimeConfig(
        source=args.source,
        model=args.model,
        backend=args.backend,
        device=args.device,
        **analytics_from_args(args),
        classes=tuple(args.classes) if args.classes else None,
        batch=args.batch,
        save_dir=args.save,
        json_path=args.json,
        show=args.show,
        names=names_from_args(args),
    )


def video_options_from_args(args: argparse.Namespace) -> tuple[DecoderConfig, PipelineOptions]:
    """Map the decoding and pipeline flags onto their configs (validated there)."""
    decoder = DecoderConfig(decoder=args.decoder, threads=args.decode_threads)
    return decoder, PipelineOptions(preprocess_workers=args.preprocess_workers)


class _Progress:
    """tqdm progress bar with the live frame rate, or nothing when tqdm is not installed or stderr is no terminal."""

    def __init__(self, total: int | None, desc: str) -> None:
        try:
            from tqdm import tqdm
        except ImportError:
            self._bar = None
        else:
            self._bar = tqdm(total=total, desc=desc, unit="frame", dynamic_ncols=True, file=sys.stderr, disable=None)

    def update(self) -> None:
        if self._bar is not None:
            self._bar.update(1)

    def write(self, text: str) -> None:
        if self._bar is not None and not self._bar.disable:
            self._bar.write(text, file=sys.stderr)
        else:
            print(text, file=sys.stderr)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()


class _ProgressHandler(logging.Handler):
    """Prints the package's warnings as ``warning: ...`` lines without breaking the progress bar."""

    def __init__(self) -> None:
        super().__init__(level=logging.WARNING)
        self.progress: _Progress | None = None

    def emit(self, record: logging.LogRecord) -> None:
        text = f"{record.levelname.lower()}: {record.getMessage()}"
        if self.progress is not None:
            self.progress.write(text)
        else:
            print(text, file=sys.stderr)


class _Outputs:
    """The sinks of one run, fed frame by frame from the pipeline's consumer."""

    def __init__(self, config: RuntimeConfig, source: ImageSource | VideoSource, progress: _Progress) -> None:
        self.config = config
        self.source = source
        self.progress = progress
        self.images = ImageWriter(config.save_dir) if config.save_dir and isinstance(source, ImageSource) else None
        self.video: VideoWriter | None = None
        self.coco = CocoResultsWriter(config.json_path) if config.json_path else None
        self.detections = 0
        self.tracking = TrackingStage(config, frame_rate=getattr(source, "fps", None))

    def consume(self, frame: Frame, detections: Detections) -> bool:
        detections = self.tracking(frame, detections)
        self.detections += len(detections)
        if self.coco is not None:
            self.coco.add(frame.image_id, detections)
        if self.config.save_dir or self.config.show:
            drawn = self.tracking.draw(draw_detections(frame.image, detections), detections)
            if self.images is not None:
                self.images.write(frame.name, drawn)
            elif self.config.save_dir and isinstance(self.source, VideoSource):
                if self.video is None:
                    if not getattr(self.source, "fps_known", True):
                        logger.warning(
                            "%s does not report its frame rate; writing video at %g fps",
                            self.source.label,
                            self.source.fps,
                        )
                    path = Path(self.config.save_dir) / f"{self.source.name}.mp4"
                    size_wh = (frame.image.shape[1], frame.image.shape[0])
                    self.video = VideoWriter(path, fps=self.source.fps, size_wh=size_wh)
                self.video.write(drawn)
            if self.config.show:
                import cv2

                cv2.imshow(WINDOW, drawn)
                if cv2.waitKey(1) & 0xFF in (ord("q"), 27):
                    return False
        self.progress.update()
        return True

    def close(self) -> list[str]:
        """Publish every output (partial ones too) and describe them."""
        lines, errors = [], []
        try:
            lines += self.tracking.close()
        except OSError as exc:
            errors.append(f"could not write {self.config.mot_path}: {exc}")
        for sink in (self.video, self.coco):
            if sink is None:
                continue
            try:
                sink.close()
            except OSError as exc:  # one failing sink must not lose the others
                errors.append(f"could not write {sink.path}: {exc}")
        if self.video is not None and self.video.frames:
            w, h = self.video.size_wh
            lines.append(f"saved {self.video.path} ({self.video.frames} frames, {w}x{h} @ {self.video.fps:g} fps)")
        if self.images is not None and self.images.written:
            lines.append(f"saved {len(self.images.written)} annotated images to {self.images.directory}")
        if self.coco is not None:
            lines.append(f"saved {self.coco.path} ({len(self.coco.results)} detections on {self.coco.images} images)")
        if errors:
            raise OSError("; ".join(errors))
        return lines


def _check_show() -> None:
    import cv2

    try:
        cv2.namedWindow(WINDOW, cv2.WINDOW_NORMAL)
    except cv2.error:
        raise ValueError(
            "--show needs OpenCV with GUI support (pip install opencv-python instead of opencv-python-headless)"
        ) from None


def _summary(
    result: PipelineResult, detector: Detector, config: RuntimeConfig, source: ImageSource | VideoSource, workers: int
) -> list[str]:
    n = max(result.frames, 1)
    per_frame = ", ".join(f"{stage} {seconds / n * 1e3:.1f} ms" for stage, seconds in result.times.as_dict().items())
    overhead = (result.times.preprocess + result.times.postprocess) / n * 1e3
    status = "interrupted after" if result.interrupted else "stopped after" if result.stopped else "done:"
    decoder = f", {source.decoder} decoder" if isinstance(source, VideoSource) else ""
    return [
        f"{status} {result.frames} frames in {result.wall_s:.2f} s ({result.fps:.1f} FPS), "
        f"{detector.backend.description}, batch {config.batch}{decoder}, {workers} preprocessing workers",
        f"per frame: {per_frame}; runtime overhead beyond inference (pre+post) {overhead:.1f} ms",
    ]


def run(
    config: RuntimeConfig,
    *,
    decoder: DecoderConfig | None = None,
    pipeline: PipelineOptions | None = None,
    out: TextIO | None = None,
) -> int:
    """Run one inference job; returns the exit status. Raises the package's errors for bad input.

    Args:
        config: what to run on what.
        decoder: how videos, cameras and streams are decoded (``DecoderConfig()``: automatic).
        pipeline: preprocessing workers and queue size (``PipelineOptions()``).
        out: where the summary goes (``sys.stdout``).
    """
    out = out or sys.stdout
    pipeline = pipeline or PipelineOptions()
    if config.show:
        _check_show()
    config = dataclasses.replace(config, source=sequence_source(config.source))
    with open_source(config.source, decoder=decoder) as source:
        check_track_source(config, source)
        if config.model is None:
            print(
                f"no --model given: using the official RT-DETRv2-S COCO model (prepared once in {default_model_dir()})",
                file=out,
            )
            config = dataclasses.replace(config, model=str(resolve_default_model(backend=config.backend)))
        return _run_source(config, source, pipeline, out)


def _run_source(
    config: RuntimeConfig, source: ImageSource | VideoSource, pipeline: PipelineOptions, out: TextIO
) -> int:
    with Detector.from_config(config) as detector:
        if config.batch > detector.max_batch:
            raise ValueError(f"--batch {config.batch} exceeds the model's batch limit {detector.max_batch}")
        height, width = detector.metadata.input_size
        print(
            f"model {config.model}: {detector.metadata.preset}, {height}x{width}, "
            f"{detector.metadata.num_classes} classes, {detector.backend.description}",
            file=out,
        )
        progress = _Progress(source.total, desc=Path(str(source.label)).name or str(source.label))
        handlers = logging.getLogger("rtdetr_deploy").handlers
        handler = next((h for h in handlers if isinstance(h, _ProgressHandler)), None)
        if handler is not None:
            handler.progress = progress
        outputs = _Outputs(config, source, progress)
        slicing = slice_config(config)
        try:
            result = (
                run_sliced(source, detector, outputs.consume, slicing)
                if slicing
                else run_pipeline(
                    source,
                    detector,
                    outputs.consume,
                    batch=config.batch,
                    queue_size=pipeline.queue_size,
                    preprocess_workers=pipeline.preprocess_workers,
                )
            )
        finally:
            progress.close()
            if handler is not None:
                handler.progress = None
            saved = outputs.close()
            if config.show:
                _close_windows()
        for line in [*_summary(result, detector, config, source, pipeline.preprocess_workers), *saved]:
            print(line, file=out)
    if result.interrupted:
        return EXIT_INTERRUPTED
    if result.frames == 0 and not result.stopped:
        raise ValueError(f"no frame could be read from {config.source}")
    return EXIT_OK


def _close_windows() -> None:
    import cv2

    try:
        cv2.destroyAllWindows()
    except cv2.error:
        pass


def _run_args(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    decoder, pipeline = video_options_from_args(args)
    return run(config, decoder=decoder, pipeline=pipeline)


def main(argv: list[str] | None = None) -> int:
    """``rtdetr-infer`` / ``python -m rtdetr_deploy.infer``; returns the exit status (0 done, 1 failed, 2 bad input,
    130 interrupted)."""
    package_logger = logging.getLogger("rtdetr_deploy")
    handler = _ProgressHandler()
    package_logger.addHandler(handler)
    previous_level = package_logger.level
    if package_logger.getEffectiveLevel() > logging.WARNING:
        package_logger.setLevel(logging.WARNING)
    try:
        return run_command(PROG, build_parser(), argv, _run_args)
    finally:
        package_logger.removeHandler(handler)
        package_logger.setLevel(previous_level)


if __name__ == "__main__":
    raise SystemExit(main())
