"""Tests for the ImageNet networks (CaffeNet, Caffe AlexNet, torchvision AlexNet) and conversion.

Parity: an independent torch reference of each network (`jaxfool.classifiers.torch_reference`,
written
with `torch.nn`) gets random (Kaiming-scaled) weights. The Caffe nets' weights go through
synthetic V1 and V2 `.caffemodel` files written with a tiny protobuf encoder, then
`caffenet_params_from_caffemodel`; torchvision AlexNet's state dict goes straight to
`alexnet_torchvision_params`. The Flax logits must match torch's to 1e-4 of the largest logit.
torch is a test-only dependency (extra `[torch]`); those tests are skipped without it.
"""

from __future__ import annotations

import functools
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from jaxfool.base.npz import WeightsFileError
from jaxfool.classifiers.nets.alexnet import (
    AlexNetTorchvision,
    adaptive_avg_pool,
    alexnet_torchvision_params,
)
from jaxfool.classifiers.nets.caffenet import (
    CaffeNet,
    caffenet_params_from_caffemodel,
    ceil_pool_size,
    lrn,
    max_pool_ceil,
)
from jaxfool.classifiers.nets.conv import grouped_conv
from jaxfool.classifiers.weights.caffemodel import CaffeFormatError, caffe_mean_image

from .conftest import SHARED_DATA, require
from .test_caffemodel import blob_v1, blob_v2, f_bytes, f_varint

CAFFE_MEAN_NPY = SHARED_DATA / "caffe" / "ilsvrc_2012_mean.npy"
MAX_REL_ERROR = 1e-4


def need_torch():
    return pytest.importorskip(
        "torch", reason="torch is the test-only reference implementation and is not installed"
    )


def torch_nets():
    """The torch reference networks; skips the test without torch (a test-only extra)."""
    return pytest.importorskip(
        "jaxfool.classifiers.torch_reference",
        reason="torch is the test-only reference implementation",
    )


# --- Caffe files, written with test_caffemodel.py's protobuf encoder ------------------------


V1_TYPES = {"Convolution": 4, "Dropout": 6, "InnerProduct": 14, "LRN": 15, "Pooling": 17,
            "ReLU": 18, "Softmax": 20}  # fmt: skip


def write_caffemodel(path: Path, layers: list[tuple[str, str, list[np.ndarray]]], layout: str):
    """Writes a NetParameter with V1 `layers` (field 2) or V2 `layer` (field 100) entries."""
    with open(path, "wb") as f:
        f.write(f_bytes(1, "CaffeNet"))
        for name, type_, blobs in layers:
            if layout == "v1":
                msg = f_bytes(4, name) + f_varint(5, V1_TYPES[type_])
                msg += b"".join(f_bytes(6, blob_v1(b)) for b in blobs)
                f.write(f_bytes(2, msg))
            else:
                msg = f_bytes(1, name) + f_bytes(2, type_)
                msg += b"".join(f_bytes(7, blob_v2(b)) for b in blobs)
                f.write(f_bytes(100, msg))
    return path


def caffe_layers(blobs: dict[str, list[np.ndarray]], lrn_before_pool: bool = False):
    """The deploy layer list of CaffeNet / AlexNet with `blobs` for the layers that have weights."""
    stage = ["norm", "pool"] if lrn_before_pool else ["pool", "norm"]
    names = ["conv1", "relu1", *(f"{s}1" for s in stage), "conv2", "relu2",
             *(f"{s}2" for s in stage), "conv3", "relu3", "conv4", "relu4", "conv5", "relu5",
             "pool5", "fc6", "relu6", "drop6", "fc7", "relu7", "drop7", "fc8", "prob"]  # fmt: skip
    types = {"conv": "Convolution", "relu": "ReLU", "pool": "Pooling", "norm": "LRN",
             "fc": "InnerProduct", "drop": "Dropout", "prob": "Softmax"}  # fmt: skip
    layers = [(n, types[n.rstrip("0123456789")], blobs.get(n, [])) for n in names]
    return [lay for lay in layers if lay[2] or lay[1] not in ("Convolution", "InnerProduct")]


def caffe_blobs(model) -> dict[str, list[np.ndarray]]:
    """{layer name: [weights, bias]} in Caffe's blob shapes (OIHW, (out, in))."""
    return {
        name: [m.weight.detach().numpy(), m.bias.detach().numpy()]
        for name, m in model.named_children()
        if hasattr(m, "weight")
    }


@functools.cache
def reference_caffenet(lrn_before_pool: bool):
    """(torch model, its Caffe blobs, a batch of 2 NCHW inputs, torch logits), built once."""
    nets = torch_nets()
    model = nets.caffenet(lrn_before_pool, seed=int(lrn_before_pool))
    x = (np.random.default_rng(7).standard_normal((2, 3, 227, 227)) * 50).astype(np.float32)
    return model, caffe_blobs(model), x, nets.forward(model, x)


