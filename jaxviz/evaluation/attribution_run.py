"""Score the maps of a `jaxviz attribute` run against ground-truth masks (`jaxviz evaluate OUT ...`).

`jaxviz attribute` writes `out/results.jsonl` (`results.p<i>.jsonl` per process; fields image, stem,
model, method, class, class_name, and files {npy, png} relative to `out` or the map's place in the store).
`evaluate_attribution_run(out, masks=... | coco=...)`
reads each map, finds the object's mask, brings it to the map's geometry and writes

    out/evaluation.jsonl          one line per (image, method): P, E, E_total, pointing, channels
    out/evaluation/method.{md,csv}        mean P per method (and method × model)

Masks come from either
- a folder of mask PNGs: `<stem>.png` (the run's output stem, e.g. `a/cat.png` for `a/cat.jpg`) or
  `<image file stem>.png`; a pixel is on the object where the mask's gray value is ≥ 128; or
- a COCO annotation file: the image is matched by file name; the mask is the union of the objects
  whose category is the record's class (same name, or for ImageNet classes a COCO category whose
  `coco_to_imagenet.tsv` entry holds it).
Geometry: `jaxviz attribute` feeds "centered"/"unit" models the image stretched to the model's
size, and "torchvision"/"caffe" models a resize (shorter side 256) and a 224 center crop; pass the
same `preprocessing` so the mask goes through the same steps (`stretch` for the first kind).
Records without a mask are listed in the result's `skipped` with the reason.
"""

from __future__ import annotations

import functools
import json
import os
from pathlib import Path

import numpy as np
from PIL import Image

from ..atomic import write_text
from ..data.preprocess import get_preprocessing, resize_and_crop
from ..ledger import RESULTS, RESULTS_GLOB
from ..ledger import read as read_jsonl
from ..store import MapReader
from .datasets import coco_category_table, coco_mask, load_coco

__all__ = ["evaluate_attribution_run", "mask_to_map"]

OUTPUT = "evaluation.jsonl"


def mask_to_map(mask: np.ndarray, hw: tuple[int, int], preprocessing: str = "stretch") -> np.ndarray:
    """An image's `(H0, W0)` bool mask in the geometry of a map `(H, W)` made from that image.

    `stretch`: resized to (H, W); a preset name with a crop ("torchvision", "caffe"): its resize and
    center crop, as `jaxviz attribute` applies to the image. Masks are resized as coverage, kept ≥ 0.5.
    """
    cover = mask.astype(np.float32)[..., None]
    if preprocessing != "stretch":
        pp = get_preprocessing(preprocessing)
        if pp.crop is not None:
            cover = resize_and_crop(cover, pp.resize, pp.crop)
    if cover.shape[:2] != tuple(hw):
        cover = np.asarray(
            Image.fromarray(np.ascontiguousarray(cover[..., 0])).resize((hw[1], hw[0]), Image.Resampling.BILINEAR)
        )[..., None]
    return cover[..., 0] >= 0.5


def _read_results(out: Path) -> list[dict]:
    """The latest record per (image, method) of every process's ledger (a torn last line is skipped)."""
    ledgers = sorted(out.glob(RESULTS_GLOB))
    if not ledgers:
        raise FileNotFoundError(
            f"{out / RESULTS} not found: point `jaxviz evaluate` at the --out folder of `jaxviz attribute`"
        )
    latest: dict[tuple, dict] = {}
    for path in ledgers:
        for r in read_jsonl(path):
            if ("files" in r or "store" in r) and "class" in r:
                latest[(r.get("resolved", r["image"]), r["method"])] = r
    return list(latest.values())


def _folder_mask(folder: Path, record: dict) -> np.ndarray | None:
    for candidate in (folder / f"{record['stem']}.png", folder / f"{Path(record['image']).stem}.png"):
        if candidate.is_file():
            return np.asarray(Image.open(candidate).convert("L")) >= 128
    return None


