"""``python -m rtdetr_deploy.data OUT``: write the embedded synthetic dataset and video into OUT."""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from .synthetic import SyntheticConfig, generate_synthetic


def main(argv: list[str] | None = None) -> int:
    """Parse the flags, generate, print one line; exit status 1 with one line on stderr for bad settings."""
    parser = argparse.ArgumentParser(
        prog="python -m rtdetr_deploy.data", description="Write the embedded synthetic COCO-format dataset and video."
    )
    parser.add_argument("out", type=Path, help="output folder")
    defaults = SyntheticConfig()
    for name in ("seed", "num_train", "num_val", "image_size", "video_frames", "max_objects"):
        parser.add_argument(f"--{name.replace('_', '-')}", type=int, default=getattr(defaults, name))
    args = parser.parse_args(argv)
    try:
        config = SyntheticConfig(**{k: v for k, v in vars(args).items() if k != "out"})
        paths = generate_synthetic(args.out, config)
    except (OSError, ValueError) as exc:
        print(f"python -m rtdetr_deploy.data: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {config.num_train} train and {config.num_val} val images, annotations and video under {paths.root}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
