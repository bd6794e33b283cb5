"""rtdetr-deploy: RT-DETRv2 from weights to a fast deployed detector.

The top-level package imports without torch; ``load_model`` imports it on first use.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .version import __version__

__all__ = ["__version__", "load_model"]

if TYPE_CHECKING:
    from .models.checkpoint import load_model


def __getattr__(name: str) -> Any:
    if name == "load_model":
        from .models.checkpoint import load_model

        return load_model
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
