"""Metrics for attribution maps: pure, batched, arrays in (NumPy or JAX) → NumPy arrays out.

- `energy_concentration`, `dilate_masks` — seed 002's energy inside the dilated object mask;
- `pointing_game` — Zhang et al. 2016;
- `map_boxes`, `localization` — boxes from a thresholded CAM, IoU, top-1 and GT-known
  localization error (Zhou et al. 2016);
- `deletion_insertion` — RISE deletion/insertion curves and AUC (Petsiuk et al. 2018);
- `cascading_randomization`, `random_input_check` — model randomization sanity checks
  (Adebayo et al. 2018), with `spearman` and `ssim` to compare maps;
- `deviation`, `map_deviation` — what a throughput mode (bfloat16, lower matmul precision) costs.

Every metric takes maps as arrays, so maps from a new backward rule (`jaxviz.rules.relu_rule`)
are scored with the same code as the built-in methods.
"""

from .deletion import CurveResult, auc, deletion_insertion, make_baseline, pixel_order
from .energy import (
    CHANNELS,
    EnergyResult,
    channel_sum,
    dilate_masks,
    dilation_radius,
    energy_concentration,
    pixel_energy,
)
from .localization import Localization, box_iou, localization, map_box, map_boxes, mask_box
from .pointing import map_maxima, pointing_game
from .precision import deviation, map_deviation
from .sanity import (
    SanityResult,
    cascading_randomization,
    compare_maps,
    comparison_views,
    plot_randomization_maps,
    plot_similarity_bars,
    plot_similarity_curves,
    random_input_check,
    randomization_order,
    randomize_params,
    records,
    summary,
    to_json,
)
from .similarity import rank_average, spearman, ssim

__all__ = [
    "auc",
    "box_iou",
    "cascading_randomization",
    "channel_sum",
    "CHANNELS",
    "compare_maps",
    "comparison_views",
    "CurveResult",
    "deletion_insertion",
    "dilate_masks",
    "dilation_radius",
    "energy_concentration",
    "EnergyResult",
    "Localization",
    "localization",
    "make_baseline",
    "map_box",
    "map_boxes",
    "mask_box",
    "map_maxima",
    "pixel_energy",
    "pixel_order",
    "plot_randomization_maps",
    "plot_similarity_bars",
    "plot_similarity_curves",
    "pointing_game",
    "random_input_check",
    "randomization_order",
    "randomize_params",
    "rank_average",
    "records",
    "SanityResult",
    "spearman",
    "ssim",
    "summary",
    "to_json",
    "deviation",
    "map_deviation",
]
