"""The torchvision-layout zoo against torchvision's own model definitions.

For every architecture: random torchvision weights (fixed torch seeds; biases, BatchNorm scales and
running statistics randomised too, so that a lost or swapped tensor shows) are written with
`torch.save(model.state_dict())`, ported with `jaxviz.weights.port`, and run by our module and by
torchvision on the same input. The logits, and the output of every torchvision block (a module
holding modules with parameters: `features`, `classifier`, `layer4`, `layer4.2`, `downsample`,
Fire, Inception and its branches, dense blocks and layers, transitions) at the same module path,
agree to 1e-4 relative. Inputs are small but keep each spatial step meaningful: ceil-mode pools
that round up (SqueezeNet, GoogLeNet), and pools before the flatten that vary over space
(AlexNet, VGG), so the (C, H, W) -> (H, W, C) reorder of the first dense kernel is exercised.

Parity ports skip the 224x224 forward-pass fingerprint (one extra compile per architecture);
`test_fingerprint_and_verify_cover_batch_stats` runs it.
"""

from __future__ import annotations

import functools
import json
import re
from dataclasses import dataclass
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from safetensors import safe_open

import jaxviz
from jaxviz import taps, weights
from jaxviz.core import as_net
from jaxviz.models import ARCHS, DEFAULT_INPUT, build
from jaxviz.models._torch_layers import max_pool2d
from jaxviz.weights import WeightsError

torch = pytest.importorskip("torch")
from jaxviz import torchvision_peer  # noqa: E402 - after the torch check

try:
    tv = torchvision_peer.import_torchvision()
except ImportError as e:  # pragma: no cover - depends on the environment
    pytest.skip(f"torchvision is not installed ({e})", allow_module_level=True)

RTOL = 1e-4
# XLA:CPU at backend optimisation level 0 compiles DenseNet-121 in 4 s instead of 11 s and runs these
# small inputs about as fast: this file compiles 16 networks once each.
FAST_COMPILE = {"xla_backend_optimization_level": 0}
ZOO = (
    "alexnet",
    "vgg11",
    "vgg11_bn",
    "vgg13",
    "vgg13_bn",
    "vgg16_bn",
    "vgg19_bn",
    "squeezenet1_0",
    "squeezenet1_1",
    "resnet18",
    "resnet34",
    "resnet50",
    "resnet101",
    "resnet152",
    "googlenet",
    "densenet121",
)
# Input side per architecture: AlexNet 127 -> a 3x3 map before the 6x6 adaptive pool; VGG 64 -> 2x2
# before the 7x7 one; SqueezeNet 37 / 33 and GoogLeNet 47 round up at every ceil-mode pool.
SIZES = {"alexnet": 127, "squeezenet1_0": 37, "squeezenet1_1": 33, "googlenet": 47}
SMALL = {"alexnet", "squeezenet1_0", "squeezenet1_1", "resnet18", "resnet50", "googlenet", "densenet121"}
REPO_MANIFEST = Path(jaxviz.__file__).resolve().parents[1] / "weights" / "manifest.json"


@pytest.fixture(autouse=True)
def _own_weights_dir(weights_dir) -> Path:
    """Every test here reads and writes a fresh weights folder (the shared `weights_dir` fixture)."""
    return weights_dir


def _no_fingerprint(variables, arch, include_top, num_classes):
    return {"skipped": "test_zoo parity port"}


@pytest.fixture
def no_fingerprint(monkeypatch):
    """Ports without the 224x224 fingerprint (a compile per architecture; tested once below)."""
    monkeypatch.setattr(weights, "_fingerprint", _no_fingerprint)


