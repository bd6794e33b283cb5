"""Class names and ids: COCO's table against known facts, every ``--names`` source kind, and their refusals."""

from __future__ import annotations

import json

import pytest

from rtdetr_deploy.coco.names import COCO, ClassNames, checkpoint_names, read_names

# The ten ids COCO 2017 leaves unused between 1 and 90 (from the dataset's own category list).
COCO_GAPS = {12, 26, 29, 30, 45, 66, 68, 69, 71, 83}


def test_coco_has_80_classes_over_1_to_90_with_the_known_gaps():
    assert COCO.num_classes == 80
    assert set(COCO.category_ids) == set(range(1, 91)) - COCO_GAPS
    assert list(COCO.category_ids) == sorted(COCO.category_ids)


@pytest.mark.parametrize(
    ("name", "category_id"),
    [("person", 1), ("stop sign", 13), ("backpack", 27), ("dining table", 67), ("toilet", 70), ("tv", 72),
     ("book", 84), ("toothbrush", 90)],
)  # fmt: skip
def test_coco_names_carry_their_instances_json_ids(name, category_id):
    assert COCO.category_ids[COCO.names.index(name)] == category_id


def test_source_coco_is_the_builtin_table():
    assert read_names("coco") == COCO
    assert read_names("COCO") == COCO


def test_coco_annotation_file_gives_names_in_id_order(tmp_path):
    path = tmp_path / "instances_val.json"
    categories = [{"id": 7, "name": "truck"}, {"id": 3, "name": "cat"}, {"id": 11, "name": "dog"}]
    path.write_text(json.dumps({"images": [], "annotations": [], "categories": categories}))
    names = read_names(path)
    assert names.names == ("cat", "truck", "dog")
    assert names.category_ids == (3, 7, 11)


def test_text_list_gives_names_with_index_ids(tmp_path):
    path = tmp_path / "names.txt"
    path.write_text("helmet\n\n  vest \nboot\n")
    names = read_names(path)
    assert names.names == ("helmet", "vest", "boot")
    assert names.category_ids == (0, 1, 2)


@pytest.mark.parametrize(
    "text",
    [
        "- helmet\n- vest\n- boot\n",
        "names: [helmet, vest, boot]\n",
        "nc: 3\nnames:\n  0: helmet\n  1: vest\n  2: boot\n",
    ],
)
def test_yaml_list_or_names_key(tmp_path, text):
    pytest.importorskip("yaml", reason="YAML name lists need pyyaml")
    path = tmp_path / "data.yaml"
    path.write_text(text)
    names = read_names(path)
    assert names.names == ("helmet", "vest", "boot")
    assert names.category_ids == (0, 1, 2)


def test_missing_file_is_refused(tmp_path):
    with pytest.raises(FileNotFoundError, match="no such file"):
        read_names(tmp_path / "nope.txt")


@pytest.mark.parametrize(
    ("file", "content", "match"),
    [
        ("a.json", '{"images": []}', "no 'categories'"),
        ("a.json", "{not json", "not valid JSON"),
        ("a.json", '{"categories": [{"id": 1}]}', "integer 'id' and a 'name'"),
        ("a.json", '{"categories": [{"id": 1, "name": "a"}, {"id": 1, "name": "b"}]}', "category ids repeat"),
        ("a.txt", "\n\n", "no class names"),
        ("a.yaml", "names:\n  1: a\n  2: b\n", "keys 0..1"),
        ("a.yaml", "names: {a: 1}\nx: [1\n", "not valid YAML"),
        ("a.yaml", "names: 3\n", "expected a list"),
    ],
)
def test_malformed_sources_are_refused_in_one_line(tmp_path, file, content, match):
    if file.endswith(".yaml"):
        pytest.importorskip("yaml", reason="YAML name lists need pyyaml")
    path = tmp_path / file
    path.write_text(content)
    with pytest.raises(ValueError, match=match) as info:
        read_names(path)
    assert "\n" not in str(info.value)


def test_count_mismatch_names_both_counts():
    names = ClassNames(("a", "b", "c", "d", "e"), (1, 2, 3, 4, 5), "five.txt")
    with pytest.raises(ValueError, match=r"five.txt lists 5 classes, but the model m.pth has 80"):
        names.check_count(80, "m.pth")
    names.check_count(5, "m.pth")


def test_checkpoint_names_rules():
    custom = ClassNames(("x", "y"), (4, 9), "two.json")
    assert checkpoint_names(2, names=custom)[:2] == (("x", "y"), (4, 9))
    assert checkpoint_names(2, stored=(("p", "q"), (3, 8)))[:2] == (("p", "q"), (3, 8))
    # Names without ids (a transformers folder): COCO's names get COCO's ids, others the indices.
    assert checkpoint_names(80, stored=(COCO.names, ()))[:2] == (COCO.names, COCO.category_ids)
    assert checkpoint_names(2, stored=(("p", "q"), ()))[:2] == (("p", "q"), (0, 1))
    names, ids, words = checkpoint_names(80)
    assert (names[0], ids[0], names[-1], ids[-1]) == ("person", 1, "toothbrush", 90)
    assert "COCO" in words and "--names" in words
    assert checkpoint_names(3)[:2] == (("0", "1", "2"), (0, 1, 2))
