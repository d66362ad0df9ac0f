"""Files for a `Visualization`: a PNG grid, the images as `.npy`, JSON metadata, a loss-curve PNG.

`write(vis, out, stem)` writes `{stem}.png` (one cell per unit, titled with the unit and, for
classes and adversarial images, the model's probability for the target), `{stem}.npy`
(`(U, B, H, W, C)` float32 in [0, 1]), `{stem}.json` (preset, every hyperparameter, steps, loss
curves, reclassification) and `{stem}_loss.png`. Adversarial runs add original | perturbation |
adversarial rows, DeepDream photo | dream, style transfer content | style | result. All atomic.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np

from ..atomic import save_npy, write_text
from ..plot import pyplot, save_figure


def _rgb(img: np.ndarray) -> np.ndarray:
    img = np.clip(np.asarray(img, np.float32), 0, 1)
    return np.repeat(img, 3, axis=-1) if img.shape[-1] == 1 else img


def save_grid(
    path: str | Path,
    images: np.ndarray,
    titles: list[str] | None = None,
    cols: int | None = None,
    cell: float = 1.3,
    suptitle: str | None = None,
) -> Path:
    """`images` `(N, H, W, C)` in [0, 1] as a titled grid PNG (atomic)."""
    plt = pyplot()
    n = len(images)
    cols = cols or min(n, 8)
    rows = math.ceil(n / cols)
    top = 0.4 if suptitle else 0.05
    height = cell * rows + top + (0.35 * rows if titles else 0)
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, height), squeeze=False, layout="constrained")
    for i, ax in enumerate(axes.flat):
        ax.set_xticks([]), ax.set_yticks([])
        if i >= n:
            ax.axis("off")
            continue
        ax.imshow(_rgb(images[i]), interpolation="nearest" if images[i].shape[0] <= 64 else "antialiased")
        if titles:
            ax.set_title(titles[i], fontsize=7)
    if suptitle:
        fig.suptitle(suptitle, fontsize=9)
    return save_figure(fig, path, dpi=110)


def save_rows(path: str | Path, columns: dict[str, np.ndarray], row_titles: list[str], cell: float = 1.6) -> Path:
    """Rows = units, columns = named image stacks `(N, H, W, C)` (e.g. original | perturbation | adversarial)."""
    plt = pyplot()
    n, cols = len(row_titles), len(columns)
    fig, axes = plt.subplots(n, cols, figsize=(cell * cols, cell * n + 0.3), squeeze=False)
    for c, (title, stack) in enumerate(columns.items()):
        for r in range(n):
            ax = axes[r, c]
            ax.imshow(_rgb(stack[r]), interpolation="antialiased")
            ax.set_xticks([]), ax.set_yticks([])
            if r == 0:
                ax.set_title(title, fontsize=8)
            if c == 0:
                ax.set_ylabel(row_titles[r], fontsize=7)
    fig.tight_layout(pad=0.3)
    return save_figure(fig, path, dpi=110)


def save_losses(path: str | Path, losses: np.ndarray, labels: list[str], title: str) -> Path:
    """Loss curves `(U, steps)` (−objective), one line per unit (at most 16 labelled)."""
    plt = pyplot()
    fig, ax = plt.subplots(figsize=(5, 3))
    for i, curve in enumerate(np.asarray(losses)):
        ax.plot(curve, lw=0.8, label=labels[i] if i < 16 else None)
    ax.set_xlabel("step"), ax.set_ylabel("loss (−objective)"), ax.set_title(title, fontsize=9)
    if len(labels) <= 16:
        ax.legend(fontsize=5, ncol=2)
    fig.tight_layout()
    return save_figure(fig, path)


def _titles(vis) -> list[str]:
    rec = vis.extra.get("reclassification")
    if rec:
        return [f"{u}\np={r['target_probability']:.2f}" for u, r in zip(vis.units, rec)]
    return list(vis.units)


def _jsonable(obj):
    if isinstance(obj, dict):
        return {str(k): _jsonable(v) for k, v in obj.items() if not isinstance(v, np.ndarray) or v.ndim <= 2}
    if isinstance(obj, (list, tuple)):
        return [_jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    if isinstance(obj, (np.floating, np.integer, np.bool_)):
        return obj.item()
    return obj


def metadata(vis, files: dict) -> dict:
    """What the JSON holds: everything needed to redo and judge the run."""
    hp = {k: v for k, v in vis.hparams.items()}
    final_p = [r["target_probability"] for r in vis.extra.get("reclassification", [])]
    return _jsonable(
        {
            "kind": vis.kind,
            "preset": hp.get("preset"),
            "hparams": hp,
            "units": vis.units,
            "image_shape": list(vis.images.shape),
            "steps": int(vis.losses.shape[1]),
            "steps_run": vis.steps_run,
            "loss_start": vis.losses[:, 0] if vis.losses.shape[1] else [],
            "loss_end": vis.losses[:, -1] if vis.losses.shape[1] else [],
            "loss_curves": vis.losses.round(5),
            "final_target_probability": final_p or None,
            "files": files,
            **{
                k: v
                for k, v in vis.extra.items()
                if k not in ("originals", "perturbations", "photos", "content", "styles")
            },
        }
    )


def write(vis, out: str | Path, stem: str | None = None) -> dict:
    """Write the PNG grid, `.npy`, `.json` and loss curve for `vis` under `out`; returns the paths."""
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stem = stem or vis.kind
    files = {"png": str(out / f"{stem}.png"), "npy": str(out / f"{stem}.npy"), "json": str(out / f"{stem}.json")}
    u, b = vis.images.shape[:2]
    flat = vis.images.reshape(u * b, *vis.images.shape[2:])
    titles = _titles(vis) if b == 1 else [f"{t} [{j}]" for t in _titles(vis) for j in range(b)]
    title = f"{vis.kind}: preset {vis.hparams.get('preset')}" + (
        f", layer {vis.hparams['layer']}" if vis.hparams.get("layer") else ""
    )
    save_grid(files["png"], flat, titles, cols=b if b > 1 else None, suptitle=title)  # a row per unit
    save_npy(files["npy"], vis.images.astype(np.float32))
    if vis.losses.shape[1]:
        files["loss_png"] = str(out / f"{stem}_loss.png")
        save_losses(files["loss_png"], vis.losses, vis.units, title)
    if vis.kind == "adversarial":
        files["pairs_png"] = str(out / f"{stem}_pairs.png")
        pert = vis.extra["perturbations"]
        amp = 0.5 + pert / (2 * max(float(np.abs(pert).max()), 1e-8))
        rows = [
            f"{r['original_name']}→{r['predicted_name']}\np={r['target_probability']:.2f} L∞={r['linf_255']:.0f}/255"
            for r in vis.extra["reclassification"]
        ]
        save_rows(
            files["pairs_png"],
            {"original": vis.extra["originals"], "perturbation (amplified)": amp, "adversarial": vis.images[:, 0]},
            rows,
        )
        save_npy(out / f"{stem}_perturbation.npy", pert.astype(np.float32))
        files["perturbation_npy"] = str(out / f"{stem}_perturbation.npy")
    if vis.kind == "dream":
        files["pairs_png"] = str(out / f"{stem}_pairs.png")
        photos = vis.extra["photos"]
        reps = len(vis.units) // len(photos)
        save_rows(files["pairs_png"], {"photo": np.tile(photos, (reps, 1, 1, 1)), "dream": vis.images[:, 0]}, vis.units)
    if vis.kind == "style":
        files["pairs_png"] = str(out / f"{stem}_pairs.png")
        k = len(vis.units)
        save_rows(
            files["pairs_png"],
            {
                "content": np.repeat(vis.extra["content"][None], k, 0),
                "style": vis.extra["styles"],
                "result": vis.images[:, 0],
            },
            vis.units,
            cell=2.2,
        )
    write_text(files["json"], json.dumps(metadata(vis, files), indent=1))
    return files


__all__ = ["metadata", "save_grid", "save_losses", "save_rows", "write"]