def random_torchvision(arch: str, seed: int = 0, **kwargs):
    """torchvision's `arch` in eval mode with random weights, statistics and biases (seeded).

    Convs are He-normal, so activations stay O(1) and the input shows in the logits. The linear
    layers of more than 2**20 weights (VGG's and AlexNet's classifier) are strided views
    `w[o, j] = s[o + j]` of a small random storage: `torch.save` writes only the storage, which
    keeps the .pth small, and `w` still varies along the flattened (C, H, W) axis, so a wrong
    row order of the first dense kernel shows.
    """
    torch.manual_seed(seed)
    if arch == "googlenet":  # as the pretrained file: aux heads present (port drops them)
        kwargs = {"aux_logits": True, "transform_input": True, "init_weights": False, **kwargs}
    with torch.device("meta"):  # every tensor is set below: skip torchvision's own init
        model = getattr(tv.models, arch)(**kwargs)
    model = model.to_empty(device="cpu")
    state = model.state_dict()  # shares storage with the model
    last_bn = "bn3" if "layer1.0.bn3.weight" in state else "bn2"
    with torch.no_grad():
        for name, t in state.items():
            if t.ndim == 4:
                t.normal_(0.0, (2.0 / t[0].numel()) ** 0.5)
            elif t.ndim == 2 and t.numel() > 1 << 20:
                rows, cols = t.shape
                storage = torch.randn(rows + cols - 1) / cols**0.5
                module = model.get_submodule(name.rpartition(".")[0])
                module.weight = torch.nn.Parameter(storage.as_strided((rows, cols), (1, 1)), requires_grad=False)
            elif t.ndim == 2:
                t.normal_(0.0, t.shape[1] ** -0.5)
            elif name.endswith("num_batches_tracked"):
                t.zero_()
            elif name.endswith(("running_mean", "bias")):
                t.normal_(0.0, 0.1)
            elif name.endswith("running_var"):
                t.uniform_(0.5, 1.5)
            else:  # a BatchNorm scale
                t.uniform_(0.5, 1.5)
                # Damp each residual branch, or 50 blocks grow ResNet-152's logits to 1e10.
                if re.fullmatch(rf"layer\d\.\d+\.{last_bn}\.weight", name):
                    t.mul_(0.3)
    return model.eval()


@dataclass
class Case:
    torch_model: object
    pth: Path
    variables: dict
    meta: dict
    port_keys: set[str]  # the tensor names in the ported file


def make_case(arch: str, folder: Path, **kwargs) -> Case:
    """Random torchvision weights -> .pth -> port (without the fingerprint) -> our variables. The ported
    file is deleted once loaded (no test reads it again; AlexNet's is 234 MB, VGG19's 548 MB)."""
    model = random_torchvision(arch, **kwargs)
    pth = folder / f"{arch}.pth"
    torch.save(model.state_dict(), pth)
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(weights, "_fingerprint", _no_fingerprint)
        out = weights.port(pth, arch, out=folder / f"{arch}.safetensors")
    variables, meta = weights.load_variables(out)
    with safe_open(str(out), "np") as f:
        keys = set(f.keys())
    out.unlink()
    return Case(model, pth, variables, meta, keys)


@pytest.fixture(scope="module")
def small_case(module_tmp):
    """`make_case` once per module for the cheap architectures other tests reuse."""
    folder = module_tmp
    return functools.lru_cache(maxsize=None)(lambda arch: make_case(arch, folder))


def nchw(x: np.ndarray):
    return torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))


def rel_err(ours, theirs) -> float:
    ours, theirs = np.asarray(ours, np.float64), np.asarray(theirs, np.float64)
    return float(np.max(np.abs(ours - theirs)) / max(np.max(np.abs(theirs)), 1e-30))


def blocks(model) -> set[str]:
    """Paths of torchvision's modules that hold other modules with parameters (`layer4`,
    `layer4.2`, `features`, `inception4e.branch2`, ...): the blocks whose outputs are compared."""
    return {
        name
        for name, m in model.named_modules()
        if name and next(m.children(), None) is not None and next(m.parameters(), None) is not None
    }


