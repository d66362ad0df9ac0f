"""Seed 002's study: five gradient methods scored by energy concentration inside object masks.

    jaxviz experiment run experiments/seed002.py --out runs/seed002
    jaxviz report runs/seed002            # rebuild tables, charts and runs/seed002/report.html

Copy this file and edit `get_config()` for your own study. Keys (defaults in
`jaxviz.evaluation.experiment.DEFAULTS`):

- methods: any `jaxviz.attribution.METHODS` names, or variants `NAME:OPTION=VALUE` (e.g.
  `lrp:epsilon_gamma_box`, `grad_cam:layer=relu3_2`; see `seed002_lrp.py`); seed 002 used Backpropagation (`saliency`),
  Deconvolution (`deconvnet`), Guided Backpropagation, Grad-CAM and Guided Grad-CAM.
- models: architectures or weights names for `jaxviz.load` (`shapesnet`, `minivgg`; seed 002's
  `alexnet`, `resnet152`, `squeezenet1_0`, `vgg19` once ported with `jaxviz weights port`), `.safetensors`
  paths, or `ARCH:random` (fresh weights, e.g. `resnet152:random`, to try the protocol before porting).
  Each explains the ground-truth class of every image.
- sizes: `"original"` (the image as it is) and/or ints S (stretched to S×S, seed 002 used 224).
- data: the shapes benchmark `{"source": "shapes", "n", "size", "seed"}`, or COCO:
  `{"source": "coco", "images": "coco/val2017", "annotations": "coco/annotations/instances_val2017.json",
  "categories": ["traffic light", "stop sign", "zebra", "pizza", "teddy bear"], "per_category": 30, "seed": 0}`
  (ImageNet models get the ImageNet classes of each COCO category from `jaxviz/evaluation/coco_to_imagenet.tsv`).
- dilation: the mask grows by this fraction of the object's size (seed 002: about 20 %).
- pointing_tolerance: pointing-game tolerance in pixels of a 224-px image (scaled with the image).
- seed: per-image noise of sample-based methods; method_options: e.g. {"layer": "relu3_2"}.
- deletion_steps: > 0 adds deletion and insertion AUC (RISE) to every record; costs 2·(steps + 1)
  forward passes per map, so it is off here (16 is a reasonable value).
- channels: a pixel's energy, "energy" = Σ_c I_c² (seed 002's summed squares, default) or "sum" =
  (Σ_c I_c)² (signed channels summed first).
- targets / class_table: for ImageNet models on COCO, "category" explains the one ImageNet class named for
  the category (seed 002; `class_table` None = the shipped table, or your dict / .tsv / .json), "best" the
  best-scoring class that depicts it.
- method_options {"cam_norm": "minmax"}: Grad-CAM scaled as seed 002's code does it (− min, ÷ max).
- save_maps: keep every map as .npy and grayscale .png; chart_formats: ["png", "svg"] (also "pdf",
  "eps"); exp_json: also write seed 002's exp.json (records grouped by size).

`--set KEY=VALUE` overrides any key on the command line (`--set channels=sum`).
Seed 002's own protocol (COCO train2017, its four ImageNet CNNs) is `seed002_coco.py`.

The default (shapes benchmark, the two shapes models, 100 images × 5 methods × 2 models × 2 sizes =
2000 records) took 3 min 17 s on the shared 2-core CPU (see docs/readme_evaluation.md).
"""


def get_config() -> dict:
    return {
        "name": "seed002",
        "methods": ["saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam"],
        "models": ["shapesnet", "minivgg"],
        "sizes": ["original", 224],
        "data": {"source": "shapes", "n": 100, "size": 64, "seed": 0},
        "dilation": 0.2,
        "pointing_tolerance": 15,
        "seed": 0,
        "batch_size": 16,
        "method_options": {},
        "examples": 4,
        "deletion_steps": 0,
        "channels": "energy",
        "targets": "category",
        "class_table": None,
        "save_maps": False,
        "chart_formats": ["png", "svg"],
        "exp_json": False,
    }
