"""The torchvision-layout ports (resnet18, resnet50, vgg16, mobilenet_v2, vit_b_16) against
torchvision's own model definitions on random weights, through the files users have (a
torch-saved `.pth` and a `.safetensors` of the same state dict), plus the converter's errors.

torchvision is a test-only extra (`[torch]`); the index's wheel is built against the CUDA torch,
so its C++ operator registrations (`torchvision._meta_registrations`, which need `nms`) are
stubbed out before the import: only the Python model definitions are used.
"""

from __future__ import annotations

import sys
import types

import jax
import numpy as np
import pytest

from jaxfool import classifiers
from jaxfool.base.npz import WeightsFileError
from jaxfool.classifiers import preprocess
from jaxfool.classifiers.weights import torch_layout
from jaxfool.classifiers.weights.torch_layout import reference_params

from . import script_runner

MODELS = ("resnet18", "resnet50", "vgg16", "mobilenet_v2", "vit_b_16")


def torchvision_models():
    torch = pytest.importorskip("torch", reason="parity needs torch (pip install -e '.[torch]')")
    sys.modules.setdefault(
        "torchvision._meta_registrations", types.ModuleType("torchvision._meta_registrations")
    )
    models = pytest.importorskip(
        "torchvision.models", reason="parity needs torchvision (pip install -e '.[torch]')"
    )
    return torch, models


def random_torch_net(name: str, seed: int = 0):
    """torchvision's `name` in eval mode, with random normalisation statistics and affine
    parameters (the defaults 0 / 1 would hide a mix-up of mean and variance)."""
    torch, models = torchvision_models()
    torch.manual_seed(seed)
    net = getattr(models, name)().eval()
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, torch.nn.BatchNorm2d):
                m.running_mean.uniform_(-0.5, 0.5)
                m.running_var.uniform_(0.5, 2.0)
            if isinstance(m, torch.nn.BatchNorm2d | torch.nn.LayerNorm):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
        if name == "vit_b_16":  # zero at init: the head and class token would not be tested
            m = net
            m.class_token.normal_()
            m.heads.head.weight.normal_(0, 0.02)
    return net


def torch_logits(net, x: np.ndarray) -> np.ndarray:
    torch, _ = torchvision_models()
    with torch.no_grad():
        return net(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2)))).numpy()


