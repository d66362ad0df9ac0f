"""Shared fixtures: tiny random models (fast on a 2-core CPU) and strict JAX settings."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import jax
import jax.numpy as jnp
import pytest

from jaxviz.models import VGG, ShapesNet

jax.config.update("jax_numpy_rank_promotion", "raise")
# CLI runs turn on the persistent compilation cache: keep it out of the user's home during tests.
if "JAXVIZ_CACHE_DIR" not in os.environ:
    os.environ["JAXVIZ_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxviz-test-cache-")
    atexit.register(shutil.rmtree, os.environ["JAXVIZ_CACHE_DIR"], ignore_errors=True)


@pytest.fixture(scope="session")
def shapesnet():
    """A random ShapesNet and its params (the architecture of the embedded default)."""
    model = ShapesNet()
    params = model.init(jax.random.key(0), jnp.zeros((1, 64, 64, 3)))["params"]
    return model, params


@pytest.fixture(scope="session")
def tiny_vgg():
    """A VGG with one narrow conv per stage: VGG16's layer kinds and naming logic, much cheaper."""
    model = VGG(blocks=(1, 1, 1, 1, 1), widths=(8, 16, 16, 32, 32), hidden=64, num_classes=7)
    params = model.init(jax.random.key(1), jnp.zeros((1, 64, 64, 3)))["params"]
    return model, params


@pytest.fixture
def weights_dir(tmp_path, monkeypatch) -> Path:
    """A fresh, empty weights folder for this test (`JAXVIZ_WEIGHTS_DIR`)."""
    folder = tmp_path / "weights"
    folder.mkdir()
    monkeypatch.setenv("JAXVIZ_WEIGHTS_DIR", str(folder))
    return folder
