"""Typed records of the label-free acceptance: the kept AP of a variant (or of the sampling swap), the verdict on
the sampling swap, and a variant the export refused. They sit in the export report (``report``)."""

from __future__ import annotations

from dataclasses import dataclass, field

from ..records import OPTIONAL, key

__all__ = ["KeptAP", "RefusedVariant", "SwapCost"]


@dataclass(frozen=True)
class KeptAP:
    """COCO AP of a model's detections against a reference's confident detections (``kept_ap.kept_ap``).

    Attributes:
        confidence: lowest reference score of a pseudo object.
        pseudo_objects: the reference's confident detections (the pseudo ground truth).
        ap: AP over IoU 0.50:0.95 in [0, 1]; ap50: AP at IoU 0.5 (``None`` when there is no pseudo object).
        duplicates: share of the reference's confident detections overlapping a better one (``duplicate_share``).
        noise_floor: the reference's own kept AP under invisible input noise (``kept_ap.perturbed``).
        noise_levels: the grey levels of that noise.
        relative: ``ap / noise_floor`` (``None`` when either is missing or zero).
        min_relative: the share of the noise floor the rule asks for (``None``: only reported).
    """

    confidence: float
    pseudo_objects: int
    ap: float | None = field(metadata=key("AP"))
    ap50: float | None = field(metadata=key("AP50"))
    duplicates: float | None = field(default=None, metadata=OPTIONAL)
    noise_floor: float | None = field(default=None, metadata=OPTIONAL)
    noise_levels: int | None = field(default=None, metadata=OPTIONAL)
    relative: float | None = field(default=None, metadata=OPTIONAL)
    min_relative: float | None = field(default=None, metadata=OPTIONAL)


@dataclass(frozen=True)
class SwapCost:
    """What discrete sampling costs weights trained with bilinear sampling (``swap.judge_swap``).

    Attributes:
        measure: ``"kept AP"`` (label-free), ``"AP ratio"`` (labelled data) or ``None`` (no swap, or nothing to
            judge).
        value: the measured figure; threshold: the least accepted without a warning.
        warning: the line the export prints (``None``: no warning).
        bilinear_ap: the checkpoint's COCO AP with bilinear sampling (with labelled data only).
    """

    measure: str | None = None
    value: float | None = None
    threshold: float | None = None
    warning: str | None = None
    bilinear_ap: float | None = field(default=None, metadata=key("bilinear_AP", optional=True))


@dataclass(frozen=True)
class RefusedVariant:
    """A precision variant that failed its gate: its files (not written) and why."""

    files: tuple[str, ...]
    reason: str
