"""Seed 002's study as published: five gradient methods, four ImageNet CNNs, COCO objects, two sizes.

    jaxviz weights fetch alexnet-torchvision resnet152-torchvision squeezenet1_0-torchvision vgg19-torchvision
    jaxviz experiment run experiments/seed002_coco.py --set coco=/data/coco --out runs/seed002_coco

(`jaxviz weights port FILE.pth` instead of `fetch` for torchvision files you already have.) `coco` is
the folder holding `train2017/` and `annotations/instances_train2017.json` (default `./coco`).

What the seed did (chapters 4, 5 and 7), and where it is set here:
- data: `instances_train2017.json`, 30 images of each of 6 categories (180 images; its table has
  1 440 records per method = 180 × 4 CNNs × 2 sizes). The seed names one category, the traffic
  light ("semafor", figs. 7.1-7.5); the other five are ours, chosen as COCO categories with one
  ImageNet class of their own: stop sign, zebra, banana, pizza, teddy bear. Images per category
  are drawn with `seed`.
- models: torchvision's `alexnet`, `resnet152`, `squeezenet1_0` and `vgg19` with ImageNet weights
  (found by architecture in the weights folder).
- methods: Backpropagation (`saliency`), Deconvolution (`deconvnet`), Guided Backpropagation,
  Grad-CAM and Guided Grad-CAM, at each network's last convolutional block; Grad-CAM scaled as the
  seed's code does it (`cam_norm="minmax"`: ReLU, upsample, − min, ÷ max).
- targets: the one ImageNet class named for the object's category (`targets="category"`; the
  `class` column of `jaxviz/evaluation/coco_to_imagenet.tsv`, or your `class_table`).
- sizes: the photo as it is, and stretched to 224×224.
- score: energy concentration with E = Σ_{x,y} |I(x, y)|², |·|² the squared norm over channels
  (`channels="energy"`), inside the object's mask dilated by about 20 %.
- outputs: tables (also per category), charts as PNG, SVG and EPS (the seed wrote PNG and EPS),
  figure 7.8 (one image, rows = CNNs, columns = methods), `exp.json` grouped by size.
  `save_maps=True` (`--set save_maps=true`) also keeps every map as `.npy` and grayscale `.png`, as
  the seed did — about 3.7 MB per map at 640×480, some 26 GB for the 7 200 maps, so it is off here.

On a 2-core CPU expect hours: original-size photos come in many shapes, and each shape compiles
once per network. Batches group images of one shape.
"""

SEED002_CATEGORIES = ["traffic light", "stop sign", "zebra", "banana", "pizza", "teddy bear"]


def get_config(coco: str = "coco") -> dict:
    return {
        "name": "seed002_coco",
        "methods": ["saliency", "deconvnet", "guided_backprop", "grad_cam", "guided_grad_cam"],
        "models": ["alexnet", "resnet152", "squeezenet1_0", "vgg19"],
        "sizes": ["original", 224],
        "data": {
            "source": "coco",
            "images": f"{coco}/train2017",
            "annotations": f"{coco}/annotations/instances_train2017.json",
            "categories": SEED002_CATEGORIES,
            "per_category": 30,
            "seed": 0,
        },
        "dilation": 0.2,
        "pointing_tolerance": 15,
        "seed": 0,
        "batch_size": 8,
        "method_options": {"cam_norm": "minmax"},
        "examples": 4,
        "deletion_steps": 0,
        "channels": "energy",
        "targets": "category",
        "class_table": None,
        "save_maps": False,
        "chart_formats": ["png", "svg", "eps"],
        "exp_json": True,
    }
