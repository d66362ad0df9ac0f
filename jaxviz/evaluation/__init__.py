"""Evaluation of attribution maps against ground truth: datasets with masks, seed 002's experiment.

- `datasets`: the shapes benchmark and COCO-format images with masks, class mapping, the size factor;
- `experiment`: config → resumable run writing one JSON record per (image, model, size, method);
- `summary`: tables (Markdown, CSV) and bar charts; `report` puts everything in one HTML page;
- `cli`: `jaxviz evaluate`, `jaxviz experiment run`, `jaxviz report`.
The metrics themselves live in `jaxviz.metrics`.
"""

from .datasets import (
    TARGET_RULES,
    Sample,
    class_candidates,
    coco_category_table,
    coco_class_table,
    coco_mask,
    coco_samples,
    load_class_table,
    load_samples,
    resize_sample,
    shapes_benchmark,
)
from .experiment import (
    DEFAULTS,
    SEED002_METHODS,
    load_config,
    read_records,
    run_experiment,
    validate_config,
)

__all__ = [
    "DEFAULTS",
    "SEED002_METHODS",
    "TARGET_RULES",
    "Sample",
    "class_candidates",
    "coco_category_table",
    "coco_class_table",
    "coco_mask",
    "coco_samples",
    "load_class_table",
    "load_config",
    "load_samples",
    "read_records",
    "resize_sample",
    "run_experiment",
    "shapes_benchmark",
    "validate_config",
]