def torch_outputs(model, x: np.ndarray, paths: set[str]) -> dict[str, np.ndarray]:
    """Outputs of the modules at `paths` and of the model (key ""), as NHWC NumPy."""
    outs, hooks = {}, []
    for name, module in model.named_modules():
        if name == "" or name in paths:

            def hook(mod, args, out, name=name):
                out = out.detach().clone()  # later in-place ReLUs and += would change it
                outs[name] = (out.permute(0, 2, 3, 1) if out.ndim == 4 else out).numpy()

            hooks.append(module.register_forward_hook(hook))
    try:
        with torch.no_grad():
            model(nchw(x))
    finally:
        for h in hooks:
            h.remove()
    return outs


def our_outputs(model, variables, x: np.ndarray, paths: set[str]) -> dict[str, np.ndarray]:
    """Outputs of our modules at `paths` (module path with dots) and the logits (key "").

    Only these are captured: capturing every conv and BN would keep XLA from fusing them and
    makes DenseNet's compile several times slower.
    """

    def wanted(module, method):
        return method == "__call__" and ".".join(module.path) in paths

    run = jax.jit(lambda v, x: model.apply(v, x, capture_intermediates=wanted, mutable=["intermediates"]))
    logits, state = run.lower(variables, x).compile(FAST_COMPILE)(variables, x)
    outs = {"": np.asarray(logits)}

    def walk(tree, path):
        for key, value in tree.items():
            if key == "__call__":
                outs[".".join(path)] = np.asarray(value[0])
            else:
                walk(value, (*path, key))

    walk(state["intermediates"], ())
    return outs


# --- parity with torchvision -----------------------------------------------------------------


@pytest.mark.parametrize("arch", ZOO)
@pytest.mark.slow
def test_port_matches_torchvision(arch, tmp_path, small_case):
    case = small_case(arch) if arch in SMALL else make_case(arch, tmp_path)
    assert (case.meta["arch"], case.meta["num_classes"], case.meta["preprocessing"]) == (arch, 1000, "torchvision")
    side = SIZES.get(arch, 64)
    x = np.random.default_rng(0).standard_normal((2, side, side, 3), dtype=np.float32)
    paths = blocks(case.torch_model)
    theirs = torch_outputs(case.torch_model, x, paths)
    ours = our_outputs(build(arch), case.variables, x, paths)
    missing = sorted(set(theirs) - set(ours))
    assert not missing, f"torchvision blocks that {arch} lacks (or that never ran): {missing[:5]}"
    worst = {name: rel_err(ours[name].reshape(t.shape), t) for name, t in theirs.items()}
    bad = {name: err for name, err in worst.items() if err > RTOL}
    assert not bad, f"{arch}: modules off by more than {RTOL} relative: {dict(list(bad.items())[:5])}"
    assert rel_err(theirs[""][0], theirs[""][1]) > 1e-2  # the input shows in the logits: a real test
    if arch == "googlenet":
        assert "aux1" in case.meta["dropped_tensors"] and "aux2" in case.meta["dropped_tensors"]


@pytest.mark.slow
def test_plain_vgg19_pth_ports_with_torchvisions_logits(tmp_path):
    """Plain VGG19 (`vgg.py`: semantic layer names, so compared on the logits and pool5) from a random
    torchvision `.pth`: seed 002's fourth CNN, whose port no other test runs."""
    case = make_case("vgg19", tmp_path)
    assert (case.meta["arch"], case.meta["num_classes"], case.meta["preprocessing"]) == ("vgg19", 1000, "torchvision")
    x = np.random.default_rng(1).standard_normal((2, 64, 64, 3), dtype=np.float32)
    paths = {"features", ""}
    theirs = torch_outputs(case.torch_model, x, paths)
    model = build("vgg19")
    ours = np.asarray(model.apply(case.variables, jnp.asarray(x)))
    assert rel_err(ours, theirs[""]) <= RTOL and rel_err(theirs[""][0], theirs[""][1]) > 1e-2
    pool5 = np.asarray(taps.output(as_net(model), case.variables, jnp.asarray(x), "pool5")[0])
    assert rel_err(pool5, theirs["features"]) <= RTOL


