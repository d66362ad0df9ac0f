"""Evaluation datasets (shapes, COCO polygons/RLE), class mapping, `jaxviz evaluate` on attribution runs."""

import json

import numpy as np
import pytest
from PIL import Image

from jaxviz.data import shapes
from jaxviz.data.labels import Labels, imagenet_labels
from jaxviz.evaluation import (
    class_candidates,
    coco_category_table,
    coco_class_table,
    coco_samples,
    load_class_table,
    resize_sample,
    shapes_benchmark,
)
from jaxviz.evaluation.attribution_run import evaluate_attribution_run, mask_to_map

mask_api = pytest.importorskip("pycocotools.mask")


def _rle_json(mask: np.ndarray) -> dict:
    rle = mask_api.encode(np.asfortranarray(mask.astype(np.uint8)))
    return {"size": rle["size"], "counts": rle["counts"].decode("ascii")}


def _uncompressed_rle(mask: np.ndarray) -> dict:
    """COCO's crowd format: run lengths of 0s then 1s, column-major."""
    flat = mask.astype(np.uint8).flatten(order="F")
    counts, current, run = [], 0, 0
    for v in flat:
        if v != current:
            counts.append(run)
            current, run = v, 0
        run += 1
    counts.append(run)
    return {"size": list(mask.shape), "counts": counts}


def write_coco(folder, names=("a.png", "b.png", "c.png"), size=(40, 48)):
    """Three images with known masks: polygon square (star), compressed RLE (square, and a second
    'star' instance in b), uncompressed crowd RLE (traffic light). Returns (annotation path, masks)."""
    h, w = size
    rng = np.random.default_rng(0)
    expected = {}
    poly = np.zeros((h, w), bool)
    poly[8:20, 10:30] = True  # the polygon (10,8)-(30,20), pixel corners
    blob = np.zeros((h, w), bool)
    blob[5:30, 5:15] = True
    blob[25:35, 15:40] = True  # an L shape as compressed RLE
    crowd = np.zeros((h, w), bool)
    crowd[::3, 20:] = True  # stripes as uncompressed RLE
    images, anns = [], []
    for i, name in enumerate(names):
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        Image.fromarray((rng.random((h, w, 3)) * 255).astype(np.uint8)).save(path)
        images.append({"id": i + 1, "file_name": name, "height": h, "width": w})
    anns.append(
        {
            "id": 1,
            "image_id": 1,
            "category_id": 4,
            "iscrowd": 0,
            "area": 240.0,
            "bbox": [10, 8, 20, 12],
            "segmentation": [[10, 8, 30, 8, 30, 20, 10, 20]],
        }
    )
    anns.append(
        {
            "id": 2,
            "image_id": 2,
            "category_id": 2,
            "iscrowd": 0,
            "area": float(blob.sum()),
            "bbox": [5, 5, 35, 30],
            "segmentation": _rle_json(blob),
        }
    )
    anns.append(
        {
            "id": 3,
            "image_id": 2,
            "category_id": 4,
            "iscrowd": 0,
            "area": 12.0,
            "bbox": [40, 2, 3, 4],
            "segmentation": _rle_json(_box(h, w, 2, 6, 40, 43)),
        }
    )
    anns.append(
        {
            "id": 4,
            "image_id": 3,
            "category_id": 10,
            "iscrowd": 1,
            "area": float(crowd.sum()),
            "bbox": [20, 0, 28, 40],
            "segmentation": _uncompressed_rle(crowd),
        }
    )
    cats = [{"id": 2, "name": "square"}, {"id": 4, "name": "star"}, {"id": 10, "name": "traffic light"}]
    path = folder / "instances.json"
    path.write_text(json.dumps({"images": images, "annotations": anns, "categories": cats}))
    expected = {
        (names[0], "star"): poly,
        (names[1], "square"): blob,
        (names[1], "star"): _box(h, w, 2, 6, 40, 43),
        (names[2], "traffic light"): crowd,
    }
    return path, expected


def _box(h, w, y0, y1, x0, x1):
    m = np.zeros((h, w), bool)
    m[y0:y1, x0:x1] = True
    return m


