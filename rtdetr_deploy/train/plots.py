"""PNG of the training curves: losses and COCO AP per epoch (matplotlib, headless)."""

from __future__ import annotations

from pathlib import Path

from ..atomic import atomic_path

__all__ = ["plot_history"]


def plot_history(history: list[dict[str, float]], path: Path, *, title: str = "") -> Path:
    """Draw loss terms and AP/AP50 against epochs (and elapsed minutes on a second axis label) into ``path``."""
    import matplotlib

    matplotlib.use("Agg")
    from matplotlib import pyplot as plt

    epochs = [r["epoch"] for r in history]
    fig, (ax_loss, ax_ap) = plt.subplots(1, 2, figsize=(11, 4), constrained_layout=True)
    terms = (("loss", "total, all layers"), ("loss_vfl", "VFL"), ("loss_bbox", "L1"), ("loss_giou", "GIoU"))
    for key, label in terms:
        ax_loss.plot(epochs, [r[key] for r in history], marker=".", label=label)
    ax_loss.set(xlabel="epoch", ylabel="training loss", yscale="log", title="loss (terms of the final layer, weighted)")
    ax_loss.legend()
    for key in ("AP", "AP50"):
        ax_ap.plot(epochs, [r[key] for r in history], marker="o", label=key)
    ax_ap.set(xlabel="epoch", ylabel="COCO box AP (EMA weights)", ylim=(0, 1), title="validation")
    ax_ap.grid(alpha=0.3)
    ax_ap.legend()
    if history and "minutes" in history[-1]:
        last = history[-1]
        ax_ap.annotate(f"{last['minutes']:.1f} min", (epochs[-1], last["AP50"]), fontsize=8, ha="right", va="bottom")
    if title:
        fig.suptitle(title)
    with atomic_path(path) as tmp:
        fig.savefig(tmp, format="png", dpi=110)
    plt.close(fig)
    return path