def test_googlenet_transform_input_is_torchvisions(small_case):
    """The default (pretrained) input transform; `transform_input=False` skips it, as in torchvision."""
    from jaxviz.models.googlenet import renormalize

    x = np.random.default_rng(4).standard_normal((2, 5, 6, 3), dtype=np.float32)
    model = small_case("googlenet").torch_model
    assert model.transform_input and build("googlenet").transform_input
    theirs = model._transform_input(nchw(x)).permute(0, 2, 3, 1).numpy()
    np.testing.assert_allclose(np.asarray(renormalize(jnp.asarray(x))), theirs, rtol=1e-6, atol=1e-6)
    model.transform_input = False
    try:
        assert model._transform_input(nchw(x)) is not None and torch.equal(model._transform_input(nchw(x)), nchw(x))
    finally:
        model.transform_input = True


@pytest.mark.slow
def test_other_num_classes(tmp_path, no_fingerprint):
    case = make_case("squeezenet1_1", tmp_path, num_classes=7)
    assert case.meta["num_classes"] == 7
    x = np.random.default_rng(1).standard_normal((1, 33, 33, 3), dtype=np.float32)
    ours = build("squeezenet1_1", num_classes=7).apply(case.variables, x)
    with torch.no_grad():
        theirs = case.torch_model(nchw(x)).numpy()
    assert ours.shape == (1, 7) and rel_err(ours, theirs) <= RTOL


def test_max_pool2d_matches_torch():
    x = np.random.default_rng(2).standard_normal((1, 21, 20, 2), dtype=np.float32) - 3.0  # all < 0: pads must be -inf
    for size in (15, 16, 17, 20, 21):
        for kernel, stride, padding, ceil in (
            (3, 2, 0, True),
            (3, 2, 1, False),
            (3, 1, 1, True),
            (2, 2, 0, True),
            (3, 2, 1, True),
            (3, 3, 0, True),
        ):
            xs = x[:, :size, : size - 1]
            theirs = torch.nn.functional.max_pool2d(nchw(xs), kernel, stride, padding, ceil_mode=ceil)
            ours = np.asarray(max_pool2d(jnp.asarray(xs), kernel, stride, padding, ceil))
            np.testing.assert_array_equal(
                ours,
                theirs.permute(0, 2, 3, 1).numpy(),
                err_msg=f"size {size} k{kernel} s{stride} p{padding} ceil={ceil}",
            )


# --- the port: formats, names, errors --------------------------------------------------------


def test_safetensors_in_torchvision_layout_ports_the_same(small_case, tmp_path, no_fingerprint):
    from safetensors.numpy import save_file

    case = small_case("resnet18")
    src = tmp_path / "resnet18.safetensors"
    save_file({k: v.numpy() for k, v in case.torch_model.state_dict().items()}, str(src))
    variables, meta = weights.load_variables(weights.port(src, "resnet18", out=tmp_path / "out.safetensors"))
    assert meta["source_format"] == "safetensors" and meta["source_layout"] == "torchvision"
    assert_same_tree(variables, case.variables)
    params, _ = weights.load_weights(tmp_path / "out.safetensors")
    assert_same_tree(params, case.variables["params"])
    assert set(variables) == {"params", "batch_stats"}


def test_old_densenet_key_names_port_the_same(small_case, tmp_path, no_fingerprint):
    case = small_case("densenet121")
    old = {
        re.sub(r"(denselayer\d+\.(?:norm|conv))([12])\.", r"\1.\2.", k): v
        for k, v in case.torch_model.state_dict().items()
    }
    assert "features.denseblock1.denselayer1.norm.1.running_var" in old
    src = tmp_path / "densenet121-old.pth"
    torch.save(old, src)
    variables, _ = weights.load_variables(weights.port(src, "densenet121", out=tmp_path / "out.safetensors"))
    assert_same_tree(variables, case.variables)


def assert_same_tree(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b)):
        np.testing.assert_array_equal(x, y)


