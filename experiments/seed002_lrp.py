"""Seed 002's study with LRP beside its five gradient methods: three of zennit's composites.

    jaxviz experiment run experiments/seed002_lrp.py --out runs/seed002_lrp

The same config as `seed002.py`, with three method variants added (`NAME:OPTION=VALUE`, for LRP
`lrp:COMPOSITE` for short; see `jaxviz.attribution.engine.variant`): each is `lrp` with that composite,
scored, tabulated and charted as a method of its own. epsilon_gamma_box takes its box (black and
white in model space) from each model's preprocessing.
"""

import runpy
from pathlib import Path

LRP = ["lrp:epsilon_plus_flat", "lrp:epsilon_gamma_box", "lrp:epsilon_alpha2_beta1_flat"]


def get_config() -> dict:
    config = runpy.run_path(str(Path(__file__).with_name("seed002.py")))["get_config"]()
    return {**config, "name": "seed002_lrp", "methods": config["methods"] + LRP}
