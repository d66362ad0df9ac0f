"""What a conv layer looks for and what it responds with: filter grids and feature-map grids.

`filter_grid` draws a kernel `(kh, kw, in, out)`: RGB tiles for a first layer on colour images
(each filter min-max normalized on its own, as in Zeiler & Fergus 2014, fig. 2), grayscale tiles
for a one-channel first layer (LeNet), and otherwise one row per chosen input channel with a
diverging colormap centred on zero. `feature_maps` draws one image's activations at a layer.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np

from .. import taps
from ..core import LayerError, as_net
from ..plot import below_title, pyplot, save_figure
from ..taps import activations
from .neighbours import model_input


def filter_grid(
    kernel: np.ndarray,
    path: str | Path,
    *,
    title: str | None = None,
    in_channels: Sequence[int] | int = 8,
    cols: int | None = None,
    cell: float = 0.6,
) -> Path:
    """Write a PNG of a conv kernel's filters.

    Args:
      kernel: `(kh, kw, in, out)` float (Flax's conv kernel layout).
      path: the PNG to write (atomically).
      title: figure title.
      in_channels: for `in` not 1 or 3, the input channels drawn (one row each): a count
        (the first k) or explicit indices. Default the first 8.
      cols: tiles per row for the RGB / grayscale layouts; default about sqrt(out).
      cell: inches per tile.
    """
    k = np.asarray(kernel, np.float32)
    if k.ndim != 4:
        raise ValueError(f"filter_grid expects a conv kernel (kh, kw, in, out), got shape {k.shape}")
    kh, kw, cin, cout = k.shape
    plt = pyplot()
    if cin in (1, 3):
        tiles = np.moveaxis(k, 3, 0)  # (out, kh, kw, in)
        lo = tiles.reshape(cout, -1).min(1).reshape(-1, 1, 1, 1)
        hi = tiles.reshape(cout, -1).max(1).reshape(-1, 1, 1, 1)
        tiles = (tiles - lo) / np.where(hi > lo, hi - lo, 1.0)
        cols = cols or int(np.ceil(np.sqrt(cout)))
        rows = int(np.ceil(cout / cols))
        fig, axes = plt.subplots(
            rows, cols, figsize=(cell * cols, cell * rows + (0.4 if title else 0.1)), squeeze=False
        )
        for i, ax in enumerate(axes.flat):
            ax.set_axis_off()
            if i < cout:
                img = tiles[i, ..., 0] if cin == 1 else tiles[i]
                ax.imshow(img, cmap="gray" if cin == 1 else None, vmin=0, vmax=1, interpolation="nearest")
    else:
        chosen = (
            list(range(min(in_channels, cin)))
            if isinstance(in_channels, (int, np.integer))
            else [int(c) for c in in_channels]
        )
        bad = [c for c in chosen if not 0 <= c < cin]
        if bad:
            raise ValueError(f"in_channels {bad} out of range: the kernel has {cin} input channels")
        vmax = float(np.abs(k[:, :, chosen, :]).max()) or 1.0
        fig, axes = plt.subplots(
            len(chosen), cout, figsize=(cell * cout + 0.6, cell * len(chosen) + (0.4 if title else 0.1)), squeeze=False
        )
        for r, c in enumerate(chosen):
            for j in range(cout):
                ax = axes[r, j]
                ax.imshow(k[:, :, c, j], cmap="RdBu_r", vmin=-vmax, vmax=vmax, interpolation="nearest")
                ax.set_xticks([]), ax.set_yticks([])
                for s in ax.spines.values():
                    s.set_visible(False)
            axes[r, 0].set_ylabel(f"in {c}", fontsize=6, rotation=0, ha="right", va="center")
    if title:
        fig.suptitle(title, fontsize=9)
    fig.tight_layout(pad=0.2, h_pad=0.1, w_pad=0.1, rect=below_title(fig, title))
    return save_figure(fig, path)


def conv_layers(lm) -> list[str]:
    """Module paths of a loaded model's conv layers, in order."""
    return taps.conv_layers(lm.model, lm.variables, lm.input_shape)


def layer_filters(lm, layer: str | int, path: str | Path, **kwargs) -> Path:
    """`filter_grid` of a loaded model's conv layer (by name, alias or index).

    Raises:
      LayerError: the layer is unknown or not a conv layer; the message lists the conv layers.
    """
    convs = conv_layers(lm)
    net = as_net(lm.model)
    name = convs[layer] if isinstance(layer, int) else net.resolve(layer)
    if name not in convs:
        raise LayerError(
            f"layer {layer!r} is not a conv layer of {lm.arch} (or does not exist); conv layers: {', '.join(convs)}"
        )
    kwargs.setdefault("title", f"{lm.arch} {name} filters")
    return filter_grid(np.asarray(taps.param_at(lm.variables, name)["kernel"]), path, **kwargs)


def feature_maps(
    lm,
    image: np.ndarray,
    layer: str | int,
    path: str | Path,
    *,
    max_maps: int = 64,
    cols: int | None = None,
    cell: float = 0.9,
) -> Path:
    """Write a PNG of one image's activations at `layer`: the input first, then one tile per channel.

    Args:
      lm: a `LoadedModel`.
      image: `(H, W, C)` display-space image in [0, 1].
      layer: a layer with spatial output `(N, h, w, K)`.
      max_maps: draw at most the first this many channels.
    """
    image = np.asarray(image, np.float32)
    a = np.asarray(activations(lm.model, lm.variables, model_input(lm, image[None]), [layer])[layer])[0]
    if a.ndim != 3:
        raise ValueError(f"layer {layer!r} output has shape {a.shape}; feature maps need a spatial (h, w, K) layer")
    maps = np.moveaxis(a[..., :max_maps], -1, 0)
    n = 1 + len(maps)
    cols = cols or int(np.ceil(np.sqrt(n)))
    rows = int(np.ceil(n / cols))
    plt = pyplot()
    fig, axes = plt.subplots(rows, cols, figsize=(cell * cols, cell * rows + 0.3), squeeze=False)
    for i, ax in enumerate(axes.flat):
        ax.set_axis_off()
        if i == 0:
            ax.imshow(image[..., 0] if image.shape[-1] == 1 else image, cmap="gray", vmin=0, vmax=1)
            ax.set_title("input", fontsize=6, pad=1)
        elif i < n:
            m = maps[i - 1]
            ax.imshow(
                m,
                cmap="gray",
                vmin=float(m.min()),
                vmax=max(float(m.max()), float(m.min()) + 1e-8),
                interpolation="nearest",
            )
            ax.set_title(str(i - 1), fontsize=6, pad=1)
    name = lm.model.layer(layer).name
    fig.suptitle(
        f"{lm.arch} {name}: {a.shape[-1]} maps of {a.shape[0]}x{a.shape[1]}"
        + (f" (first {max_maps})" if a.shape[-1] > max_maps else ""),
        fontsize=8,
    )
    fig.tight_layout(pad=0.2, h_pad=0.2, w_pad=0.1, rect=below_title(fig, True))
    return save_figure(fig, path)
