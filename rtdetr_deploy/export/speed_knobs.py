"""What an export records about the speed knobs: decoder layers run and queries kept, against the trained ones."""

from __future__ import annotations

from ..models.rtdetr import RTDETR
from .report import SpeedKnobsReport

__all__ = ["speed_knobs_report"]


def speed_knobs_report(model: RTDETR) -> SpeedKnobsReport:
    """The decoder layers and queries the exported graph uses, out of the trained numbers.

    The verification compares the graph with ``model`` itself, so it is verified against PyTorch run with the
    same decoder layers and queries.
    """
    return SpeedKnobsReport(
        decoder_layers=model.decoder_layers,
        trained_decoder_layers=len(model.decoder.decoder.layers),
        queries=model.queries,
        trained_queries=model.trained_queries,
    )
