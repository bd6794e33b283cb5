"""Class names and original category ids: COCO's 80, and the sources ``--names`` reads.

A detector's heads predict contiguous labels ``0..C-1``; a dataset names its categories by its own ids (COCO's 80
run over 1..90 with gaps). A ``ClassNames`` pairs a name and an original id with each label, in label order. It is
what an exported model records in its metadata, so the runtime labels detections by name and writes COCO results
with the dataset's ids. Torch-free.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

__all__ = ["COCO", "COCO_CATEGORY_IDS", "COCO_CLASS_NAMES", "ClassNames", "checkpoint_names", "read_names"]

COCO_CLASS_NAMES = (
    "person", "bicycle", "car", "motorcycle", "airplane", "bus", "train", "truck", "boat", "traffic light",
    "fire hydrant", "stop sign", "parking meter", "bench", "bird", "cat", "dog", "horse", "sheep", "cow",
    "elephant", "bear", "zebra", "giraffe", "backpack", "umbrella", "handbag", "tie", "suitcase", "frisbee",
    "skis", "snowboard", "sports ball", "kite", "baseball bat", "baseball glove", "skateboard", "surfboard",
    "tennis racket", "bottle", "wine glass", "cup", "fork", "knife", "spoon", "bowl", "banana", "apple",
    "sandwich", "orange", "broccoli", "carrot", "hot dog", "pizza", "donut", "cake", "chair", "couch",
    "potted plant", "bed", "dining table", "toilet", "tv", "laptop", "mouse", "remote", "keyboard", "cell phone",
    "microwave", "oven", "toaster", "sink", "refrigerator", "book", "clock", "vase", "scissors", "teddy bear",
    "hair drier", "toothbrush",
)  # fmt: skip
# COCO's original ids of the 80 contiguous labels (1..90 with gaps), as the official remapping uses them.
COCO_CATEGORY_IDS = (
    *range(1, 12), *range(13, 26), 27, 28, *range(31, 45), *range(46, 66), 67, 70, *range(72, 83), *range(84, 91)
)  # fmt: skip

YAML_SUFFIXES = (".yaml", ".yml")


@dataclass(frozen=True)
class ClassNames:
    """A name and an original category id per contiguous label.

    Attributes:
        names: ``[C]`` class names, label order.
        category_ids: ``[C]`` the dataset's original category ids, label order (unique).
        source: where they came from (``"coco"``, a file path), for messages.
    """

    names: tuple[str, ...]
    category_ids: tuple[int, ...]
    source: str = ""

    def __post_init__(self) -> None:
        where = f"{self.source}: " if self.source else ""
        if not self.names:
            raise ValueError(f"{where}no class names")
        if len(self.names) != len(self.category_ids):
            raise ValueError(f"{where}{len(self.names)} class names but {len(self.category_ids)} category ids")
        if any(not name.strip() for name in self.names):
            raise ValueError(f"{where}class {[n.strip() for n in self.names].index('')} has an empty name")
        if len(set(self.category_ids)) != len(self.category_ids):
            repeated = sorted({i for i in self.category_ids if self.category_ids.count(i) > 1})
            raise ValueError(f"{where}category ids repeat: {repeated[:5]}")

    @property
    def num_classes(self) -> int:
        return len(self.names)

    def check_count(self, num_classes: int, model: str) -> None:
        """Refuse names for a model with another number of classes.

        Raises:
            ValueError: naming both counts.
        """
        if self.num_classes != num_classes:
            raise ValueError(
                f"--names {self.source} lists {self.num_classes} classes, but the model {model} has {num_classes}"
            )


COCO = ClassNames(COCO_CLASS_NAMES, COCO_CATEGORY_IDS, "coco")


def read_names(source: str | os.PathLike[str]) -> ClassNames:
    """The class names (and ids) a ``--names`` source gives.

    Args:
        source: ``"coco"`` (COCO's 80 names, ids 1..90 with gaps); a COCO annotation ``.json`` (its
            ``categories`` sorted by id give the names and the ids); a ``.yaml``/``.yml`` file holding a list of
            names, or a mapping whose ``names`` is such a list or an ``{index: name}`` mapping over ``0..N-1``; or
            any other text file with one name per line (blank lines skipped). Lists get ids ``0..N-1``.

    Raises:
        FileNotFoundError: no such file.
        ValueError: a file that holds no names in one of these forms (one line saying why).
    """
    if str(source).strip().lower() == "coco":
        return COCO
    path = Path(source)
    if not path.is_file():
        raise FileNotFoundError(f"--names: no such file: {path} (pass 'coco', a COCO .json, a .yaml or a .txt list)")
    suffix = path.suffix.lower()
    if suffix == ".json":
        return _from_coco_json(path)
    text = path.read_text(encoding="utf-8")
    names = _from_yaml(text, path) if suffix in YAML_SUFFIXES else [line.strip() for line in text.splitlines()]
    names = [name for name in names if name]
    if not names:
        raise ValueError(f"--names {path}: no class names in the file")
    return ClassNames(tuple(names), tuple(range(len(names))), str(path))


def checkpoint_names(
    num_classes: int,
    *,
    names: ClassNames | None = None,
    stored: tuple[tuple[str, ...], tuple[int, ...]] = ((), ()),
) -> tuple[tuple[str, ...], tuple[int, ...], str]:
    """The names and ids a checkpoint's model gets, and where they came from in words (the export prints it).

    ``names`` (from ``--names``) win; else the names and ids ``stored`` in the checkpoint (a transformers folder
    stores names without ids: COCO's names get COCO's ids back, others ``0..C-1``); else, for 80 classes, COCO's
    (an official release checkpoint is COCO-trained, its labels remapped from ids 1..90, and carries no names);
    else the label indices.

    Args:
        num_classes: ``C``, the classification head's classes (``names`` must have as many; checked by the caller).
        names: the ``--names`` source, read by ``read_names``.
        stored: ``(names, ids)`` the checkpoint carries; empty tuples when it carries none.
    """
    if names is not None:
        return names.names, names.category_ids, f"{names.num_classes} names and ids from --names {names.source}"
    found, ids = stored
    if found:
        ids = ids or (COCO.category_ids if found == COCO.names else tuple(range(len(found))))
        return found, ids, f"{len(found)} names and ids from the checkpoint"
    if num_classes == COCO.num_classes:
        words = "COCO's 80 names and category ids (1..90): the checkpoint carries none; --names changes them"
        return COCO.names, COCO.category_ids, words
    indices = tuple(range(num_classes))
    return tuple(map(str, indices)), indices, f"no names in the checkpoint: labels 0..{num_classes - 1}; pass --names"


def _from_coco_json(path: Path) -> ClassNames:
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise ValueError(f"--names {path}: not valid JSON (line {exc.lineno}: {exc.msg})") from None
    categories = data.get("categories") if isinstance(data, dict) else None
    if not isinstance(categories, list) or not categories:
        raise ValueError(f"--names {path}: no 'categories' list, so not a COCO annotation file")
    try:
        pairs = sorted((int(c["id"]), str(c["name"])) for c in categories)
    except (KeyError, TypeError, ValueError):
        raise ValueError(f"--names {path}: every category needs an integer 'id' and a 'name'") from None
    return ClassNames(tuple(name for _, name in pairs), tuple(i for i, _ in pairs), str(path))


def _from_yaml(text: str, path: Path) -> list[str]:
    import yaml

    try:
        data: Any = yaml.safe_load(text)
    except yaml.YAMLError as exc:
        raise ValueError(f"--names {path}: not valid YAML ({' '.join(str(exc).split())})") from None
    if isinstance(data, dict) and "names" in data:
        data = data["names"]
    if isinstance(data, dict):
        if set(data) != set(range(len(data))):
            raise ValueError(f"--names {path}: a names mapping must have the keys 0..{len(data) - 1}")
        data = [data[i] for i in range(len(data))]
    if not isinstance(data, list) or not all(isinstance(n, str | int | float) for n in data):
        raise ValueError(f"--names {path}: expected a list of names (or 'names:' holding one)")
    return [str(n).strip() for n in data]