def test_batch_stats_key_scheme(small_case):
    case = small_case("resnet18")
    assert {
        "layer1.0.bn1.scale",
        "layer1.0.bn1.bias",
        "batch_stats/layer1.0.bn1.mean",
        "batch_stats/layer1.0.bn1.var",
        "layer4.0.downsample.0.kernel",
        "fc.kernel",
    } <= case.port_keys
    np.testing.assert_array_equal(
        case.variables["batch_stats"]["layer1"]["0"]["bn1"]["var"],
        case.torch_model.state_dict()["layer1.0.bn1.running_var"].numpy(),
    )


@pytest.mark.parametrize(
    "src_arch, arch, first, hint",
    [
        (
            "resnet50",
            "resnet34",
            "'layer1.0.conv1.weight' (-> layer1.0.conv1.kernel) has shape (64, 64, 1, 1), "
            "but resnet34 expects (64, 64, 3, 3)",
            "resnet50",
        ),
        (
            "squeezenet1_0",
            "squeezenet1_1",
            "'features.0.weight' (-> features.0.kernel) has shape (96, 3, 7, 7)",
            "squeezenet1_0",
        ),
        ("resnet18", "densenet121", "'features.conv0.weight' (-> features.conv0.kernel) is missing", "resnet18"),
        ("densenet121", "googlenet", "'conv1.conv.weight' (-> conv1.conv.kernel) is missing", "densenet121"),
        ("googlenet", "vgg16", "unrecognised tensor names", "googlenet"),
        ("alexnet", "vgg16", "'features.0.weight' (-> conv1_1.kernel) has shape (64, 3, 11, 11)", "alexnet"),
    ],
)
def test_wrong_arch_names_the_first_misfit_and_the_right_arch(
    src_arch, arch, first, hint, small_case, tmp_path, weights_dir
):
    src = small_case(src_arch).pth
    out = tmp_path / "out.safetensors"
    with pytest.raises(WeightsError) as info:
        weights.port(src, arch, out=out)
    msg = str(info.value)
    assert first in msg and f"--arch {hint}`" in msg and "\n" not in msg
    assert not out.exists() and list(weights_dir.iterdir()) == []


def test_missing_and_foreign_tensors_are_refused(small_case, tmp_path, weights_dir):
    state = dict(small_case("resnet18").torch_model.state_dict())
    del state["layer2.1.bn2.running_var"]
    src = tmp_path / "cut.pth"
    torch.save(state, src)
    missing = r"'layer2.1.bn2.running_var' \(-> batch_stats/layer2.1.bn2.var\) is missing"
    with pytest.raises(WeightsError, match=missing):
        weights.port(src, "resnet18")
    state = dict(small_case("resnet18").torch_model.state_dict(), **{"layer2.1.extra.weight": torch.ones(3)})
    torch.save(state, src)
    with pytest.raises(WeightsError, match=r"unexpected tensor 'layer2.1.extra.weight' \(3,\)"):
        weights.port(src, "resnet18")
    with pytest.raises(WeightsError, match="Keras files are ported for vgg16, vgg19 only"):
        weights.port(src, "resnet18", fmt="keras")
    assert list(weights_dir.iterdir()) == []


def test_fingerprint_and_verify_cover_batch_stats(small_case, weights_dir):
    case = small_case("squeezenet1_1")
    path = weights.port(small_case("resnet18").pth, "resnet18")  # the real fingerprint at 224x224
    report = weights.verify(path)
    assert report["ok"] and report["fingerprint"] == "ok" and report["tensors"] == 62 + 40
    variables, meta = weights.load_variables(path)
    assert meta["fingerprint"]["output_shape"] == [1, 1000]
    variables["batch_stats"]["layer3"]["1"]["bn2"]["mean"] = variables["batch_stats"]["layer3"]["1"]["bn2"]["mean"] + 1
    weights.save_variables(path, variables, meta)  # the old metadata: only the fingerprint can tell
    with pytest.raises(WeightsError, match="fingerprint differs"):
        weights.verify(path)
    del variables["batch_stats"]
    with pytest.raises(WeightsError, match="batch_stats/bn1.mean is missing"):
        weights.save_variables(path, variables, meta)
    assert weights.verify(weights.port(case.pth, "squeezenet1_1"))["ok"]  # no batch_stats at all


