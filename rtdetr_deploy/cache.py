"""Where the package keeps files it makes once and reuses (downloads, exports, datasets, provider engine caches)."""

from __future__ import annotations

import os
from pathlib import Path

__all__ = ["cache_dir"]


def cache_dir() -> Path:
    """``$RTDETR_DEPLOY_CACHE``, else ``$XDG_CACHE_HOME/rtdetr-deploy``, else ``~/.cache/rtdetr-deploy``.

    The folder is not created here; writers create what they need.
    """
    explicit = os.environ.get("RTDETR_DEPLOY_CACHE")
    if explicit:
        return Path(explicit).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base).expanduser() / "rtdetr-deploy"
