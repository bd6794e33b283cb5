"""``rtdetr-serve``: the runtime's ``Detector`` behind Ray Serve (HTTP, dynamic batching across clients, replicas).

Importing this package needs no Ray; ``service.start_service`` and ``app`` import it.
"""

from __future__ import annotations

from .config import ServeConfig

__all__ = ["ServeConfig"]