# --- the inverse: torchvision models carrying our weights ----------------------------------


@pytest.mark.parametrize("arch", ["alexnet", "googlenet", "densenet121", "resnet50"])
@pytest.mark.slow
def test_torchvision_model_round_trips(arch, small_case):
    case = small_case(arch)
    peer = torchvision_peer.torchvision_model(arch, case.variables)
    assert not peer.training
    original = {k: v for k, v in case.torch_model.state_dict().items() if not k.startswith(("aux1.", "aux2."))}
    mine = peer.state_dict()
    assert list(mine) == list(original)
    for key, value in original.items():
        assert torch.equal(mine[key], value), key
    side = SIZES.get(arch, 64)
    x = np.random.default_rng(3).standard_normal((1, side, side, 3), dtype=np.float32)
    with torch.no_grad():  # same weights, same torch: equal up to the kernels' summation order
        assert rel_err(peer(nchw(x)).numpy(), case.torch_model(nchw(x)).numpy()) < 1e-5
    if arch == "googlenet":
        as64 = torchvision_peer.torchvision_model(arch, case.variables, dtype=torch.float64)
        assert {p.dtype for p in as64.parameters()} == {torch.float64}
        with torch.no_grad():
            assert rel_err(as64(nchw(x).double()).numpy(), peer(nchw(x)).numpy()) < 1e-5


def test_import_torchvision_is_idempotent():
    assert torchvision_peer.import_torchvision() is torchvision_peer.import_torchvision() is tv


# --- module paths, registry and manifest ------------------------------------------------------


@pytest.mark.parametrize(
    "arch, paths",
    [
        ("resnet50", ["layer4.2.conv3", "layer4.2.bn3", "layer1.0.downsample.0", "layer1.0.downsample.1", "fc"]),
        ("squeezenet1_0", ["features.12.expand3x3", "features.12.squeeze", "classifier.1"]),
        ("squeezenet1_1", ["features.10.expand3x3", "features.10.expand1x1"]),
        ("googlenet", ["conv1.conv", "conv1.bn", "inception4e.branch1.conv", "inception3a.branch4.1.bn", "fc"]),
        (
            "densenet121",
            [
                "features.conv0",
                "features.denseblock4.denselayer16.conv2",
                "features.transition3.conv",
                "features.norm5",
                "classifier",
            ],
        ),
        ("alexnet", ["features.10", "classifier.1", "classifier.6"]),
    ],
)
def test_module_paths_are_torchvisions(arch, paths, small_case):
    """Leaf modules by torchvision's names (blocks, `layer4.2` and the like, are compared in the
    parity test above, by the same paths)."""
    params = small_case(arch).variables["params"]
    for path in paths:
        node = params
        for part in path.split("."):
            node = node[part]
        assert "kernel" in node or "scale" in node, path


def test_registry():
    for arch in ZOO:
        assert arch in ARCHS and DEFAULT_INPUT[arch] == (224, 224, 3)


def test_manifest_entries_are_torchvisions():
    entries = {e["arch"]: e for e in json.loads(REPO_MANIFEST.read_text())["weights"] if e["arch"] in ZOO}
    assert set(entries) == set(ZOO)
    for arch, e in entries.items():
        published = tv.models.get_model_weights(arch).IMAGENET1K_V1
        assert e["name"] == f"{arch}-torchvision" and e["url"] == published.url
        assert e["url"].endswith("/" + e["file"]) and e["file"].endswith(f"-{e['sha256_prefix']}.pth")
        assert e["imagenet_top1"] == published.meta["_metrics"]["ImageNet-1K"]["acc@1"]
        assert (e["format"], e["layout"], e["preprocessing"], e["include_top"], e["num_classes"]) == (
            "torch",
            "torchvision",
            "torchvision",
            True,
            1000,
        )
        assert e["sha256"] is None and arch in e["top1_citation"]
