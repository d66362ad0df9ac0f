"""Weights: port every source format and compare with the source framework's own semantics.

Random full-size VGG16 weights are generated once per module and written in each real source layout
(torch.save state dict, safetensors in torchvision and timm layouts, Keras HDF5 top and notop) when a
test needs it (one full-size file and one port on disk at a time), ported, and run at 224x224 so that
pool5 is a genuine 7x7 map: the fc6 flatten order is only exercised by a pool5 that varies over space.
The network is never touched: downloads go through a fake opener and a fake `hf_hub_download`.
"""

from __future__ import annotations

import functools
import hashlib
import io
import json
import os
import pickle
import shutil
import urllib.error
import zipfile
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors.numpy import save_file

import jaxviz
from jaxviz import _torch_pickle, weights
from jaxviz.models import build

try:
    from .model_calls import forward, from_layer
except ImportError:
    from model_calls import forward, from_layer
from jaxviz.weights import WeightsError

try:  # tests/ may or may not be a package
    from . import reference
    from .disk import OneAtATime
except ImportError:
    import reference
    from disk import OneAtATime

WIDTHS = (64, 128, 256, 512, 512)
REPO_MANIFEST = Path(jaxviz.__file__).resolve().parents[1] / "weights" / "manifest.json"
SHAPES_META = {"arch": "shapesnet", "preprocessing": "unit"}
VGG16_BLOCKS, VGG19_BLOCKS = reference.VGG16_BLOCKS, reference.VGG19_BLOCKS


@pytest.fixture(autouse=True)
def _own_weights_dir(weights_dir) -> Path:
    """Every test here reads and writes a fresh weights folder (the shared `weights_dir` fixture)."""
    return weights_dir


# --- random weights in each source layout --------------------------------------------------


def _he(rng, shape, fan_in) -> np.ndarray:
    w = rng.standard_normal(shape, dtype=np.float32)
    w *= np.float32(np.sqrt(2.0 / fan_in))  # keeps activations O(1) through 16 ReLU layers
    return w


def _bias(rng, n) -> np.ndarray:
    return (0.1 * rng.standard_normal(n)).astype(np.float32)  # nonzero: a lost bias must show


def random_torchvision_sd(seed: int, blocks=VGG16_BLOCKS, dense_zeros: bool = False) -> dict[str, np.ndarray]:
    """A torchvision VGG state dict: features.N conv (out, in, 3, 3), classifier.{0,3,6} (out, in)."""
    rng = np.random.default_rng(seed)
    sd, index, cin = {}, 0, 3
    for n_convs, width in zip(blocks, WIDTHS):
        for _ in range(n_convs):
            sd[f"features.{index}.weight"] = _he(rng, (width, cin, 3, 3), cin * 9)
            sd[f"features.{index}.bias"] = _bias(rng, width)
            cin, index = width, index + 2
        index += 1
    for i, (fan_in, fan_out) in zip((0, 3, 6), ((cin * 49, 4096), (4096, 4096), (4096, 1000))):
        sd[f"classifier.{i}.weight"] = (
            np.zeros((fan_out, fan_in), np.float32) if dense_zeros else _he(rng, (fan_out, fan_in), fan_in)
        )
        sd[f"classifier.{i}.bias"] = _bias(rng, fan_out)
    return sd


