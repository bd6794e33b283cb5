"""Record how closely our RT-DETRv2 matches transformers' port of the official model, for every size and sampling.

The comparison ``tests/models/test_official_parity.py`` makes (``hf_parity``: random, well-scaled weights copied into
``RTDetrV2ForObjectDetection``; a 640x640 image; discrete sampling compared with the decisions held equal), run
for all five official sizes and both samplings, written to ``benchmarks/results/official_parity.json``: the
figures the README quotes.

    python -m benchmarks.official_parity
"""

from __future__ import annotations

import json
import platform
import sys
import time
from pathlib import Path

import torch

from benchmarks.hf_parity import hf_model, make_image, our_model
from benchmarks.hf_reference import recording_hf_discrete_decisions
from rtdetr_deploy.models.decisions import DecisionLog
from rtdetr_deploy.models.presets import PRESETS

ROOT = Path(__file__).resolve().parents[1]

RESULTS = ROOT / "benchmarks" / "results" / "official_parity.json"


@torch.no_grad()
def compare(preset: str, sampling: str) -> dict[str, object]:
    ours = our_model(preset).set_sampling(sampling)
    hf = hf_model(preset, sampling, ours.state_dict())
    images = make_image()
    with recording_hf_discrete_decisions() as hf_indices:
        hf_out = hf(pixel_values=images)
    with DecisionLog() as log:
        ours_out = ours(images)
    ties = 0
    if sampling == "discrete":
        selection = (log.decisions[0].values, log.decisions[0].outcome)
        with DecisionLog(replay=[selection, *hf_indices]) as replayed:
            ours_out = ours(images)
        if replayed.disagreements:
            raise AssertionError(f"{preset}: {replayed.disagreements} discrete indices differ away from a tie")
        ties = replayed.ties
    return {
        "preset": preset,
        "sampling": sampling,
        "max_abs_logit_diff": float((ours_out["pred_logits"] - hf_out.logits).abs().max()),
        "max_abs_box_diff": float((ours_out["pred_boxes"] - hf_out.pred_boxes).abs().max()),
        "pixel_boundary_ties": ties,
    }


def main() -> int:
    import transformers

    rows = []
    for preset in (name for name, config in PRESETS.items() if config.official):
        for sampling in ("bilinear", "discrete"):
            start = time.perf_counter()
            rows.append({**compare(preset, sampling), "seconds": round(time.perf_counter() - start, 1)})
            print(json.dumps(rows[-1]), flush=True)
    record = {
        "what": "our model vs transformers.RTDetrV2ForObjectDetection, same random weights, one 640x640 image",
        "torch": torch.__version__,
        "transformers": transformers.__version__,
        "threads": torch.get_num_threads(),
        "machine": platform.processor() or platform.machine(),
        "results": rows,
        "max_abs_logit_diff": max(r["max_abs_logit_diff"] for r in rows),
        "max_abs_box_diff": max(r["max_abs_box_diff"] for r in rows),
    }
    RESULTS.write_text(json.dumps(record, indent=1) + "\n")
    print(f"wrote {RESULTS}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
