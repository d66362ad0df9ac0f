"""Shared fixtures: tiny random models (fast on a 2-core CPU) and strict JAX settings."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

import pytest

# Tests compile hundreds of small programs and run each a few times: XLA:CPU's LLVM back end at -O0
# compiles them 2-2.5x faster (the user-network matrix: 80 s -> 35 s; LeNet training 22 s -> 10 s)
# and runs the heavy convolutions at the same speed (library calls, not generated code); the programs
# compute the same operations. Set before JAX starts a backend; CLI subprocesses inherit it.
# JAXVIZ_TEST_XLA_OPT=2 runs the suite with XLA's default (what users get).
_OPT = os.environ.get("JAXVIZ_TEST_XLA_OPT", "0")
if "xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = f"{os.environ.get('XLA_FLAGS', '')} --xla_backend_optimization_level={_OPT}".strip()

import jax  # noqa: E402  (after XLA_FLAGS)
import jax.numpy as jnp  # noqa: E402

from jaxviz.job import enable_compilation_cache  # noqa: E402
from jaxviz.models import VGG, ShapesNet  # noqa: E402

jax.config.update("jax_numpy_rank_promotion", "raise")
# One persistent compilation cache per test session, out of the user's home and removed at exit: the
# session writes every program it compiles there, and the CLI subprocesses it starts (which inherit
# JAXVIZ_CACHE_DIR) load them instead of compiling again. pytest-xdist workers inherit the folder of
# the process that started them.
if "JAXVIZ_CACHE_DIR" not in os.environ:
    os.environ["JAXVIZ_CACHE_DIR"] = tempfile.mkdtemp(prefix="jaxviz-test-cache-")
    atexit.register(shutil.rmtree, os.environ["JAXVIZ_CACHE_DIR"], ignore_errors=True)
enable_compilation_cache()  # $JAXVIZ_CACHE_DIR/xla, where the CLI looks by default


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