@functools.cache
def jit_apply(module):
    return jax.jit(module.apply)


def assert_parity(logits: np.ndarray, reference: np.ndarray, what: str) -> float:
    scale = np.abs(reference).max()
    assert scale > 1.0 and reference.std() > 0.1 * scale, f"{what}: trivial reference logits"
    rel = float(np.abs(logits - reference).max() / scale)
    print(f"{what}: max |logit| {scale:.3g}, max rel. error {rel:.2e}")
    assert rel <= MAX_REL_ERROR, f"{what}: max relative error {rel:.2e}"
    return rel


# --- parity on random weights -------------------------------------------------------------------


@pytest.mark.parametrize("layout", ["v1", "v2"])
@pytest.mark.parametrize("lrn_before_pool", [False, True], ids=["caffenet", "alexnet_caffe"])
def test_caffe_nets_match_torch(tmp_path, lrn_before_pool, layout):
    _, blobs, x, reference = reference_caffenet(lrn_before_pool)
    path = write_caffemodel(
        tmp_path / f"net_{layout}.caffemodel", caffe_layers(blobs, lrn_before_pool), layout
    )
    variables = caffenet_params_from_caffemodel(path, lrn_before_pool=lrn_before_pool)
    path.unlink()  # 244 MB
    assert sum(a.size for a in jax.tree.leaves(variables)) == 60_965_224
    model = CaffeNet(lrn_before_pool=lrn_before_pool)
    logits = np.asarray(jit_apply(model)(variables, x.transpose(0, 2, 3, 1)))
    assert logits.shape == (2, 1000)
    assert_parity(logits, reference, "alexnet_caffe" if lrn_before_pool else "caffenet")
    # The order of pooling and LRN matters: the other variant's logits differ.
    other = reference_caffenet(not lrn_before_pool)[3]
    assert np.abs(other - reference).max() > 10 * MAX_REL_ERROR * np.abs(reference).max()


def test_alexnet_torchvision_matches_torch():
    nets = torch_nets()
    model = nets.alexnet_torchvision(seed=2)
    state_dict = {k: v.numpy() for k, v in model.state_dict().items()}
    variables = alexnet_torchvision_params(state_dict)
    assert sum(a.size for a in jax.tree.leaves(variables)) == 61_100_840
    x = np.random.default_rng(8).standard_normal((2, 3, 224, 224)).astype(np.float32)
    logits = np.asarray(jit_apply(AlexNetTorchvision())(variables, x.transpose(0, 2, 3, 1)))
    assert_parity(logits, nets.forward(model, x), "alexnet_torchvision")


# --- layers -------------------------------------------------------------------------------------


def test_caffenet_feature_map_sizes():
    def conv_sizes(size):
        x = jax.ShapeDtypeStruct((1, size, size, 3), jnp.float32)
        model = CaffeNet()
        variables = jax.eval_shape(model.init, jax.random.key(0), x)
        out, state = jax.eval_shape(
            functools.partial(model.apply, capture_intermediates=True, mutable="intermediates"),
            variables,
            x,
        )
        inter = state["intermediates"]
        return out.shape, [inter[f"conv{i}"]["__call__"][0].shape[1] for i in range(1, 6)]

    # 227: conv1 55 -> pool1 27 -> conv2 27 -> pool2 13 -> conv3..5 13 -> pool5 6 (fc6 9216)
    assert conv_sizes(227) == ((1, 1000), [55, 27, 13, 13, 13])
    # 224: conv1 54 -> pool1 27 with ceil (26 with floor) -> 13 -> pool5 6: still fits fc6
    assert conv_sizes(224) == ((1, 1000), [54, 27, 13, 13, 13])
    assert [ceil_pool_size(n, 3, 2) for n in (55, 27, 13, 54, 26)] == [27, 13, 6, 27, 13]
    for n in (55, 27, 13):
        assert max_pool_ceil(jnp.zeros((1, n, n, 1))).shape[1] == ceil_pool_size(n, 3, 2)


