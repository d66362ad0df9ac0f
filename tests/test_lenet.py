"""LeNet-5 on digits: the shipped weights, the training script's loop, and the MNIST IDX reader."""

import gzip
import importlib.util
import struct
from pathlib import Path

import jax
import numpy as np
import pytest

import jaxviz
from jaxviz.data.datasets import load_dataset
from jaxviz.data.mnist import load_mnist, read_idx_images, read_idx_labels
from jaxviz.weights import verify

ROOT = Path(__file__).resolve().parents[1]
EMBEDDED = ROOT / "jaxviz" / "models" / "embedded"


def _script():
    spec = importlib.util.spec_from_file_location("train_lenet", ROOT / "experiments" / "train_lenet.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def digits_test():
    return load_dataset("digits", split="test", seed=0)


@pytest.mark.parametrize("arch", ["lenet5", "lenet5_3x3"])
def test_shipped_lenet_weights(arch, digits_test):
    path = EMBEDDED / f"{arch}_digits.safetensors"
    assert path.stat().st_size < 2 * 2**20
    assert verify(path)["ok"]
    lm = jaxviz.load(weights=path)
    assert lm.arch == arch and lm.preprocessing.name == "unit" and lm.input_shape == (28, 28, 1)
    assert lm.labels.names == tuple(str(i) for i in range(10))
    stated = float(lm.meta["test_accuracy"])
    pred = np.asarray(jax.jit(lambda x: lm.logits(x).argmax(-1))(digits_test.images))
    acc = float(np.mean(pred == digits_test.labels))
    assert acc == pytest.approx(stated, abs=1e-3)  # the figure in the file is this split's
    assert acc >= 0.97


@pytest.mark.slow
def test_short_training_lowers_the_loss():
    train = _script().train
    data = load_dataset("digits", split="train", seed=0, n=512)
    _, _, losses = train("lenet5", data, epochs=3, batch=64, lr=2e-3, log=None)
    assert len(losses) == 3 and np.isfinite(losses).all()
    assert losses[-1] < 0.8 * losses[0]


# --- MNIST IDX files --------------------------------------------------------------------------


def _write_idx(folder, prefix, images, labels, *, gz):
    folder.mkdir(parents=True, exist_ok=True)
    img = struct.pack(">4I", 2051, *images.shape) + images.astype(np.uint8).tobytes()
    lab = struct.pack(">2I", 2049, len(labels)) + labels.astype(np.uint8).tobytes()
    for name, payload in ((f"{prefix}-images-idx3-ubyte", img), (f"{prefix}-labels-idx1-ubyte", lab)):
        if gz:
            (folder / f"{name}.gz").write_bytes(gzip.compress(payload))
        else:
            (folder / name).write_bytes(payload)


def _tiny(n, seed):
    rng = np.random.default_rng(seed)
    return rng.integers(0, 256, (n, 28, 28), dtype=np.uint8), rng.integers(0, 10, n, dtype=np.uint8)


@pytest.mark.parametrize("gz", [True, False])
def test_load_mnist_reads_idx_files(tmp_path, gz):
    train_x, train_y = _tiny(7, 0)
    test_x, test_y = _tiny(3, 1)
    _write_idx(tmp_path, "train", train_x, train_y, gz=gz)
    _write_idx(tmp_path, "t10k", test_x, test_y, gz=gz)
    for split, x, y in (("train", train_x, train_y), ("test", test_x, test_y)):
        ds = load_mnist(tmp_path, split=split)
        assert ds.images.shape == (len(y), 28, 28, 1) and ds.images.dtype == np.float32
        assert 0.0 <= ds.images.min() and ds.images.max() <= 1.0
        np.testing.assert_allclose(ds.images[..., 0] * 255.0, x.astype(np.float32), atol=1e-3)
        np.testing.assert_array_equal(ds.labels, y)
        assert ds.classes == tuple(str(i) for i in range(10)) and len(ds) == len(y)


def test_truncated_idx_file_names_the_file(tmp_path):
    x, y = _tiny(4, 2)
    _write_idx(tmp_path, "train", x, y, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-100])
    with pytest.raises(ValueError, match="train-images-idx3-ubyte.*truncated"):
        read_idx_images(path)
    with pytest.raises(ValueError, match="truncated"):
        load_mnist(tmp_path, "train")
    short = tmp_path / "short-labels-idx1-ubyte"
    short.write_bytes(struct.pack(">I", 2049))  # no count
    with pytest.raises(ValueError, match="short-labels.*truncated"):
        read_idx_labels(short)


def test_truncated_gzip_names_the_file(tmp_path):
    x, y = _tiny(4, 3)
    _write_idx(tmp_path, "t10k", x, y, gz=True)
    path = tmp_path / "t10k-images-idx3-ubyte.gz"
    path.write_bytes(path.read_bytes()[:-20])
    with pytest.raises(ValueError, match="t10k-images-idx3-ubyte.gz"):
        read_idx_images(path)


def test_wrong_magic_names_the_file(tmp_path):
    x, y = _tiny(2, 4)
    _write_idx(tmp_path, "train", x, y, gz=False)
    with pytest.raises(ValueError, match="train-labels-idx1-ubyte.*magic number 2049"):
        read_idx_images(tmp_path / "train-labels-idx1-ubyte")  # a label file where images belong
    bad = tmp_path / "bad-images-idx3-ubyte"
    bad.write_bytes(struct.pack(">4I", 1234, 1, 28, 28) + bytes(784))
    with pytest.raises(ValueError, match="bad-images-idx3-ubyte.*1234"):
        read_idx_images(bad)


def test_mismatched_counts_and_missing_files(tmp_path):
    x, _ = _tiny(5, 5)
    _, y = _tiny(4, 6)
    _write_idx(tmp_path, "train", x, y, gz=False)
    with pytest.raises(ValueError, match="5 images but .* 4 labels"):
        load_mnist(tmp_path, "train")
    with pytest.raises(FileNotFoundError, match="t10k-images-idx3-ubyte"):
        load_mnist(tmp_path, "test")
    with pytest.raises(ValueError, match="split"):
        load_mnist(tmp_path, "val")
