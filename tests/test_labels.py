"""ImageNet labels and custom class names: lookup by index, wnid or any synonym."""

import numpy as np
import pytest

from jaxviz.data.labels import Labels, imagenet_labels


@pytest.fixture(scope="module")
def labels():
    return imagenet_labels()


def test_thousand_classes_loaded_once(labels):
    assert len(labels) == 1000
    assert imagenet_labels() is labels
    assert labels.name(0) == "tench" and labels.wnid(999) == "n15075141"


def test_dragonfly_by_every_kind_of_query(labels):
    assert labels.name(319) == "dragonfly"
    assert labels.wnid(319) == "n02268443"
    for query in [
        "dragonfly",
        "n02268443",
        "319",
        319,
        np.int64(319),
        "Darning Needle",
        "  DRAGONFLY ",
        "snake_doctor",
    ]:
        assert labels.index(query) == 319, query


@pytest.mark.parametrize("name, ids", [("crane", (134, 517)), ("maillot", (638, 639))])
def test_ambiguous_names_list_candidates(labels, name, ids):
    with pytest.raises(ValueError, match="several") as info:
        labels.index(name)
    message = str(info.value)
    for i in ids:
        assert str(i) in message and labels.wnid(i) in message


def test_names_differing_only_in_case_are_ambiguous(labels):
    # 264 "Cardigan" (the corgi) and 474 "cardigan" (the sweater).
    with pytest.raises(ValueError, match="264.*474"):
        labels.index("cardigan")


def test_display_name_beats_synonym(labels):
    # "partridge" is 86's display name and a synonym of 82 (ruffed grouse).
    assert labels.index("partridge") == 86
    assert "partridge" in [s.lower() for s in labels.synonyms[82]]


def test_index_of_name_round_trips_when_display_name_unique(labels):
    keys = [name.casefold() for name in labels.names]
    for i, name in enumerate(labels.names):
        if keys.count(name.casefold()) == 1:
            assert labels.index(name) == i


def test_typo_suggests_close_match(labels):
    with pytest.raises(ValueError, match="dragonfly") as info:
        labels.index("dragonfyl")
    assert "319" in str(info.value)


def test_out_of_range_and_unknown_wnid(labels):
    with pytest.raises(ValueError, match="out of range"):
        labels.index(1000)
    with pytest.raises(ValueError, match="out of range"):
        labels.index("1000")
    with pytest.raises(ValueError, match="n00000000"):
        labels.index("n00000000")
    with pytest.raises(IndexError):
        labels.name(1000)


def test_from_names():
    shapes = Labels.from_names(["circle", "square", "Triangle"])
    assert len(shapes) == 3
    assert shapes.name(2) == "Triangle"
    assert shapes.index("triangle") == 2 and shapes.index("1") == 1
    assert shapes.names == ("circle", "square", "Triangle")
    with pytest.raises(ValueError, match="WordNet"):
        shapes.wnid(0)
    with pytest.raises(ValueError, match="circle"):
        shapes.index("circel")
    with pytest.raises(TypeError):
        Labels.from_names("circle")