@pytest.mark.parametrize("hw", [(54, 54), (55, 50), (13, 12), (4, 3)])
def test_max_pool_ceil_matches_torch(hw):
    torch = need_torch()
    # all negative, so zero padding instead of -inf would show in the partial last windows
    x = np.random.default_rng(0).standard_normal((2, 5, *hw)).astype(np.float32) - 10
    want = torch.nn.MaxPool2d(3, 2, ceil_mode=True)(torch.from_numpy(x)).numpy()
    got = np.asarray(max_pool_ceil(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    assert got.shape == want.shape
    np.testing.assert_array_equal(got, want)


@pytest.mark.parametrize("channels", [3, 16, 96])
def test_lrn_matches_torch(channels):
    torch = need_torch()
    x = (np.random.default_rng(channels).standard_normal((2, channels, 5, 4)) * 80).astype("f4")
    want = torch.nn.LocalResponseNorm(5, 1e-4, 0.75, 1.0)(torch.from_numpy(x)).numpy()
    got = np.asarray(lrn(x.transpose(0, 2, 3, 1))).transpose(0, 3, 1, 2)
    assert np.abs(want - x).max() > 1.0  # the normalisation is not negligible at this scale
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-5)


def test_lrn_formula():
    a = np.array([1.0, 2.0, 3.0, 4.0], np.float32) * 100
    padded = np.pad(a**2, 2)
    want = [a[c] / (1 + 1e-4 / 5 * padded[c : c + 5].sum()) ** 0.75 for c in range(4)]
    np.testing.assert_allclose(np.asarray(lrn(jnp.asarray(a))), want, rtol=1e-6)


def test_grouped_conv_matches_feature_groups():
    rng = np.random.default_rng(4)
    x = jnp.asarray(rng.standard_normal((2, 9, 8, 6)), jnp.float32)
    k = jnp.asarray(rng.standard_normal((3, 3, 3, 10)), jnp.float32)
    args = (x, k, (2, 1), ((1, 1), (0, 2)))
    kw = {"dimension_numbers": ("NHWC", "HWIO", "NHWC"), "feature_group_count": 2}
    want = jax.lax.conv_general_dilated(*args, **kw)
    np.testing.assert_allclose(grouped_conv(*args, **kw), want, rtol=1e-5, atol=1e-5)


@pytest.mark.parametrize("hw", [(6, 6), (7, 7), (13, 5), (3, 2)])
def test_adaptive_avg_pool_matches_torch(hw):
    torch = need_torch()
    x = np.random.default_rng(1).standard_normal((2, 4, *hw)).astype(np.float32)
    want = torch.nn.AdaptiveAvgPool2d((6, 6))(torch.from_numpy(x)).numpy()
    got = np.asarray(adaptive_avg_pool(jnp.asarray(x.transpose(0, 2, 3, 1)))).transpose(0, 3, 1, 2)
    np.testing.assert_allclose(got, want, rtol=1e-6, atol=1e-6)
    if hw == (6, 6):
        np.testing.assert_array_equal(got, x)  # the identity at 224x224 input


# --- conversion errors --------------------------------------------------------------------------


def small_caffe_blobs() -> dict[str, list[np.ndarray]]:
    """Zero conv1..conv5 blobs of the right shapes (2.3 M values: cheap to write)."""
    shapes = {"conv1": (96, 3, 11, 11), "conv2": (256, 48, 5, 5), "conv3": (384, 256, 3, 3),
              "conv4": (384, 192, 3, 3), "conv5": (256, 192, 3, 3)}  # fmt: skip
    return {k: [np.zeros(s, np.float32), np.zeros(s[0], np.float32)] for k, s in shapes.items()}


def test_caffemodel_missing_fc8(tmp_path):
    blobs = dict(reference_caffenet(False)[1])
    del blobs["fc8"]
    path = write_caffemodel(tmp_path / "no_fc8.caffemodel", caffe_layers(blobs), "v2")
    with pytest.raises(
        WeightsFileError, match=r"no_fc8.caffemodel: missing parameter params/fc8/bias \(1000,\)"
    ):
        caffenet_params_from_caffemodel(path)
    path.unlink()  # 230 MB


@pytest.mark.parametrize("layout", ["v1", "v2"])
def test_caffemodel_wrong_fc6_shape(tmp_path, layout):
    # fc6 with a 10-wide input (fc7, fc8 left out: the fc6 mismatch is reported first)
    blobs = {**small_caffe_blobs(), "fc6": [np.zeros((4096, 10), "f4"), np.zeros(4096, "f4")]}
    path = write_caffemodel(tmp_path / "fc6.caffemodel", caffe_layers(blobs), layout)
    with pytest.raises(
        WeightsFileError,
        match=r"fc6.caffemodel: parameter params/fc6/kernel has shape \(10, 4096\), "
        r"the network expects \(9216, 4096\)",
    ):
        caffenet_params_from_caffemodel(path)


def test_caffemodel_wrong_layer_kind(tmp_path):
    blobs = {**small_caffe_blobs(), "fc7": [np.zeros((2, 2, 1, 1), "f4")]}
    layers = [(n, "Convolution" if n == "fc7" else t, b) for n, t, b in caffe_layers(blobs)]
    path = write_caffemodel(tmp_path / "kind.caffemodel", layers, "v2")
    with pytest.raises(CaffeFormatError, match=r"layer 'fc7' is Convolution with 1 blobs"):
        caffenet_params_from_caffemodel(path)


def zero_state_dict(num_classes: int = 1000) -> dict[str, np.ndarray]:
    """torchvision AlexNet keys and shapes, as zero-memory broadcast views."""
    shapes = {"features.0": (64, 3, 11, 11), "features.3": (192, 64, 5, 5),
              "features.6": (384, 192, 3, 3), "features.8": (256, 384, 3, 3),
              "features.10": (256, 256, 3, 3), "classifier.1": (4096, 9216),
              "classifier.4": (4096, 4096), "classifier.6": (num_classes, 4096)}  # fmt: skip
    zero = np.zeros((), np.float32)
    sd = {}
    for prefix, shape in shapes.items():
        sd[f"{prefix}.weight"] = np.broadcast_to(zero, shape)
        sd[f"{prefix}.bias"] = np.broadcast_to(zero, shape[:1])
    return sd


def test_alexnet_torchvision_state_dict_errors():
    variables = alexnet_torchvision_params(zero_state_dict(10), num_classes=10)
    assert variables["params"]["classifier_6"]["kernel"].shape == (4096, 10)
    with pytest.raises(
        WeightsFileError, match=r"classifier_6/bias has shape \(10,\), the network expects \(1000,"
    ):
        alexnet_torchvision_params(zero_state_dict(10), source="alexnet10.pth")
    sd = zero_state_dict()
    del sd["classifier.4.bias"]
    sd["fc.weight"] = sd["features.0.weight"]
    with pytest.raises(WeightsFileError, match=r"missing keys \['classifier.4.bias'\].*fc.weight"):
        alexnet_torchvision_params(sd)


# --- mean image ---------------------------------------------------------------------------------


def test_caffe_mean_image():
    mean = caffe_mean_image(require(CAFFE_MEAN_NPY))
    assert mean.shape == (256, 256, 3) and mean.dtype == np.float32
    np.testing.assert_allclose(
        mean.mean(axis=(0, 1), dtype=np.float64), [104.0070, 116.6688, 122.6789], atol=1e-4
    )
    assert 94.0 < mean.min() and mean.max() < 131.0


def test_caffe_mean_image_binaryproto_and_errors(tmp_path):
    chw = np.random.default_rng(3).random((3, 256, 256), dtype=np.float32) * 255
    for layout, blob in (("v1", blob_v1), ("v2", blob_v2)):
        path = tmp_path / f"mean_{layout}.binaryproto"
        path.write_bytes(blob(chw[None] if layout == "v1" else chw))
        np.testing.assert_array_equal(caffe_mean_image(path), chw.transpose(1, 2, 0))
    np.save(tmp_path / "mean.npy", chw.astype(np.float64))
    np.testing.assert_array_equal(caffe_mean_image(tmp_path / "mean.npy"), chw.transpose(1, 2, 0))

    np.save(tmp_path / "hwc.npy", chw.transpose(1, 2, 0))
    with pytest.raises(CaffeFormatError, match=r"hwc.npy: mean image has shape \(256, 256, 3\)"):
        caffe_mean_image(tmp_path / "hwc.npy")
    (tmp_path / "small.binaryproto").write_bytes(blob_v1(np.zeros((1, 3, 227, 227), "f4")))
    with pytest.raises(CaffeFormatError, match=r"shape \(1, 3, 227, 227\)"):
        caffe_mean_image(tmp_path / "small.binaryproto")
    with pytest.raises(CaffeFormatError, match="no such file"):
        caffe_mean_image(tmp_path / "absent.npy")
    (tmp_path / "junk.npy").write_bytes(b"not numpy")
    with pytest.raises(CaffeFormatError, match="junk.npy: not a readable .npy"):
        caffe_mean_image(tmp_path / "junk.npy")
    with pytest.raises(CaffeFormatError, match="unknown mean file type"):
        caffe_mean_image(tmp_path / "mean.png")


@pytest.mark.parametrize("k,stride,hw", [(3, 1, 9), (5, 2, 10), (3, 2, 7), (5, 1, 6)])
def test_depthwise_conv_matches_xla(k, stride, hw):
    """The shifted-sum depthwise convolution equals XLA's feature-grouped one (TF SAME pads)."""
    from jax import lax

    from jaxfool.classifiers.nets.conv import depthwise_conv

    x = jax.random.normal(jax.random.key(0), (2, hw, hw, 8))
    w = jax.random.normal(jax.random.key(1), (k, k, 1, 8))
    dn = lax.conv_dimension_numbers(x.shape, w.shape, ("NHWC", "HWIO", "NHWC"))
    kw = dict(dimension_numbers=dn, feature_group_count=8)
    want = lax.conv_general_dilated(x, w, (stride, stride), "SAME", **kw)
    got = depthwise_conv(x, w, (stride, stride), "SAME", **kw)
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), rtol=1e-5, atol=1e-5)