class _CocoMasks:
    """Masks of a COCO file by image file name and model class."""

    def __init__(self, path: Path):
        if not path.is_file():
            raise FileNotFoundError(f"COCO annotation file {path} not found")
        self.coco = load_coco(str(path.resolve()), path.stat().st_mtime)
        self.by_name = {Path(info["file_name"]).name: i for i, info in self.coco.imgs.items()}
        self.cats = {c["id"]: c["name"] for c in self.coco.loadCats(self.coco.getCatIds())}

    def __call__(self, record: dict) -> np.ndarray | str:
        image_id = self.by_name.get(Path(record["image"]).name)
        if image_id is None:
            return "image not in the COCO file"
        present = {a["category_id"] for a in self.coco.loadAnns(self.coco.getAnnIds(imgIds=[image_id], iscrowd=None))}
        table = coco_category_table()
        name = str(record.get("class_name", "")).lower()
        wanted = [c for c in present if self.cats[c].lower() == name or record["class"] in table.get(self.cats[c], ())]
        if not wanted:
            return f"no annotated object of class {record.get('class_name', record['class'])!r}"
        mask = coco_mask(self.coco, image_id, wanted[0])
        for c in wanted[1:]:
            mask |= coco_mask(self.coco, image_id, c)
        return mask


def evaluate_attribution_run(
    out: str | os.PathLike[str],
    *,
    masks: str | os.PathLike[str] | None = None,
    coco: str | os.PathLike[str] | None = None,
    dilation: float = 0.2,
    tolerance: float = 15,
    preprocessing: str = "stretch",
    channels: str = "energy",
    progress: bool = True,
) -> dict:
    """Energy concentration and pointing game of every map of an attribution run.

    Args:
      out: the `jaxviz attribute --out` folder.
      masks / coco: a folder of mask PNGs, or a COCO annotation file (exactly one).
      dilation: mask dilation, fraction of the object's size (seed 002: 0.2).
      tolerance: pointing-game tolerance in pixels of the map.
      preprocessing: "stretch" or the preset the run used ("torchvision", "caffe"); see module doc.
      channels: a pixel's energy, "energy" (Σ_c I_c², seed 002) or "sum" ((Σ_c I_c)²); `metrics.CHANNELS`.

    Returns:
      `{"records": [...], "skipped": [(image, method, reason)], "tables": {...}}`; also written to
      `out/evaluation.jsonl` and `out/evaluation/`.
    """
    from tqdm import tqdm

    from ..metrics import CHANNELS, energy_concentration, pointing_game
    from .summary import format_csv, format_markdown, summarize

    if channels not in CHANNELS:
        raise ValueError(f"channels must be one of {', '.join(CHANNELS)}, got {channels!r}")
    if (masks is None) == (coco is None):
        raise ValueError("give exactly one of masks (a folder of mask PNGs) or coco (an annotation file)")
    out = Path(out)
    results = _read_results(out)
    if masks is not None and not Path(masks).is_dir():
        raise FileNotFoundError(f"masks folder {masks} not found")
    find = functools.partial(_folder_mask, Path(masks)) if masks is not None else _CocoMasks(Path(coco))
    records, skipped, read = [], [], MapReader(out)
    for r in tqdm(results, unit="map", desc="evaluate", disable=not progress):
        mask = find(r)
        if mask is None or isinstance(mask, str):
            skipped.append((r["image"], r["method"], mask or "no mask PNG for it"))
            continue
        m = read(r)
        mk = mask_to_map(mask, m.shape[:2], preprocessing)[None]
        e = energy_concentration(m[None], mk, dilation=dilation, channels=channels)
        hit = pointing_game(m[None], mk, tolerance=tolerance, channels=channels)
        records.append(
            {
                "image": r["image"],
                "resolved": r.get("resolved", r["image"]),
                "stem": r.get("stem"),
                "model": r["model"],
                "method": r["method"],
                "class": r["class"],
                "class_name": r.get("class_name"),
                "P": float(e.P[0]),
                "E": float(e.E[0]),
                "E_total": float(e.E_total[0]),
                "pointing": bool(hit[0]),
                "channels": channels,
            }
        )
    write_text(out / OUTPUT, "".join(json.dumps(x, sort_keys=True) + "\n" for x in records))
    tables = {}
    if records:
        for name, by in (("method", ("method",)), ("method_model", ("method", "model"))):
            tables[name] = summarize(records, by)
            write_text(out / "evaluation" / f"{name}.md", format_markdown(tables[name]))
            write_text(out / "evaluation" / f"{name}.csv", format_csv(tables[name]))
    return {"records": records, "skipped": skipped, "tables": tables}
