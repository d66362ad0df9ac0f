"""Nearest neighbours in pixel space vs a layer's feature space (Krizhevsky et al. 2012, fig. 4).

If a layer has learned what the classes are, an image's nearest neighbours in its feature
space share the image's label more often than its nearest neighbours in raw pixels.
`nearest_neighbours` is pure NumPy and chunked over queries; `layer_features` gives per-image
feature vectors (spatial outputs average-pooled over H, W); `neighbours_figure` draws both
and returns each space's label-agreement rate.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from ..data.preprocess import normalize


def nearest_neighbours(
    features_query: np.ndarray,
    features_db: np.ndarray,
    k: int,
    *,
    metric: str = "euclidean",
    normalize_features: bool = False,
    chunk: int = 256,
) -> tuple[np.ndarray, np.ndarray]:
    """The k nearest rows of `features_db` for each row of `features_query`.

    Args:
      features_query: `(Q, D)` float.
      features_db: `(N, D)` float.
      k: neighbours per query (at most N).
      metric: "euclidean" (distance) or "cosine" (1 − cosine similarity).
      normalize_features: L2-normalize rows before a euclidean search (then its order equals
        cosine's).
      chunk: queries per block, so memory stays `chunk × N` rather than `Q × N`.

    Returns:
      `(indices (Q, k) int, distances (Q, k) float32)`, nearest first; ties keep database order.
    """
    q = np.asarray(features_query, np.float64).reshape(len(features_query), -1)
    db = np.asarray(features_db, np.float64).reshape(len(features_db), -1)
    if q.shape[1] != db.shape[1]:
        raise ValueError(f"query features have {q.shape[1]} dims, database {db.shape[1]}")
    if metric not in ("euclidean", "cosine"):
        raise ValueError(f"metric must be 'euclidean' or 'cosine', got {metric!r}")
    k = min(int(k), len(db))
    if metric == "cosine" or normalize_features:
        q, db = _l2_normalize(q), _l2_normalize(db)
    db_sq = (db**2).sum(1)
    idx = np.empty((len(q), k), np.int64)
    dist = np.empty((len(q), k), np.float32)
    for s in range(0, len(q), chunk):
        block = q[s : s + chunk]
        if metric == "cosine":
            d = 1.0 - block @ db.T
        else:  # |a−b|² = |a|² − 2ab + |b|², clipped: rounding can make an exact copy slightly negative
            d = np.sqrt(np.maximum((block**2).sum(1, keepdims=True) - 2 * block @ db.T + db_sq, 0.0))
        order = np.argsort(d, axis=1, kind="stable")[:, :k]
        idx[s : s + chunk] = order
        dist[s : s + chunk] = np.take_along_axis(d, order, axis=1)
    return idx, dist


def model_input(lm, images: np.ndarray) -> np.ndarray:
    """Display-space images `(N, H, W, C)` in [0, 1] → the model's input space."""
    return normalize(np.asarray(images, np.float32), lm.preprocessing)


def layer_features(lm, images: np.ndarray, layer: str | int, *, batch: int = 256) -> np.ndarray:
    """One feature vector per image at `layer`: `(N, K)` float32, spatial outputs averaged over H, W.

    Args:
      lm: a `LoadedModel`.
      images: `(N, H, W, C)` display-space images in [0, 1].
      batch: images per forward pass.
    """
    from .extract import feature_fn

    fn = feature_fn(lm.model, [layer], pooled="mean")
    out = [
        np.asarray(fn(lm.variables, model_input(lm, images[s : s + batch]))[layer])
        for s in range(0, len(images), batch)
    ]
    return np.concatenate(out).reshape(len(images), -1).astype(np.float32)


def neighbours_figure(
    dataset,
    queries,
    layer_feats: np.ndarray | None,
    k: int,
    path: str | Path,
    lm=None,
    layer: str | int | None = None,
    *,
    metric: str = "euclidean",
    cell: float = 0.9,
) -> dict[str, float]:
    """Draw, for each query image, its k nearest dataset images in pixel space and in feature space.

    The query itself is excluded from its own neighbours. Two rows per query (pixels, then
    features); each neighbour's title is its class name with a green ✓ when its label equals
    the query's and a red ✗ when not.

    Args:
      dataset: a `Dataset` (images `(N, H, W, C)` in [0, 1], labels `(N,)`).
      queries: indices into the dataset of the images drawn.
      layer_feats: `(N, K)` features of every dataset image, or None to compute them with
        `layer_features(lm, dataset.images, layer)`.
      k: neighbours per query.
      path: the PNG to write.
      metric: "euclidean" or "cosine", for both spaces.

    Returns:
      `{"pixel": rate, "feature": rate}`: the fraction of the k neighbours sharing the query's
      label, over *every* dataset image used as a query (not just the drawn ones), so the numbers
      describe the space rather than the few queries drawn.
    """
    from ..plot import below_title, pyplot, save_figure

    if layer_feats is None:
        if lm is None or layer is None:
            raise ValueError("pass layer_feats, or lm and layer to compute them")
        layer_feats = layer_features(lm, dataset.images, layer)
    images, labels = np.asarray(dataset.images), np.asarray(dataset.labels)
    queries = np.atleast_1d(np.asarray(queries, np.int64))
    spaces = {"pixel": images.reshape(len(images), -1), "feature": np.asarray(layer_feats)}
    found, rates = {}, {}
    for space, feats in spaces.items():
        idx, _ = nearest_neighbours(feats, feats, k + 1, metric=metric)
        idx = _drop_self(idx, k)
        found[space] = idx
        known = labels >= 0
        rates[space] = float((labels[idx][known] == labels[known, None]).mean()) if known.any() else float("nan")

    plt = pyplot()
    rows, cols = 2 * len(queries), k + 1
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols + 0.4, cell * rows + 0.4), squeeze=False)
    gray = images.shape[-1] == 1
    names = dataset.classes
    for qi, q in enumerate(queries):
        for si, space in enumerate(spaces):
            r = 2 * qi + si
            cells = [q, *found[space][q]]
            for c, j in enumerate(cells):
                ax = axes[r, c]
                ax.imshow(images[j, ..., 0] if gray else images[j], cmap="gray" if gray else None, vmin=0, vmax=1)
                ax.set_xticks([]), ax.set_yticks([])
                name = names[labels[j]] if 0 <= labels[j] < len(names) else str(labels[j])
                if c == 0:
                    ax.set_title(name, fontsize=6, pad=1)
                    ax.set_ylabel(space, fontsize=7)
                    for s in ax.spines.values():
                        s.set_edgecolor("black"), s.set_linewidth(2)
                else:
                    same = labels[j] == labels[q]
                    colour = "green" if same else "red"
                    ax.set_title(f"{'✓' if same else '✗'} {name}", fontsize=6, pad=1, color=colour)
                    for s in ax.spines.values():
                        s.set_edgecolor(colour), s.set_linewidth(1.5)
    lname = lm.model.layer(layer).name if (lm is not None and layer is not None) else "features"
    fig.suptitle(
        f"{k} nearest neighbours: pixels (agree {rates['pixel']:.0%}) vs {lname} (agree {rates['feature']:.0%})",
        fontsize=8,
    )
    fig.tight_layout(pad=0.2, h_pad=0.3, w_pad=0.1, rect=below_title(fig, True))
    save_figure(fig, path)
    return rates


def _drop_self(idx: np.ndarray, k: int) -> np.ndarray:
    """Remove each row's own index (wherever ties put it) and keep k columns."""
    own = np.arange(len(idx))[:, None]
    keep = idx != own
    # rows where self did not appear (exact duplicates ranked first) drop their last column instead
    keep[keep.all(1), -1] = False
    return idx[keep].reshape(len(idx), -1)[:, :k]


def _l2_normalize(x: np.ndarray) -> np.ndarray:
    n = np.linalg.norm(x, axis=1, keepdims=True)
    return x / np.where(n > 0, n, 1.0)