@pytest.fixture(scope="module")
def photos_256():
    """Two 256 x 256 RGB images: a photo-like gradient pattern and noise."""
    rng = np.random.default_rng(0)
    yy, xx = np.mgrid[0:256, 0:256]
    smooth = np.stack([xx, yy, (xx + yy) // 2], -1).astype(np.uint8)
    return np.stack([smooth, rng.integers(0, 256, (256, 256, 3), dtype=np.uint8)])


@pytest.mark.parametrize("name", MODELS)
def test_port_matches_torchvision_from_pth_and_safetensors(name, photos_256, tmp_path):
    torch, _ = torchvision_models()
    st = pytest.importorskip("safetensors.numpy", reason="needs safetensors")
    net = random_torch_net(name)
    pth = tmp_path / f"{name}-random.pth"
    torch.save(net.state_dict(), pth)
    state = {k: v.numpy() for k, v in net.state_dict().items()}
    safe = tmp_path / f"{name}-random.safetensors"
    st.save_file({k: np.ascontiguousarray(v) for k, v in state.items()}, str(safe))
    del state
    x = np.asarray(preprocess.torchvision_eval_input(photos_256))
    want = torch_logits(net, x)
    del net
    for path in (pth, safe):
        clf, params = classifiers.load_classifier(name, path)
        assert clf.num_classes == 1000 and clf.labels[0] == "tench"
        got = np.asarray(jax.jit(clf.logits)(params, photos_256))
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err <= 1e-4, f"{name} from {path.suffix}: max relative error {err:.2e}"
        assert (np.argsort(-got, 1)[:, :5] == np.argsort(-want, 1)[:, :5]).all()


def test_port_matches_torchvision_alexnet_itself(photos_256, tmp_path):
    """alexnet_torchvision (jaxfool/classifiers/nets/alexnet.py) against
    `torchvision.models.alexnet` on the same random weights, through a torch-saved .pth: the
    classifier on photos (torchvision's eval transform, 224 x 224), and the network alone on
    256 x 256 input, where the adaptive average pooling (7 x 7 -> 6 x 6; the identity at 224) and
    the fully connected layers' flatten order both matter."""
    from jaxfool.classifiers.nets.alexnet import AlexNetTorchvision

    torch, models = torchvision_models()
    torch.manual_seed(3)
    net = models.alexnet().eval()
    pth = tmp_path / "alexnet-random.pth"
    torch.save(net.state_dict(), pth)
    clf, params = classifiers.load_classifier("alexnet_torchvision", pth)
    assert clf.num_classes == 1000 and clf.labels[0] == "tench"
    x256 = np.random.default_rng(4).standard_normal((2, 256, 256, 3)).astype(np.float32)
    cases = [
        ("photos", jax.jit(clf.logits)(params, photos_256),
         torch_logits(net, np.asarray(preprocess.torchvision_eval_input(photos_256)))),
        ("256 x 256 input", jax.jit(AlexNetTorchvision().apply)(params, x256),
         torch_logits(net, x256)),
    ]  # fmt: skip
    for what, got, want in cases:
        got = np.asarray(got)
        assert np.abs(want).max() > 1e-3 and want.std(axis=1).min() > 1e-4, "flat logits"
        err = np.abs(got - want).max() / np.abs(want).max()
        assert err <= 1e-4, f"alexnet on {what}: max relative error {err:.2e}"
        assert (np.argsort(-got, 1)[:, :5] == np.argsort(-want, 1)[:, :5]).all(), what


def test_converter_names_a_wrong_file(tmp_path):
    """A state dict of another network, a missing key and a wrong shape: one line each,
    naming the file and the key."""
    from jaxfool.classifiers.nets.resnet import ResNet

    _, models = torchvision_models()
    sd = {k: v.numpy() for k, v in models.resnet18().state_dict().items()}
    ref = reference_params(ResNet(18), (1, 224, 224, 3))
    with pytest.raises(WeightsFileError, match=r"f\.pth: .*resnet50"):
        torch_layout.variables_from_state_dict(
            sd, reference_params(ResNet(50), (1, 224, 224, 3)), "resnet50", "f.pth"
        )
    missing = {k: v for k, v in sd.items() if k != "layer2.0.downsample.1.running_var"}
    with pytest.raises(WeightsFileError, match="missing 1 keys.*downsample.1.running_var"):
        torch_layout.variables_from_state_dict(missing, ref, "resnet18", "f.pth")
    bad = {**sd, "conv1.weight": np.zeros((64, 3, 5, 5), np.float32)}
    with pytest.raises(WeightsFileError, match=r"conv1.weight has shape \(64, 3, 5, 5\)"):
        torch_layout.variables_from_state_dict(bad, ref, "resnet18", "f.pth")
    # a fine-tuned head: the class count comes from the file
    sd10 = {**sd, "fc.weight": np.zeros((10, 512), np.float32), "fc.bias": np.zeros(10, np.float32)}
    (tmp_path / "x.pth").write_bytes(b"not a torch file")
    torch, _ = torchvision_models()
    path = tmp_path / "resnet18-ten.pth"
    torch.save({k: torch.from_numpy(np.asarray(v)) for k, v in sd10.items()}, path)
    clf, _ = classifiers.load_classifier("resnet18", path)
    assert clf.num_classes == 10 and clf.labels[3] == "class 3"
    with pytest.raises(ValueError, match="x.pth"):
        classifiers.load_classifier("resnet18", tmp_path / "x.pth")


def test_rules_of_the_name_map():
    assert torch_layout.torch_key("params/layer1.0.conv1/kernel") == "layer1.0.conv1.weight"
    assert torch_layout.torch_key("batch_stats/bn1/var") == "bn1.running_var"
    assert torch_layout.torch_key("params/encoder.ln/scale") == "encoder.ln.weight"
    assert torch_layout.torch_key("params/encoder.pos_embedding") == "encoder.pos_embedding"
    assert torch_layout.torch_shape("params/fc/kernel", (512, 10)) == (10, 512)
    assert torch_layout.torch_shape("params/c/kernel", (3, 5, 2, 8)) == (8, 2, 3, 5)
    w = np.arange(8 * 2 * 3 * 5, dtype=np.float32).reshape(8, 2, 3, 5)
    hwio = torch_layout.to_flax("params/c/kernel", w)
    assert hwio.shape == (3, 5, 2, 8) and hwio[1, 4, 0, 7] == w[7, 0, 1, 4]


def run_script(name: str, *args: str):

    from .conftest import REPO

    cmd = [sys.executable, str(REPO / "experiments" / f"{name}.py"), *args]
    return script_runner.run(cmd, capture_output=True, text=True, timeout=900)


@pytest.fixture(scope="module")
def resnet50_pth(tmp_path_factory):
    torch, _ = torchvision_models()
    net = random_torch_net("resnet50", seed=1)
    path = tmp_path_factory.mktemp("resnet50") / "resnet50-random.pth"
    torch.save(net.state_dict(), path)
    return net, path


def test_classify_prints_torchvisions_top5(resnet50_pth, tmp_path):
    """classify.py on a 256 x 256 photo: torchvision's own transforms and network give the
    same five classes and probabilities (to 1e-4)."""
    import json

    from PIL import Image

    from .conftest import REPO

    torch, _ = torchvision_models()
    transforms = pytest.importorskip("torchvision.transforms")
    net, path = resnet50_pth
    photo = tmp_path / "chelsea256.png"
    Image.open(REPO / "tests" / "data" / "photos" / "chelsea.png").convert("RGB").resize(
        (256, 256)
    ).save(photo)
    res = run_script("classify", "--model=resnet50", f"--weights={path}", "--json", str(photo))
    assert res.returncode == 0, res.stderr
    got = json.loads(res.stdout.strip().splitlines()[-1])["top"]
    tf = transforms.Compose([
        transforms.Resize(256), transforms.CenterCrop(224), transforms.ToTensor(),
        transforms.Normalize(preprocess.TORCHVISION_MEAN, preprocess.TORCHVISION_STD),
    ])  # fmt: skip
    with torch.no_grad():
        p = torch.softmax(net(tf(Image.open(photo).convert("RGB"))[None]), -1)[0].numpy()
    top = np.argsort(-p)[:5]
    assert [c for c, _, _ in got] == top.tolist()
    np.testing.assert_allclose([q for _, _, q in got], p[top], rtol=1e-4, atol=1e-7)


@pytest.mark.parametrize(
    "model, encoding",
    [("resnet50", "direct"), ("resnet50", "cppn"), ("vit_b_16", "direct"), ("vit_b_16", "cppn")],
)
def test_fool_runs_against_the_new_networks(model, encoding, resnet50_pth, tmp_path):
    import json

    weights = resnet50_pth[1] if model == "resnet50" else "random"
    res = run_script(
        "fool", f"--model={model}", f"--weights={weights}", f"--encoding={encoding}",
        "--population=4", "--generations=2", "--log_every=1", "--classes=1,2",
        f"--out={tmp_path / 'run'}",
    )  # fmt: skip
    assert res.returncode == 0, res.stderr
    summary = json.loads((tmp_path / "run" / "summary.json").read_text())
    assert summary["generations_completed"] == 2 and len(summary["classes"]) == 2


# --- adding a model: one file (here, this test's module) and one registry line ----------------


def tiny_factory(num_classes: int = 1000):
    import flax.linen as nn

    class TinyNet(nn.Module):
        """conv-bn-relu, global pool, linear: layers named as torch's `features.0`, ..."""

        num_classes: int = 1000

        @nn.compact
        def __call__(self, x):
            x = nn.Conv(8, (3, 3), strides=2, padding=((1, 1), (1, 1)), name="features.0")(x)
            x = nn.BatchNorm(use_running_average=True, epsilon=1e-5, name="features.1")(x)
            x = nn.relu(x).mean(axis=(1, 2))
            return nn.Dense(self.num_classes, name="head")(x)

    return TinyNet(num_classes)


def test_adding_a_torch_layout_model_is_one_file_and_one_line(tmp_path):
    torch, _ = torchvision_models()
    tnn = torch.nn
    classifiers.register_torch_layout("tiny_test_net", tiny_factory, "head.bias", "a test net")
    try:
        torch.manual_seed(0)
        ref = tnn.Module()
        ref.features = tnn.Sequential(tnn.Conv2d(3, 8, 3, 2, 1), tnn.BatchNorm2d(8), tnn.ReLU())
        ref.head = tnn.Linear(8, 5)
        with torch.no_grad():
            ref.features[1].running_var.uniform_(0.5, 2.0)
        ref.eval()
        path = tmp_path / "tiny.pth"
        torch.save(ref.state_dict(), path)
        clf, params = classifiers.load_classifier("tiny_test_net", path)
        assert clf.num_classes == 5  # from the file's head
        images = np.random.default_rng(0).integers(0, 256, (3, 256, 256, 3), dtype=np.uint8)
        x = np.asarray(preprocess.torchvision_eval_input(images))
        with torch.no_grad():
            h = ref.features(torch.from_numpy(np.ascontiguousarray(x.transpose(0, 3, 1, 2))))
            h = h.mean((2, 3))
            want = ref.head(h).numpy()
        np.testing.assert_allclose(np.asarray(clf.logits(params, images)), want, atol=1e-5)
        # and fool's library loop runs against it
        from jaxfool import runs

        config = runs.RunConfig(
            model="tiny_test_net", weights=str(path), encoding="cppn", population=4
        )
        loop = runs.LoopConfig(out=str(tmp_path / "run"), generations=2, log_every=1)
        summary = runs.drive(runs.start(config, loop, log=lambda _: None))
        assert summary["model"] == "tiny_test_net" and len(summary["classes"]) == 5
    finally:
        classifiers.MODELS.pop("tiny_test_net")
        classifiers.TORCHVISION_NETS.pop("tiny_test_net")