def timm_layout(sd: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    """timm's checkpoint filter for VGG (timm/models/vgg.py `_filter_fn`), literally."""
    out = {}
    for key, value in sd.items():
        new = key.replace("classifier.0", "pre_logits.fc1").replace("classifier.3", "pre_logits.fc2")
        new = new.replace("classifier.6", "head.fc")
        if "classifier.0.weight" in key:
            value = value.reshape(-1, 512, 7, 7)
        if "classifier.3.weight" in key:
            value = value.reshape(-1, 4096, 1, 1)
        out[new] = value
    return out


def random_keras_layers(seed: int, blocks=VGG16_BLOCKS, include_top: bool = True) -> dict[str, list[np.ndarray]]:
    """Keras VGG weights by layer name: conv kernels (3, 3, in, out), dense (in, out)."""
    rng = np.random.default_rng(seed)
    layers, cin = {}, 3
    for b, (n_convs, width) in enumerate(zip(blocks, WIDTHS), start=1):
        for c in range(1, n_convs + 1):
            layers[f"block{b}_conv{c}"] = [_he(rng, (3, 3, cin, width), cin * 9), _bias(rng, width)]
            cin = width
    if include_top:
        for name, fan_in, fan_out in (("fc1", cin * 49, 4096), ("fc2", 4096, 4096), ("predictions", 4096, 1000)):
            layers[name] = [_he(rng, (fan_in, fan_out), fan_in), _bias(rng, fan_out)]
    return layers


def write_keras_h5(
    path: Path,
    layers: dict[str, list[np.ndarray]],
    blocks=VGG16_BLOCKS,
    include_top=True,
    style: str = "legacy",
    full_model: bool = False,
) -> Path:
    """An HDF5 file laid out as keras.applications' weight files: root attribute layer_names, one
    group per layer with attribute weight_names and one dataset per name. `style` "legacy" names
    datasets like the published files (block1_conv1_W_1:0), "v2" like Keras 2 saves
    (block1_conv1/kernel:0, a nested group); `full_model` nests it all under model_weights/ as
    model.save() does."""
    import h5py

    names = ["input_1"]
    for b, n_convs in enumerate(blocks, start=1):
        names += [f"block{b}_conv{c}" for c in range(1, n_convs + 1)] + [f"block{b}_pool"]
    if include_top:
        names += ["flatten", "fc1", "fc2", "predictions"]
    with h5py.File(path, "w") as f:
        root = f.create_group("model_weights") if full_model else f
        if full_model:
            f.attrs["model_config"] = b"{}"
        root.attrs["layer_names"] = np.array([n.encode() for n in names])
        root.attrs["backend"] = b"tensorflow"
        root.attrs["keras_version"] = b"2.2.4"
        for name in sorted(names):  # Keras writes groups in name order; layer_names keeps model order
            group = root.create_group(name)
            arrays = layers.get(name, [])
            wnames = [f"{name}_W_1:0", f"{name}_b_1:0"] if style == "legacy" else [f"{name}/kernel:0", f"{name}/bias:0"]
            wnames = wnames[: len(arrays)]
            group.attrs["weight_names"] = np.array([w.encode() for w in wnames]) if wnames else np.array([], "S1")
            for wname, array in zip(wnames, arrays):
                group.create_dataset(wname, data=array)
    return path


def _torch_vgg(torch, layout: str, blocks=VGG16_BLOCKS):
    """A VGG built by hand from torch.nn layers with torchvision's or timm's module names (torchvision
    and timm are not installed). Parameters live on the meta device until load_state_dict(assign=True)."""
    nn = torch.nn

    def features():
        layers, cin = [], 3
        for n_convs, width in zip(blocks, WIDTHS):
            for _ in range(n_convs):
                layers += [nn.Conv2d(cin, width, 3, padding=1), nn.ReLU(inplace=True)]
                cin = width
            layers.append(nn.MaxPool2d(kernel_size=2, stride=2))
        return nn.Sequential(*layers)

    class TorchvisionVGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = features()
            self.avgpool = nn.AdaptiveAvgPool2d((7, 7))
            self.classifier = nn.Sequential(
                nn.Linear(512 * 7 * 7, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 4096),
                nn.ReLU(True),
                nn.Dropout(),
                nn.Linear(4096, 1000),
            )

        def forward(self, x):
            return self.classifier(torch.flatten(self.avgpool(self.features(x)), 1))

    class ConvMlp(nn.Module):  # timm's VGG pre_logits
        def __init__(self):
            super().__init__()
            self.fc1 = nn.Conv2d(512, 4096, 7)
            self.act1 = nn.ReLU(True)
            self.drop = nn.Dropout(0.2)
            self.fc2 = nn.Conv2d(4096, 4096, 1)
            self.act2 = nn.ReLU(True)

        def forward(self, x):
            if x.shape[-2] < 7 or x.shape[-1] < 7:
                x = nn.functional.adaptive_avg_pool2d(x, (max(7, x.shape[-2]), max(7, x.shape[-1])))
            return self.act2(self.fc2(self.drop(self.act1(self.fc1(x)))))

    class Head(nn.Module):  # timm's ClassifierHead with avg pooling
        def __init__(self):
            super().__init__()
            self.fc = nn.Linear(4096, 1000)

        def forward(self, x):
            return self.fc(x.mean(dim=(2, 3)))

    class TimmVGG(nn.Module):
        def __init__(self):
            super().__init__()
            self.features = features()
            self.pre_logits = ConvMlp()
            self.head = Head()

        def forward(self, x):
            return self.head(self.pre_logits(self.features(x)))

    with torch.device("meta"):
        return (TorchvisionVGG if layout == "torchvision" else TimmVGG)().eval()


def _load_torch(torch, model, sd):
    model.load_state_dict({k: torch.from_numpy(v) for k, v in sd.items()}, strict=True, assign=True)
    return model


def nchw(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(x.transpose(0, 3, 1, 2))


def rel_err(ours, ref) -> float:
    ours, ref = np.asarray(ours, np.float64), np.asarray(ref, np.float64)
    assert ours.shape == ref.shape, (ours.shape, ref.shape)
    return float(np.abs(ours - ref).max() / np.abs(ref).max())


def assert_close(ours, ref, rtol=1e-4):
    err = rel_err(ours, ref)
    assert err < rtol, f"max difference {err:.2e} of the largest |value| (allowed {rtol:g})"


# --- module fixtures: sources, references, ports -------------------------------------------


@pytest.fixture(scope="module")
def x224() -> np.ndarray:
    return np.random.default_rng(7).standard_normal((1, 224, 224, 3), dtype=np.float32)


@pytest.fixture(scope="module")
def tv_sd() -> dict[str, np.ndarray]:
    return random_torchvision_sd(seed=1)


@pytest.fixture(scope="module")
def keras_layers() -> dict[str, list[np.ndarray]]:
    return random_keras_layers(seed=2)


@pytest.fixture(scope="module")
def sources(module_tmp, tv_sd, keras_layers) -> OneAtATime:
    """The full-size source file of a case, in its real format. One source and one port on disk at a time:
    this module's disk peak is ~1.3 GB instead of five of each (4.4 GB)."""
    folder = module_tmp / "sources"
    folder.mkdir()

    def write(case: str) -> Path:
        if case == "torch-pth":
            torch = pytest.importorskip("torch")
            path = folder / "vgg16-random.pth"
            torch.save(_load_torch(torch, _torch_vgg(torch, "torchvision"), tv_sd).state_dict(), path)
            return path  # a real state dict, with its _metadata attribute
        if case == "keras-h5":
            return write_keras_h5(folder / "vgg16_top.h5", keras_layers, style="legacy")
        path = (
            folder
            / {"torchvision-safetensors": "vgg16-torchvision.safetensors", "timm-safetensors": "model.safetensors"}[
                case
            ]
        )
        save_file(tv_sd if case == "torchvision-safetensors" else timm_layout(tv_sd), str(path))
        return path

    return OneAtATime(write)


@pytest.fixture
def pth_file(sources) -> Path:
    return sources.get("torch-pth")


@pytest.fixture
def tv_st_file(sources) -> Path:
    return sources.get("torchvision-safetensors")


@pytest.fixture(scope="module")
def keras_notop_file(module_tmp, keras_layers) -> Path:
    """Small (59 MB without the dense layers): kept for the whole module."""
    return write_keras_h5(module_tmp / "vgg16_notop.h5", keras_layers, include_top=False, style="v2", full_model=True)


@pytest.fixture(scope="module")
def torch_ref(tv_sd, x224) -> np.ndarray:
    return reference.torchvision_vgg(tv_sd, nchw(x224))


@pytest.fixture(scope="module")
def timm_ref(tv_sd, x224) -> np.ndarray:
    return reference.timm_vgg(timm_layout(tv_sd), nchw(x224))


@pytest.fixture(scope="module")
def keras_ref_pool5(keras_layers, x224) -> np.ndarray:
    return reference.keras_vgg(keras_layers, x224, include_top=False)


@pytest.fixture(scope="module")
def keras_ref(keras_layers, keras_ref_pool5) -> np.ndarray:
    return reference.keras_classifier(keras_layers, keras_ref_pool5)


@pytest.fixture(scope="module")
def ported(module_tmp, sources, keras_notop_file):
    """ported(case) -> `weights.port` of the case's source: the small notop port is kept for the module, the
    full-size ones one at a time (ported again if another came between)."""
    folder = module_tmp / "ported"
    folder.mkdir()

    def port(case: str) -> Path:
        src = keras_notop_file if case == NOTOP else sources.get(case)
        with pytest.MonkeyPatch.context() as mp:
            mp.setenv("JAXVIZ_WEIGHTS_DIR", str(folder))
            return weights.port(src, "vgg16", out=folder / f"{case}.safetensors")

    full, notop = OneAtATime(port), functools.cache(port)
    return lambda case: notop(case) if case == NOTOP else full.get(case)


NOTOP = "keras-h5-notop"
# case: (reference fixture, preprocessing, include_top). Ordered so that the last full-size port is the one
# test_reference_and_port_match_real_torch_model uses first.
CASES = {
    "keras-h5": ("keras_ref", "caffe", True),
    NOTOP: ("keras_ref_pool5", "caffe", False),
    "torchvision-safetensors": ("torch_ref", "torchvision", True),
    "timm-safetensors": ("timm_ref", "torchvision", True),
    "torch-pth": ("torch_ref", "torchvision", True),
}


# --- parity with the source frameworks ------------------------------------------------------


@pytest.mark.parametrize("case", list(CASES))
@pytest.mark.slow
def test_port_matches_source_framework(case, request, ported, x224):
    ref_fixture, preprocessing, include_top = CASES[case]
    path = ported(case)
    params, meta = weights.load_weights(path)
    assert (meta["arch"], meta["preprocessing"], meta["include_top"]) == ("vgg16", preprocessing, include_top)
    assert meta["num_classes"] == (1000 if include_top else None)
    assert meta["format_version"] == weights.FORMAT_VERSION and len(meta["fingerprint"]["first"]) == 5
    assert all(v.dtype == np.float32 for layer in params.values() for v in layer.values())
    ours = forward(build("vgg16", include_top=include_top), params, jnp.asarray(x224))
    assert_close(ours, request.getfixturevalue(ref_fixture))


@pytest.mark.parametrize("layout", ["torchvision", "timm"])
@pytest.mark.slow
def test_reference_and_port_match_real_torch_model(layout, request, ported, tv_sd, x224):
    torch = pytest.importorskip("torch")
    sd = tv_sd if layout == "torchvision" else timm_layout(tv_sd)
    model = _load_torch(torch, _torch_vgg(torch, layout), sd)
    with torch.no_grad():
        theirs = model(torch.from_numpy(nchw(x224))).numpy()
    del model
    assert_close(request.getfixturevalue("torch_ref" if layout == "torchvision" else "timm_ref"), theirs)
    params, _ = weights.load_weights(ported("torch-pth" if layout == "torchvision" else "timm-safetensors"))
    assert_close(forward(build("vgg16"), params, jnp.asarray(x224)), theirs)


@pytest.mark.parametrize("layout", ["torchvision", "timm"])
@pytest.mark.slow
def test_fc6_without_reorder_gives_different_logits(layout, tv_sd, monkeypatch):
    """The classifier alone on a random pool5: right with the (C,H,W)->(H,W,C) row reorder,
    clearly wrong with a plain transpose. (A pool5 constant over space would hide the bug.)"""
    sd = tv_sd if layout == "torchvision" else timm_layout(tv_sd)
    pool5 = np.random.default_rng(3).standard_normal((2, 512, 7, 7), dtype=np.float32)
    ref = (reference.torchvision_classifier if layout == "torchvision" else reference.timm_head)(sd, pool5)
    model = build("vgg16")

    def ours():
        params, include_top, classes = weights._to_params(sd, layout, "vgg16", Path("random.safetensors"))
        assert (include_top, classes) == (True, 1000)
        return from_layer(model, params, jnp.asarray(pool5.transpose(0, 2, 3, 1)), "pool5", (224, 224, 3))

    assert_close(ours(), ref)
    monkeypatch.setattr(weights, "_chw_rows_to_hwc", lambda w, chw: w.T)  # the bug: transpose only
    assert rel_err(ours(), ref) > 0.05


# --- the torch pickle reader ----------------------------------------------------------------


@pytest.mark.parametrize("zip_format", [True, False], ids=["zip", "legacy"])
def test_pure_reader_matches_torch_load(tmp_path, zip_format):
    torch = pytest.importorskip("torch")
    g = torch.Generator().manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Conv2d(3, 4, 3), torch.nn.BatchNorm2d(4), torch.nn.Linear(5, 2))
    sd = net.state_dict()
    base = torch.randn(6, 5, generator=g)
    sd["transposed"] = base.t()  # non-contiguous, shares base's storage
    sd["offset_slice"] = base[2:, 1:4]  # storage offset and strides
    sd["base"] = base
    sd["half"] = torch.randn(3, 2, generator=g).half()
    sd["bf16"] = torch.randn(4, generator=g).bfloat16()
    sd["f64"] = torch.randn(2, generator=g, dtype=torch.float64)
    sd["bool"] = torch.tensor([True, False, True])
    sd["int8"] = torch.tensor([-3, 7], dtype=torch.int8)
    sd["scalar"] = torch.tensor(42)
    sd["empty"] = torch.zeros(0, 3)
    path = tmp_path / "sd.pth"
    torch.save(sd, path, _use_new_zipfile_serialization=zip_format)
    ours = _torch_pickle.load(path)
    theirs = torch.load(path, map_location="cpu", weights_only=True)
    assert list(ours) == list(theirs)
    for key, t in theirs.items():
        a = ours[key]
        if t.dtype == torch.bfloat16:
            a, expected = a.astype(np.float32), t.float().numpy()
        else:
            expected = t.numpy()
        assert a.dtype == expected.dtype and a.shape == expected.shape, key
        np.testing.assert_array_equal(a, expected, err_msg=key)


def test_pure_reader_legacy_storage_views_match_torch_load(tmp_path):
    """Old (2017-era) files use `_rebuild_tensor` (v1) and storages that are views of a root
    storage; modern torch cannot write those, so the stream is built here by hand."""
    torch = pytest.importorskip("torch")

    class Ref:  # a storage, written as a persistent id
        def __init__(self, pid):
            self.pid = pid

    class Tensor:
        def __init__(self, *args):
            self.args = args

        def __reduce__(self):
            return (torch._utils._rebuild_tensor, self.args)

    class Pickler(pickle.Pickler):
        def persistent_id(self, obj):
            return obj.pid if isinstance(obj, Ref) else None

    root = np.arange(6, dtype=np.float32) * 1.5
    view = Ref(("storage", torch.FloatStorage, "root", "cpu", 6, ("view", 2, 3)))
    whole = Ref(("storage", torch.FloatStorage, "root", "cpu", 6, None))
    buf = io.BytesIO()
    for header in (_torch_pickle.LEGACY_MAGIC, 1001, {"protocol_version": 1001, "little_endian": True}):
        pickle.dump(header, buf, protocol=2)
    Pickler(buf, protocol=2).dump({"view": Tensor(view, 1, (2,), (1,)), "whole": Tensor(whole, 0, (3, 2), (1, 3))})
    pickle.dump(["root"], buf, protocol=2)
    buf.write((6).to_bytes(8, "little") + root.tobytes())
    path = tmp_path / "old.pth"
    path.write_bytes(buf.getvalue())
    ours = _torch_pickle.load(path)
    theirs = torch.load(path, map_location="cpu", weights_only=False)  # our own trusted bytes
    assert list(ours) == ["view", "whole"]
    for key in ours:
        np.testing.assert_array_equal(ours[key], theirs[key].numpy(), err_msg=key)
    np.testing.assert_array_equal(ours["view"], [4.5, 6.0])  # root[2 + 1 : 2 + 3]


@pytest.mark.slow
def test_port_without_torch_reads_the_same_tensors(pth_file, monkeypatch):
    with_torch, layout, _, _ = weights._read_tensors(pth_file, "torch")
    monkeypatch.setattr(weights, "_torch_or_none", lambda: None)
    without, layout2, _, _ = weights._read_tensors(pth_file, "torch")
    assert (layout, layout2) == ("torchvision", "torchvision") and list(with_torch) == list(without)
    for key in with_torch:
        np.testing.assert_array_equal(with_torch[key], without[key], err_msg=key)


class _Evil:
    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


@pytest.mark.parametrize("reader", ["torch", "pure"])
@pytest.mark.parametrize("container", ["zip", "legacy"])
def test_malicious_pickle_is_refused(tmp_path, weights_dir, monkeypatch, reader, container):
    if reader == "torch":
        pytest.importorskip("torch")
    else:
        monkeypatch.setattr(weights, "_torch_or_none", lambda: None)
    marker = tmp_path / "pwned"
    payload = pickle.dumps({"features.0.weight": _Evil(marker)}, protocol=2)
    path = tmp_path / "evil.pth"
    if container == "zip":
        with zipfile.ZipFile(path, "w") as zf:
            zf.writestr("evil/data.pkl", payload)
            zf.writestr("evil/byteorder", "little")
            zf.writestr("evil/version", "3\n")
    else:
        sys_info = {"protocol_version": 1001, "little_endian": True, "type_sizes": {"short": 2, "int": 4, "long": 4}}
        path.write_bytes(
            b"".join(pickle.dumps(o, protocol=2) for o in (_torch_pickle.LEGACY_MAGIC, 1001, sys_info))
            + payload
            + pickle.dumps([], protocol=2)
        )
    with pytest.raises(WeightsError, match="refusing to unpickle"):
        weights.port(path, "vgg16")
    assert not marker.exists()
    assert list(weights_dir.iterdir()) == []


# --- validation -----------------------------------------------------------------------------


def test_vgg19_file_with_arch_vgg16_names_first_mismatch_and_writes_nothing(tmp_path, weights_dir):
    path = tmp_path / "vgg19.safetensors"
    save_file(random_torchvision_sd(seed=5, blocks=VGG19_BLOCKS, dense_zeros=True), str(path))
    with pytest.raises(WeightsError) as info:
        weights.port(path, "vgg16")
    msg = str(info.value)
    assert "'features.16.weight'" in msg and "pool3" in msg  # VGG19's conv3_4 sits where VGG16 pools
    assert "--arch vgg19" in msg
    assert list(weights_dir.iterdir()) == []


def test_vgg16_file_with_arch_vgg19_names_missing_tensor(tv_st_file, tmp_path, weights_dir):
    out = tmp_path / "out.safetensors"
    with pytest.raises(WeightsError) as info:
        weights.port(tv_st_file, "vgg19", out=out)
    msg = str(info.value)
    assert "'features.16.weight' (-> conv3_4.kernel) is missing" in msg and "--arch vgg16" in msg
    assert not out.exists() and list(tmp_path.glob("*.tmp")) == [] and list(weights_dir.iterdir()) == []


def test_keras_vgg19_notop_with_arch_vgg16(tmp_path, weights_dir):
    path = write_keras_h5(
        tmp_path / "vgg19_notop.h5",
        random_keras_layers(9, VGG19_BLOCKS, include_top=False),
        VGG19_BLOCKS,
        include_top=False,
    )
    with pytest.raises(WeightsError) as info:
        weights.port(path, "vgg16")
    msg = str(info.value)
    assert "'block3_conv4/kernel'" in msg and "block3_conv4/block3_conv4_W_1:0" in msg and "--arch vgg19" in msg
    assert list(weights_dir.iterdir()) == []


def test_shape_mismatch_names_tensor_and_shapes(keras_layers, tmp_path, weights_dir):
    layers = {k: v for k, v in keras_layers.items() if k.startswith("block")}
    layers["block1_conv1"] = [layers["block1_conv1"][0][:, :, :1], layers["block1_conv1"][1]]  # grayscale
    path = write_keras_h5(tmp_path / "gray_notop.h5", layers, include_top=False)
    with pytest.raises(WeightsError) as info:
        weights.port(path, "vgg16")
    msg = str(info.value)
    assert "'block1_conv1/kernel'" in msg and "conv1_1.kernel" in msg
    assert "(3, 3, 1, 64)" in msg and "(3, 3, 3, 64)" in msg
    assert list(weights_dir.iterdir()) == []


def test_unknown_and_jaxviz_files_are_refused(tmp_path, weights_dir):
    junk = tmp_path / "notes.bin"
    junk.write_bytes(b"hello, not weights")
    with pytest.raises(WeightsError, match="unknown weights format"):
        weights.port(junk, "vgg16")
    ours = tmp_path / "ours.safetensors"
    save_file({"conv1_1.kernel": np.zeros((3, 3, 3, 64), np.float32)}, str(ours))
    with pytest.raises(WeightsError, match="already in jaxviz layout"):
        weights.port(ours, "vgg16")
    with pytest.raises(WeightsError, match="VGG weights only"):
        weights.port(junk, "lenet5", fmt="torch")
    assert list(weights_dir.iterdir()) == []


def test_known_file_name_takes_the_manifest_name_only_when_the_checksum_agrees(keras_notop_file, tmp_path, weights_dir):
    src = tmp_path / "vgg16_weights_tf_dim_ordering_tf_kernels_notop.h5"
    shutil.copy(keras_notop_file, src)
    # The repository manifest's md5 is the real file's, so this random file keeps its own name.
    assert weights.port(src, "vgg16") == weights_dir / f"{src.stem}.safetensors"
    md5 = hashlib.md5(src.read_bytes()).hexdigest()
    _add_manifest(weights_dir, {**_manifest_entry("vgg16-keras-notop"), "md5": md5})
    assert weights.port(src, "vgg16") == weights_dir / "vgg16-keras-notop.safetensors"


# --- fetch ----------------------------------------------------------------------------------


def _manifest_entry(name: str) -> dict:
    return next(e for e in json.loads(REPO_MANIFEST.read_text())["weights"] if e["name"] == name)


def _add_manifest(weights_dir: Path, *entries: dict) -> None:
    (weights_dir / "manifest.json").write_text(json.dumps({"weights": list(entries)}))


class _Response(io.BytesIO):
    """What urlopen returns, for bytes `data`; reading past `fail_after` bytes resets the connection."""

    def __init__(self, data: bytes, status: int = 200, fail_after: int | None = None, headers=None):
        super().__init__(data)
        self.status, self.fail_after = status, fail_after
        self.headers = {"Content-Length": str(len(data)), **(headers or {})}

    def getcode(self):
        return self.status

    def read(self, n=-1):
        if self.fail_after is not None:
            left = self.fail_after - self.tell()
            if left <= 0:
                raise ConnectionResetError(104, "Connection reset by peer")
            n = left if n is None or n < 0 else min(n, left)
        return super().read(n)


def _server(data: bytes, requests: list, fail_after: int | None = None):
    def urlopen(request, timeout=None):
        requests.append(request.get_header("Range"))
        span = request.get_header("Range")
        if span:
            start = int(span.removeprefix("bytes=").rstrip("-"))
            return _Response(data[start:], 206, headers={"Content-Range": f"bytes {start}-{len(data) - 1}/{len(data)}"})
        return _Response(data, 200, fail_after=fail_after if len(requests) == 1 else None)

    return urlopen


@pytest.mark.parametrize("checksum", ["sha256_prefix", "md5", "sha256"])
def test_fetch_checksum_mismatch_leaves_no_file(checksum, weights_dir, monkeypatch):
    data = b"these are not the weights you are looking for" * 1000
    wrong = {"sha256_prefix": "0123abcd", "md5": "0" * 32, "sha256": "0" * 64}[checksum]
    entry = {
        "name": "tiny",
        "arch": "vgg16",
        "format": "torch",
        "url": "https://example.invalid/tiny-0123abcd.pth",
        "file": "tiny-0123abcd.pth",
        "preprocessing": "torchvision",
        "include_top": True,
        checksum: wrong,
    }
    _add_manifest(weights_dir, entry)
    monkeypatch.setattr(weights, "_urlopen", _server(data, []))
    with pytest.raises(WeightsError, match="checksum mismatch"):
        weights.fetch("tiny", progress=False)
    assert sorted(p.name for p in weights_dir.iterdir()) == ["manifest.json"]


def test_fetch_offline_says_how_to_port(weights_dir, monkeypatch):
    def offline(request, timeout=None):
        raise urllib.error.URLError(OSError(-3, "Temporary failure in name resolution"))

    monkeypatch.setattr(weights, "_urlopen", offline)
    with pytest.raises(WeightsError) as info:
        weights.fetch("vgg16-torchvision", progress=False)
    msg = str(info.value)
    assert "offline" in msg and "jaxviz weights port FILE --arch vgg16" in msg and "vgg16-397923af.pth" in msg
    assert list(weights_dir.iterdir()) == []


def test_interrupted_fetch_resumes_with_range_then_verifies(keras_notop_file, weights_dir, monkeypatch):
    data = keras_notop_file.read_bytes()
    entry = {
        **_manifest_entry("vgg16-keras-notop"),
        "url": "https://example.invalid/notop.h5",
        "file": "notop.h5",
        "md5": hashlib.md5(data).hexdigest(),
    }
    _add_manifest(weights_dir, entry)
    requests: list = []
    cut = len(data) // 3
    monkeypatch.setattr(weights, "_urlopen", _server(data, requests, fail_after=cut))
    with pytest.raises(WeightsError, match="interrupted") as info:
        weights.fetch("vgg16-keras-notop", progress=False)
    assert "jaxviz weights fetch vgg16-keras-notop" in str(info.value)
    part = weights_dir / "notop.h5.part"
    assert part.stat().st_size == cut and not (weights_dir / "notop.h5").exists()

    out = weights.fetch("vgg16-keras-notop", progress=False)
    assert requests == [None, f"bytes={cut}-"]
    assert out == weights_dir / "vgg16-keras-notop.safetensors" and not part.exists()
    assert (weights_dir / "notop.h5").read_bytes() == data
    recorded = json.loads((weights_dir / "checksums.json").read_text())["vgg16-keras-notop"]
    assert recorded["sha256"] == hashlib.sha256(data).hexdigest()
    _, meta = weights.load_weights(out)
    assert meta["source"] == entry["url"] and meta["preprocessing"] == "caffe" and meta["include_top"] is False

    report = weights.verify("vgg16-keras-notop")
    assert report["ok"] and report["source_checksum"] == "ok" and report["fingerprint"] == "ok"
    with open(weights_dir / "notop.h5", "ab") as f:  # the source changes under us
        f.write(b"\0")
    with pytest.raises(WeightsError, match="source .*notop.h5"):
        weights.verify("vgg16-keras-notop")


def test_fetch_hf_entry_uses_hf_hub_download(tmp_path, weights_dir, monkeypatch):
    hub = pytest.importorskip("huggingface_hub")
    src = tmp_path / "model.safetensors"
    src.write_bytes(b"pretend")
    calls, ports = [], []

    def fake_download(repo_id, filename, revision=None, **kwargs):
        calls.append((repo_id, filename))
        return str(src)

    def fake_port(path, arch, **kwargs):
        ports.append((path, arch, kwargs["origin"], kwargs["out"]))
        return kwargs["out"]

    monkeypatch.setattr(hub, "hf_hub_download", fake_download)
    monkeypatch.setattr(weights, "_port", fake_port)
    out = weights.fetch("vgg19-timm", progress=False)
    assert calls == [("timm/vgg19.tv_in1k", "model.safetensors")]
    assert ports == [
        (src, "vgg19", "hf://timm/vgg19.tv_in1k/model.safetensors", weights_dir / "vgg19-timm.safetensors")
    ]
    assert out == weights_dir / "vgg19-timm.safetensors"
    recorded = json.loads((weights_dir / "checksums.json").read_text())["vgg19-timm"]
    assert recorded["sha256"] == hashlib.sha256(b"pretend").hexdigest()

    def unreachable(*args, **kwargs):
        raise OSError("We couldn't connect to 'https://huggingface.co'")

    monkeypatch.setattr(hub, "hf_hub_download", unreachable)
    with pytest.raises(WeightsError, match="offline.*jaxviz weights port FILE --arch vgg16"):
        weights.fetch("vgg16-timm", progress=False)


# --- verify, save/load, resolve, list -------------------------------------------------------


@pytest.mark.parametrize("how", ["bytes", "save_weights"])
@pytest.mark.slow
def test_verify_passes_fresh_port_and_fails_after_tampering(how, ported, weights_dir):
    path = weights_dir / "notop.safetensors"
    shutil.copy(ported(NOTOP), path)
    report = weights.verify(path)
    assert report["ok"] and report["shapes"] == "ok" and report["fingerprint"] == "ok"
    assert report["tensors_sha256"] == "ok" and report["source_checksum"] == "ok"
    assert report["fingerprint_max_rel_diff"] < 1e-5
    if how == "bytes":  # edit the float bytes of one tensor in place
        raw = bytearray(path.read_bytes())
        n = int.from_bytes(raw[:8], "little")
        begin, end = json.loads(raw[8 : 8 + n])["conv2_1.kernel"]["data_offsets"]
        values = np.frombuffer(bytes(raw[8 + n + begin : 8 + n + end]), np.float32) * np.float32(1.5)
        raw[8 + n + begin : 8 + n + end] = values.tobytes()
        path.write_bytes(bytes(raw))
        expected = "sha256 differs.*fingerprint differs"
    else:  # rewritten through the API with the old metadata: only the fingerprint can tell
        params, meta = weights.load_weights(path)
        params["conv2_1"]["kernel"] = params["conv2_1"]["kernel"] * 1.5
        weights.save_weights(path, params, meta)
        expected = "fingerprint differs"
    with pytest.raises(WeightsError, match=expected):
        weights.verify(path)


def _shapesnet_params() -> dict:
    """Random ShapesNet params of the right shapes (eval_shape: an eager init takes seconds)."""
    x = jax.ShapeDtypeStruct((1, 64, 64, 3), jnp.float32)
    shapes = jax.eval_shape(build("shapesnet").init, jax.random.key(0), x)
    rng = np.random.default_rng(0)
    return jax.tree_util.tree_map(lambda s: (0.1 * rng.standard_normal(s.shape)).astype(np.float32), shapes["params"])


def test_save_load_roundtrip_is_atomic_and_verifies(weights_dir):
    params = _shapesnet_params()
    path = weights_dir / "shapes.safetensors"
    classes = ["circle", "square", "triangle"] + [f"c{i}" for i in range(7)]
    weights.save_weights(
        path,
        params,
        {
            "arch": "shapesnet",
            "preprocessing": "unit",
            "source": "trained here",
            "classes": classes,
            "accuracy": "0.93",
        },
    )
    assert [p.name for p in weights_dir.iterdir()] == ["shapes.safetensors"]  # no temp file left
    loaded, meta = weights.load_weights(path)
    assert jax.tree_util.tree_structure(loaded) == jax.tree_util.tree_structure(params)
    for a, b in zip(jax.tree_util.tree_leaves(loaded), jax.tree_util.tree_leaves(params)):
        np.testing.assert_array_equal(a, b)
    assert meta["classes"] == classes and meta["accuracy"] == "0.93" and meta["source"] == "trained here"
    assert meta["num_classes"] == 10 and meta["include_top"] is True and meta["fingerprint"]["output_shape"] == [1, 10]
    assert weights.verify(path)["source_checksum"] == "skipped: source file not present"


def test_save_weights_with_wrong_shapes_writes_nothing(weights_dir):
    params = _shapesnet_params()
    params["fc"]["kernel"] = np.zeros((3, 10), np.float32)
    with pytest.raises(WeightsError, match="fc.kernel"):
        weights.save_weights(weights_dir / "bad.safetensors", params, SHAPES_META)
    with pytest.raises(WeightsError, match="preprocessing"):
        weights.save_weights(
            weights_dir / "bad.safetensors", _shapesnet_params(), {"arch": "shapesnet", "preprocessing": "imagenet"}
        )
    assert list(weights_dir.iterdir()) == []


def test_resolve(weights_dir, tmp_path):
    with pytest.raises(WeightsError, match="jaxviz weights fetch vgg16-torchvision"):
        weights.resolve("vgg16-torchvision")
    with pytest.raises(WeightsError, match="jaxviz weights fetch NAME.*jaxviz weights port FILE --arch"):
        weights.resolve("no-such-weights")
    weights.save_weights(weights_dir / "mine.safetensors", _shapesnet_params(), SHAPES_META)
    assert weights.resolve("mine") == weights_dir / "mine.safetensors"
    assert weights.resolve(str(weights_dir / "mine.safetensors")) == weights_dir / "mine.safetensors"


def test_list_weights(weights_dir, ported):
    rows = {r["name"]: r for r in weights.list_weights()}
    assert {"vgg16-torchvision", "vgg19-timm", "vgg16-keras-notop"} <= set(rows)
    assert not any(r["present"] for r in rows.values())
    os.link(ported(NOTOP), weights_dir / "vgg16-keras-notop.safetensors")
    weights.save_weights(weights_dir / "mine.safetensors", _shapesnet_params(), SHAPES_META)
    rows = {r["name"]: r for r in weights.list_weights()}
    assert rows["vgg16-keras-notop"]["present"] and rows["vgg16-keras-notop"]["in_manifest"]
    assert not rows["vgg16-torchvision"]["present"]
    assert rows["vgg16-keras-notop"]["source"] == "keras" and rows["vgg16-timm"]["source"] == "timm"
    assert rows["mine"] == {
        "name": "mine",
        "present": True,
        "path": str(weights_dir / "mine.safetensors"),
        "in_manifest": False,
        "arch": "shapesnet",
        "preprocessing": "unit",
        "include_top": True,
        "source": "local",
        "origin": "",
    }


def test_weights_dir_precedence(weights_dir, monkeypatch, tmp_path):
    assert weights.weights_dir() == weights_dir
    monkeypatch.delenv("JAXVIZ_WEIGHTS_DIR")
    assert weights.weights_dir() == Path(jaxviz.__file__).resolve().parents[1] / "weights"
    monkeypatch.setattr(weights, "_REPO_WEIGHTS", tmp_path / "site-packages" / "weights")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    assert weights.weights_dir() == tmp_path / "home" / ".cache" / "jaxviz" / "weights"


def test_manifest_entries():
    manifest = json.loads(REPO_MANIFEST.read_text())
    # The other architectures' torchvision entries are checked in test_zoo.py.
    entries = {e["name"]: e for e in manifest["weights"] if e["arch"] in ("vgg16", "vgg19")}
    assert set(entries) == {
        "vgg16-torchvision",
        "vgg19-torchvision",
        "vgg16-timm",
        "vgg19-timm",
        "vgg16-keras",
        "vgg16-keras-notop",
        "vgg19-keras",
        "vgg19-keras-notop",
    }
    for name, e in entries.items():
        assert (
            e["arch"] == name[:5]
            and e["format"] in weights.FORMATS
            and e["preprocessing"] in weights.PREPROCESSING_PRESETS
        )
        assert e["sha256"] is None  # not known here: never invented
        assert e["preprocessing"] == ("caffe" if "keras" in name else "torchvision")
        assert e["include_top"] == ("notop" not in name)
        assert (e["imagenet_top1"] is None) == ("notop" in name) and e["top1_citation"]
        if e.get("url"):
            assert e["url"].endswith("/" + e["file"])
        else:
            assert e["hf_repo"] == f"timm/{e['arch']}.tv_in1k" and e["hf_file"] == "model.safetensors"
    for name, prefix in (("vgg16-torchvision", "397923af"), ("vgg19-torchvision", "dcbb9e9d")):
        assert entries[name]["sha256_prefix"] == prefix and f"-{prefix}.pth" in entries[name]["file"]
    assert entries["vgg16-torchvision"]["imagenet_top1"] == 71.592
    assert entries["vgg19-torchvision"]["imagenet_top1"] == 72.376
    assert entries["vgg16-keras"]["md5"] == "64373286793e3c8b2b4e3219cbf3544b"
    assert entries["vgg16-keras-notop"]["md5"] == "6d6bbae143d832006294945121d1f1fc"
    assert entries["vgg19-keras"]["md5"] == "cbe5617147190e668d6c5d5026f83318"
    assert entries["vgg19-keras-notop"]["md5"] == "253f8cb515780f3b799900260a226db6"


@pytest.mark.parametrize(
    "container, reader", [("zip", "torch"), ("zip", "pure"), ("legacy", "torch"), ("legacy", "pure"), ("keras", None)]
)
@pytest.mark.slow
def test_truncated_files_give_a_clear_error(tmp_path, weights_dir, monkeypatch, container, reader, keras_layers):
    if container == "keras":
        layers = {k: v for k, v in keras_layers.items() if k.startswith("block1")}
        path = write_keras_h5(tmp_path / "cut.h5", layers, blocks=(2,), include_top=False)
    else:
        torch = pytest.importorskip("torch")
        path = tmp_path / "cut.pth"
        torch.save(
            {"features.0.weight": torch.ones(64, 3, 3, 3)}, path, _use_new_zipfile_serialization=container == "zip"
        )
    if reader == "pure":
        monkeypatch.setattr(weights, "_torch_or_none", lambda: None)
    path.write_bytes(path.read_bytes()[:-300])
    with pytest.raises(WeightsError, match=str(path)) as info:
        weights.port(path, "vgg16")
    assert any(word in str(info.value) for word in ("corrupt", "incomplete", "truncated", "complete?"))
    assert list(weights_dir.iterdir()) == []
