"""The one frame every command runs in: argparse with ``--help``, one-line errors, and the exit codes.

``rtdetr-X: error: ...`` on one line, never a traceback; exit status 0 when the work is done, 2 for bad usage or
bad input (a missing file, a value out of range, a file that is not what it should be), 1 for a failure during
the work (a toolchain that breaks, a disk that fills up, a package that is not installed) and 130 on Ctrl-C.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable, Sequence
from typing import NoReturn

from ..errors import RtdetrDeployError

__all__ = [
    "EXIT_FAILURE",
    "EXIT_INTERRUPTED",
    "EXIT_OK",
    "EXIT_USAGE",
    "CommandParser",
    "one_line",
    "parse_imgsz",
    "run_command",
]

EXIT_OK, EXIT_FAILURE, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
# Optional module -> the extra that installs it; each backend's own module and extra come from the backend registry.
EXTRAS = {
    "faster_coco_eval": "eval",
    "matplotlib": "bench",
    "psutil": "bench",
    "onnxslim": "export",
    "scipy": "train",
    "torchvision": "torch",
    "cuda": "trt",
    "nncf": "openvino",
    "safetensors": "torch",
    "av": "video",
    "ray": "serve",
    "tritonclient": "triton",
    "yaml": "torch",
}


class CommandParser(argparse.ArgumentParser):
    """argparse that reports a usage error as one line, ``prog: error: message (see --help)``, with status 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see --help)\n")


def one_line(exc: BaseException) -> str:
    """The message of ``exc`` on one line (a loader worker's re-raised error: its original last line)."""
    text = str(exc).strip()
    if "Original Traceback" in text:
        lines = [line.strip() for line in text.splitlines() if line.strip()]
        return lines[-1]
    return " ".join(text.split()) or type(exc).__name__


def _backend_extra(module: str) -> str | None:
    """The extra installing ``module`` when a registered backend needs it (the registry is read only on this path:
    it imports every backend module)."""
    from ..runtime.registry import REGISTRY

    return next((entry.extra for entry in REGISTRY if entry.requires == module), None)


def _missing_package(exc: ImportError) -> str:
    module = (exc.name or "").split(".")[0]
    extra = EXTRAS.get(module) or _backend_extra(module)
    if not module:
        return f"a package is missing ({one_line(exc)})"
    install = f"pip install 'rtdetr-deploy[{extra}]'" if extra else f"pip install {module}"
    return f"{module} is not installed: {install}"


def run_command(
    prog: str,
    parser: argparse.ArgumentParser,
    argv: Sequence[str] | None,
    work: Callable[[argparse.Namespace], int],
    *,
    interrupted: str = "",
) -> int:
    """Parse ``argv`` and run ``work(args)`` inside the frame; returns the exit status.

    Args:
        prog: the command's name, the prefix of every error line.
        parser: the command's parser (a ``CommandParser``).
        argv: the arguments (``None``: ``sys.argv[1:]``).
        work: does the job; returns the exit status (0 normally) or raises.
        interrupted: what Ctrl-C leaves behind, appended to ``prog: interrupted``.
    """
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # --help (0) or a usage error (already printed)
        return exc.code if isinstance(exc.code, int) else EXIT_USAGE
    try:
        return work(args)
    except KeyboardInterrupt:
        print(f"{prog}: interrupted{'; ' + interrupted if interrupted else ''}", file=sys.stderr)
        return EXIT_INTERRUPTED
    except (
        ValueError,
        FileNotFoundError,
        FileExistsError,
        IsADirectoryError,
        NotADirectoryError,
        PermissionError,
    ) as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_USAGE
    except ImportError as exc:
        print(f"{prog}: error: {_missing_package(exc)}", file=sys.stderr)
        return EXIT_FAILURE
    except (RtdetrDeployError, OSError, RuntimeError, FloatingPointError) as exc:
        print(f"{prog}: error: {one_line(exc)}", file=sys.stderr)
        return EXIT_FAILURE


def parse_imgsz(text: str) -> tuple[int, int]:
    """``--imgsz`` as ``(height, width)``: ``"640"`` -> (640, 640); ``"384,640"`` or ``"384x640"`` -> (384, 640).

    Raises:
        ValueError: anything but one or two integers.
    """
    try:
        values = [int(v) for v in str(text).replace("x", ",").split(",")]
    except ValueError:
        raise ValueError(f"--imgsz must be N or H,W (integers), got {text!r}") from None
    if len(values) not in (1, 2):
        raise ValueError(f"--imgsz must be N or H,W, got {text!r}")
    return values[0], values[-1]
