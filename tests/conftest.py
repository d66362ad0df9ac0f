"""Shared fixtures: tiny random models (fast on a 2-core CPU) and strict JAX settings."""

import atexit
import os
import shutil
import tempfile
from pathlib import Path

# Tests compile hundreds of programs and run most of them once on tiny inputs: with XLA's back-end
# optimization level 0 (LLVM -O0, JAX's `jax_disable_most_optimizations`) they compile 2-2.5x faster
# (test_any_model's user-network matrix 80 s -> 35 s, LeNet training 22 s -> 10 s). Tests that run
# real-size or float64 programs at length are slower unoptimized (zennit parity in float64:
# 155 s -> 281 s) and are marked `optimized`: they compile as users' programs do. The programs compute
# the same operations either way. Set in the environment before JAX is imported, so the CLI
# subprocesses tests start inherit it; JAXVIZ_TEST_FAST_COMPILE=0 compiles everything with XLA's
# defaults.
FAST_COMPILE = os.environ.get("JAXVIZ_TEST_FAST_COMPILE", "1") != "0"
os.environ["JAX_DISABLE_MOST_OPTIMIZATIONS"] = "1" if FAST_COMPILE else "0"

import jax  # noqa: E402  (after JAX_DISABLE_MOST_OPTIMIZATIONS)
import jax.numpy as jnp  # noqa: E402
import pytest  # noqa: E402

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
# ...but not the thousands of one-operation programs that eager calls (`model.init`, a method called
# outside jit) compile in well under a second each: writing each to the cache cost more than it saved
# (test_methods + test_models + test_rules inner loop: 44-48 s keeping every program, 41-43 s from 0.5 s).
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)


def _compile_effort(node) -> None:
    jax.config.update("jax_disable_most_optimizations", FAST_COMPILE and node.get_closest_marker("optimized") is None)


@pytest.fixture(scope="module", autouse=True)
def _module_compile_effort(request):
    """Module fixtures compile as their module's mark says."""
    _compile_effort(request.node)


@pytest.fixture(autouse=True)
def _test_compile_effort(request):
    _compile_effort(request.node)


_FAILED_MODULES: set[str] = set()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item, call):
    report = yield
    if report.failed:
        _FAILED_MODULES.add(item.nodeid.split("::")[0])
    return report


@pytest.fixture(scope="module")
def module_tmp(request, tmp_path_factory) -> Path:
    """A folder for this module's fixtures (real-size weight files...), removed when the module is done
    unless one of its tests failed: one module's files at a time on disk, not the whole session's."""
    folder = tmp_path_factory.mktemp(request.module.__name__.rpartition(".")[2])
    yield folder
    if request.node.nodeid not in _FAILED_MODULES:
        shutil.rmtree(folder, ignore_errors=True)


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


# The longest modules (`pytest --durations`, summed per module, -n 2), started first: with `-n 2 --dist
# loadfile --no-loadscope-reorder` each worker takes whole modules in collection order, and a long module
# collected last would run alone at the end.
LONGEST_FIRST = (
    "test_any_model",
    "test_lrp",
    "test_reliability",
    "test_methods",
    "test_seed004",
    "test_scale",
    "test_zoo",
    "test_weights",
    "test_keras3",
    "test_captum_any_model",
    "test_ray",
    "test_fused",
    "test_optvis",
    "test_seed001",
    "test_seed002_coco",
)
SLOW_MODULE = "\npytestmark = pytest.mark.slow"


def pytest_ignore_collect(collection_path, config):
    """The inner loop (`-m "not slow"`) does not import the modules that are slow as a whole: collecting
    them would import Keras, Ray and friends in every worker only to deselect every test."""
    if config.getoption("markexpr") == "not slow" and collection_path.name.startswith("test_"):
        if collection_path.suffix == ".py" and SLOW_MODULE in collection_path.read_text(encoding="utf-8"):
            return True
    return None


# The modules that write real-size (VGG16, 0.5 GB) weight files, each holding up to ~1.3 GB of them at a
# time: run one after another on one worker, so that the two workers never hold two of them at once and
# a test session stays under 2 GB of disk.
REAL_SIZE_FILES = ("test_weights", "test_keras3", "test_zoo")


def pytest_xdist_make_scheduler(config, log):
    """`--dist loadfile`, with the real-size-file modules as one unit of work."""
    if config.getvalue("dist") != "loadfile":
        return None
    from xdist.scheduler import LoadFileScheduling

    class RealSizeFilesTogether(LoadFileScheduling):
        def _split_scope(self, nodeid):
            module = super()._split_scope(nodeid)
            return "real-size files" if Path(module).stem in REAL_SIZE_FILES else module

    return RealSizeFilesTogether(config, log)


def pytest_collection_modifyitems(config, items):
    rank = {name: i for i, name in enumerate(LONGEST_FIRST)}
    items.sort(key=lambda item: rank.get(item.module.__name__.rpartition(".")[2], len(rank)))