def test_coco_polygon_rle_and_crowd_masks(tmp_path):
    ann, expected = write_coco(tmp_path)
    samples = coco_samples(tmp_path, ann)
    got = {(s.image, s.category): s for s in samples}
    assert set(got) == set(expected)
    for key, want in expected.items():
        img, mask = got[key].load()
        assert img.shape == (40, 48, 3) and mask.shape == (40, 48) and mask.dtype == bool
        if key[1] == "star" and key[0] == "a.png":  # polygon: pycocotools rasterizes the pixel grid
            inter, union = (mask & want).sum(), (mask | want).sum()
            assert inter / union > 0.85 and mask[10:18, 12:28].all() and not mask[25:, :].any()
        else:  # RLE (compressed and uncompressed) is exact
            np.testing.assert_array_equal(mask, want)


def test_coco_category_filter_per_category_and_errors(tmp_path):
    ann, _ = write_coco(tmp_path)
    stars = coco_samples(tmp_path, ann, categories=["star"])
    assert [s.image for s in stars] == ["a.png", "b.png"]
    one = coco_samples(tmp_path, ann, categories=["star"], per_category=1, seed=3)
    assert len(one) == 1 and one == coco_samples(tmp_path, ann, categories=["star"], per_category=1, seed=3)
    assert [s.image for s in coco_samples(tmp_path, ann, categories=["star"], min_area=100)] == ["a.png"]
    with pytest.raises(ValueError, match="giraffe.*square"):
        coco_samples(tmp_path, ann, categories=["giraffe"])
    with pytest.raises(FileNotFoundError, match="nothere"):
        coco_samples(tmp_path, tmp_path / "nothere.json")
    (tmp_path / "a.png").unlink()
    with pytest.raises(FileNotFoundError, match="a.png"):
        coco_samples(tmp_path, ann, categories=["star"])[0].load()


def test_category_mapping(tmp_path):
    table = coco_category_table()
    labels = imagenet_labels()
    assert class_candidates("traffic light", labels) == (920,) and labels.name(920) == "traffic light"
    # seed 002's rule (default): the one class named for the category; "best": every class that depicts it
    assert class_candidates("dog", labels) == (207,) and labels.name(207) == "golden retriever"
    dogs = class_candidates("dog", labels, "best")
    assert len(dogs) == 118 and labels.name(dogs[0]) == "Chihuahua"
    one = coco_class_table()
    assert set(one) == set(table) and all(one[c] in table[c] for c in table)
    assert class_candidates("zebra", labels) == (340,) == class_candidates("zebra", labels, "best")
    assert class_candidates("person", labels) == ()  # no ImageNet class for people
    assert all(0 <= i < 1000 for v in table.values() for i in v) and len(table) >= 50
    shapes_labels = Labels.from_names(shapes.CLASSES)
    assert class_candidates("star", shapes_labels) == (shapes.CLASSES.index("star"),)
    assert class_candidates("traffic light", shapes_labels) == ()  # only ImageNet models use the table
    # a user's table: by index or by name, as a dict, a two-column TSV or JSON
    (tmp_path / "t.tsv").write_text("# mine\ndog\tbeagle\ncat\t283\n")
    (tmp_path / "t.json").write_text('{"dog": "beagle", "cat": 283}')
    for spec in ({"dog": "beagle", "cat": 283}, tmp_path / "t.tsv", tmp_path / "t.json"):
        mine = load_class_table(spec)
        assert class_candidates("dog", labels, table=mine) == (162,) and class_candidates(
            "cat", labels, table=mine
        ) == (283,)
        assert class_candidates("elephant", labels, table=mine) == ()  # not in the user's table
    assert load_class_table(None) == one
    with pytest.raises(ValueError, match="'dog' -> 'wolfhound x'"):
        class_candidates("dog", labels, table={"dog": "wolfhound x"})
    with pytest.raises(ValueError, match="targets must be one of category, best"):
        class_candidates("dog", labels, "first")
    (tmp_path / "bad.tsv").write_text("dog beagle\n")
    with pytest.raises(ValueError, match="bad.tsv line 1"):
        load_class_table(tmp_path / "bad.tsv")


