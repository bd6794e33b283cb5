"""The minimal bundled trainer (needs the ``train`` extra): COCO data, RT-DETRv2's loss, EMA, evaluation, resume.

``fit(TrainConfig(...))`` runs a whole training; ``rtdetr-train`` (``rtdetr_deploy.train_cli``) maps its flags
onto ``TrainConfig``; ``torchrun --nproc_per_node N -m rtdetr_deploy.train ...`` runs it on N processes.
"""

from .config import TrainConfig
from .criterion import SetCriterion
from .ema import ModelEMA
from .engine import evaluate, train_one_epoch
from .fit import FitResult, fit
from .matcher import HungarianMatcher

__all__ = [
    "FitResult",
    "HungarianMatcher",
    "ModelEMA",
    "SetCriterion",
    "TrainConfig",
    "evaluate",
    "fit",
    "train_one_epoch",
]
