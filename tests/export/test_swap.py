"""The sampling-swap judgement on measured figures: when it warns, what the line says, and --strict-sampling.

The end-to-end case (the shipped bilinear checkpoint exported with discrete sampling) is in
``tests/cli/test_export_acceptance.py``; these cases feed the judgement the figures measured there.
"""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import pytest

pytest.importorskip("onnx")

from rtdetr_deploy.errors import ExportError  # noqa: E402
from rtdetr_deploy.export import swap  # noqa: E402
from rtdetr_deploy.export.acceptance import KeptAP  # noqa: E402
from rtdetr_deploy.export.config import ExportConfig  # noqa: E402

WEIGHTS = Path("w.pth")


def _report(kept: float | None = None, fp32_ap: float | None = None) -> dict:
    """The measured swap and AP gates ``judge_swap`` reads (only the fields it reads)."""
    count = 90 if kept is not None else 0
    swap_report = SimpleNamespace(kept_ap=KeptAP(confidence=0.5, pseudo_objects=count, ap=kept, ap50=kept))
    accuracy = None if fp32_ap is None else SimpleNamespace(gates={"fp32": SimpleNamespace(ap=fp32_ap)})
    return {"swap": swap_report, "accuracy": accuracy}


def _config(**kwargs) -> ExportConfig:  # noqa: ANN003
    return ExportConfig(weights=WEIGHTS, out_dir=Path("."), **kwargs)


def test_a_costly_swap_warns_with_its_cost_and_both_remedies() -> None:
    verdict = swap.judge_swap(_config(), trained_sampling="bilinear", **_report(kept=0.191))
    assert verdict.measure == "kept AP" and verdict.value == 0.191
    warning = verdict.warning
    assert "kept AP 0.191 against the bilinear model's 90 confident detections" in warning
    assert "rtdetr-train --init w.pth --sampling discrete" in warning and "--sampling bilinear" in warning
    assert "\n" not in warning


def test_a_cheap_swap_and_no_swap_stay_silent() -> None:
    assert swap.judge_swap(_config(), trained_sampling="bilinear", **_report(kept=0.9)).warning is None
    for trained, exported in (("discrete", "discrete"), ("bilinear", "bilinear")):
        verdict = swap.judge_swap(_config(sampling=exported), trained_sampling=trained, **_report(kept=0.1))
        assert verdict.measure is None and verdict.warning is None


def test_nothing_confident_is_not_judged() -> None:
    assert swap.judge_swap(_config(), trained_sampling="bilinear", **_report()).measure is None


def test_with_labelled_data_the_ap_ratio_decides(monkeypatch: pytest.MonkeyPatch) -> None:
    """The held-out figures of the shipped checkpoint: AP 0.2046 discrete, 0.7379 bilinear (28%)."""
    monkeypatch.setattr(swap, "_bilinear_ap", lambda config: 0.7379)
    config = _config(eval_data=Path("data"))
    verdict = swap.judge_swap(config, trained_sampling="bilinear", **_report(kept=0.9, fp32_ap=0.2046))
    assert verdict.measure == "AP ratio" and "AP 0.2046 against 0.7379 with bilinear sampling (28%)" in (
        verdict.warning
    )
    verdict = swap.judge_swap(config, trained_sampling="bilinear", **_report(kept=0.1, fp32_ap=0.7100))
    assert verdict.warning is None, "96% of the bilinear AP is within the 95% allowed"


def test_strict_sampling_refuses_a_costly_swap() -> None:
    with pytest.raises(ExportError, match="^--strict-sampling: these weights were trained with bilinear"):
        swap.judge_swap(_config(strict_sampling=True), trained_sampling="bilinear", **_report(kept=0.191))