def test_shapes_benchmark_is_reproducible_and_masks_match():
    a, b = shapes_benchmark(5, size=32, seed=4), shapes_benchmark(5, size=32, seed=4)
    assert [s.key for s in a] == [s.key for s in b] and len({s.key for s in a}) == 5
    data = shapes.generate(5, size=32, seed=4)
    for i, (sa, sb) in enumerate(zip(a, b)):
        img, mask = sa.load()
        np.testing.assert_array_equal(img, sb.load()[0])
        np.testing.assert_array_equal(mask, data.masks[i])
        assert sa.category == shapes.CLASSES[data.labels[i]]


def test_resize_sample_keeps_the_object():
    img = np.zeros((30, 60, 3), np.float32)
    mask = np.zeros((30, 60), bool)
    mask[10:20, 0:30] = True  # left half, middle third of rows
    same = resize_sample(img, mask, "original")
    assert same[1] is mask
    r_img, r_mask = resize_sample(img, mask, 90)
    assert r_img.shape == (90, 90, 3) and r_mask.shape == (90, 90)
    assert abs(r_mask.mean() - mask.mean()) < 0.02 and r_mask[45, 20] and not r_mask[45, 70]


def test_mask_to_map_geometry():
    mask = np.zeros((300, 200), bool)
    mask[:, :100] = True  # left half
    stretched = mask_to_map(mask, (50, 50))
    assert stretched[:, :25].all() and not stretched[:, 25:].any()
    cropped = mask_to_map(mask, (224, 224), "torchvision")  # resize to 256x384, crop 224 in the middle
    assert cropped.shape == (224, 224) and cropped[:, :100].all() and not cropped[:, 120:].any()


def _attribution_run(tmp_path, maps: dict, image_names):
    """A folder shaped like `jaxviz attribute --out`: results.jsonl and npy maps."""
    out = tmp_path / "attr"
    lines = []
    for (name, method), m in maps.items():
        stem = name.rsplit(".", 1)[0]
        (out / method).mkdir(parents=True, exist_ok=True)
        np.save(out / method / f"{stem}.npy", m)
        lines.append(
            {
                "image": str(tmp_path / name),
                "resolved": str(tmp_path / name),
                "stem": stem,
                "model": "m",
                "method": method,
                "class": 920,
                "class_name": "traffic light",
                "files": {"npy": f"{method}/{stem}.npy", "png": f"{method}/{stem}.png"},
            }
        )
    (out / "results.jsonl").write_text("".join(json.dumps(x) + "\n" for x in lines) + '{"torn')
    return out


def test_evaluate_attribution_run_with_mask_folder_and_coco(tmp_path):
    ann, expected = write_coco(tmp_path)
    crowd = expected[("c.png", "traffic light")]
    inside = np.where(crowd, 1.0, 0.0).astype(np.float32)[..., None] * np.ones(3, np.float32)
    uniform = np.ones((40, 48), np.float32)
    out = _attribution_run(
        tmp_path,
        {("c.png", "inside"): inside, ("c.png", "uniform"): uniform, ("a.png", "uniform"): uniform},
        ["a.png", "c.png"],
    )
    masks = tmp_path / "masks"
    masks.mkdir()
    Image.fromarray(crowd.astype(np.uint8) * 255).save(masks / "c.png")
    res = evaluate_attribution_run(out, masks=masks, dilation=0.0, progress=False)
    by = {(r["stem"], r["method"]): r for r in res["records"]}
    assert by[("c", "inside")]["P"] == pytest.approx(1.0) and by[("c", "inside")]["pointing"]
    assert by[("c", "uniform")]["P"] == pytest.approx(crowd.mean())  # uniform map: P = mask area share
    assert [s[:2] for s in res["skipped"]] == [(str(tmp_path / "a.png"), "uniform")]  # no a.png mask
    assert (out / "evaluation.jsonl").read_text().count("\n") == 2 and (out / "evaluation" / "method.md").exists()

    res = evaluate_attribution_run(out, coco=ann, dilation=0.0, progress=False)  # class 920 = traffic light
    by = {(r["stem"], r["method"]): r for r in res["records"]}
    assert by[("c", "inside")]["P"] == pytest.approx(1.0)
    assert "no annotated object" in res["skipped"][0][2]  # a.png holds only a star
    with pytest.raises(ValueError, match="exactly one"):
        evaluate_attribution_run(out, progress=False)
