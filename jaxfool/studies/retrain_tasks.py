"""The retraining loop's tasks: MNIST in memory, ImageNet-format folders from disk.

A `Task` is what differs between datasets: the network family, its training and its test
accuracy. `mnist_task` keeps the digits in memory; `folder_task` reads an ImageNet-format
directory (`jaxfool.classifiers.data.folder`) batch by batch. `TaskSettings` are the settings of
retrain.py that choose and size them (validated once), and `setup` turns them into the task,
the genome encoding and DNN_1 (the shipped or a given network, or one trained here).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from pathlib import Path
from typing import Any

import numpy as np
import optax

from jaxfool import classifiers
from jaxfool.base import fileio, npz
from jaxfool.base.errors import ConfigError
from jaxfool.classifiers import retrain_nets, train, train_folder
from jaxfool.classifiers.data.folder import FolderData, scan_image_folder
from jaxfool.classifiers.data.mnist import BUNDLED_DIR, MnistFormatError, load_mnist
from jaxfool.runs import emitter_text
from jaxfool.search.encodings.cppn import CppnEncoding
from jaxfool.search.encodings.direct import DirectEncoding

Params = Any
ENCODINGS = {"direct": DirectEncoding, "cppn": CppnEncoding}  # the genomes retraining supports


@dataclass(frozen=True)
class Task:
    """A dataset and network family. All callables take and return plain arrays / pytrees.

    num_real: real classes n; the fooling class is n.
    classifier(net_params) -> (Classifier, classifier params), for evolution and prediction.
    train(fooling_images, repeats, seed) -> net params with n + 1 outputs, trained on the real
        training data plus each fooling image `repeats` times, labelled n.
    accuracy(net_params) -> top-1 accuracy on the held-out real test data (all outputs
        compete: a real image called "fooling" is wrong).
    """

    num_real: int
    classifier: Callable[[Params], tuple[classifiers.Classifier, Any]]
    train: Callable[[np.ndarray, int, int], Params]
    accuracy: Callable[[Params], float]
    num_train: int


def with_fooling_class(
    images: np.ndarray, labels: np.ndarray, fooling: np.ndarray, fooling_label: int, repeats: int
) -> tuple[np.ndarray, np.ndarray]:
    """Real images [N, ...] + each fooling image `repeats` times, labelled `fooling_label`."""
    extra = np.tile(fooling, (repeats,) + (1,) * (fooling.ndim - 1))
    return (
        np.concatenate([images, extra.astype(images.dtype)]),
        np.concatenate([labels, np.full(len(extra), fooling_label, labels.dtype)]),
    )


def mnist_task(
    train_images: np.ndarray,
    train_labels: np.ndarray,
    test_images: np.ndarray,
    test_labels: np.ndarray,
    steps: int = 10000,
    batch_size: int = 64,
    log_fn: train.LogFn | None = None,
) -> Task:
    """MNIST digits uint8 [N, 28, 28] in memory; DNN_{i+1} is LeNet with 11 outputs trained
    from scratch by Caffe's LeNet solver (`train.train_lenet`) for `steps` steps."""

    def train_fn(fooling: np.ndarray, repeats: int, seed: int) -> Params:
        x, y = with_fooling_class(train_images, train_labels, fooling[..., 0], 10, repeats)
        return train.train_lenet(
            x,
            y,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            num_classes=11,
            log_fn=log_fn,
            log_every=max(1, steps // 5),
        )

    return Task(
        num_real=10,
        classifier=retrain_nets.mnist_classifier,
        train=train_fn,
        accuracy=lambda p: train.accuracy(p, test_images, test_labels),
        num_train=len(train_images),
    )


def folder_task(
    arch: str,
    train_dir: str | Path,
    test_dir: str | Path,
    *,
    image_size: int,
    steps: int,
    batch_size: int,
    optimizer: optax.GradientTransformation,
    consts: dict[str, Any] | None = None,
    log_fn: train.LogFn | None = None,
) -> tuple[Task, FolderData]:
    """The loop's Task for an ImageNet-format train/ and test (val) folder pair.

    Returns the task and the real training data (to train DNN_1 from scratch if no weights).
    """
    consts = consts or {}
    paths, labels, names = scan_image_folder(train_dir)
    test_paths, test_labels, test_names = scan_image_folder(test_dir)
    if test_names != names:
        raise ValueError(f"{test_dir}: class subfolders differ from {train_dir}'s")
    real = FolderData(paths, labels, image_size)
    test = FolderData(test_paths, test_labels, image_size)
    n = len(names)

    def train_fn(fooling: np.ndarray, repeats: int, seed: int) -> Params:
        data = FolderData(paths, labels, image_size, fooling, n, repeats)
        return train_folder.train_folder_net(
            arch,
            n + 1,
            data,
            consts,
            steps=steps,
            batch_size=batch_size,
            seed=seed,
            optimizer=optimizer,
            log_fn=log_fn,
            log_every=max(1, steps // 5),
        )

    task = Task(
        num_real=n,
        classifier=partial(retrain_nets.folder_classifier, arch, names, consts, image_size),
        train=train_fn,
        accuracy=lambda net: train_folder.folder_accuracy(arch, net, consts, test),
        num_train=len(paths),
    )
    return task, real


# --- the task from retrain.py's settings ---------------------------------------------------------


@dataclass(frozen=True)
class TaskSettings:
    """The data, the networks' training and the genome of a retraining experiment.

    dataset: "mnist" (data_dir: MNIST IDX files, default the bundled digits; dnn1: a LeNet
    .npz, default the shipped one, or "train") or "folder" (data_dir: train/ and val/, one
    subfolder of images per class; arch "caffenet" (dnn1: a .caffemodel or "train"; mean: its
    mean image) or "tiny" (a small convnet for smoke tests, always trained)). A message that
    starts with "--" is the whole error line (it names several flags, or none has a value).
    """

    dataset: str = "mnist"
    data_dir: str | None = None
    encoding: str = "direct"
    dnn1: str | None = None
    train_steps: int = 10000
    batch_size: int = 64
    arch: str = "tiny"
    image_size: int | None = None
    mean: str | None = None
    base_lr: float = 0.01
    lr_stepsize: int = 100000
    seed: int = 0
    cppn_coords: str = "raw"

    def __post_init__(self):
        def check(ok: bool, field: str, message: str) -> None:
            if not ok:
                raise ConfigError(field, message)

        check(self.dataset in ("mnist", "folder"), "dataset", "choose mnist or folder")
        check(self.cppn_coords in ("raw", "normalized"), "cppn_coords", "choose raw or normalized")
        check(self.encoding in ENCODINGS, "encoding", f"choose {' or '.join(ENCODINGS)}")
        for name in ("train_steps", "batch_size", "lr_stepsize"):
            check(getattr(self, name) >= 1, name, "must be >= 1")
        check(self.base_lr > 0, "base_lr", "must be > 0")
        check(self.seed >= 0, "seed", "must be >= 0")
        if self.dataset != "folder":
            return
        check(self.arch in ("tiny", "caffenet"), "arch", "choose tiny or caffenet")
        check(bool(self.data_dir), "data_dir", "--data_dir is required with --dataset=folder")
        check(
            self.encoding == "cppn",
            "encoding",
            "--encoding: colour images need --encoding=cppn with --dataset=folder",
        )
        check(
            self.arch != "tiny" or self.dnn1 in (None, "train"),
            "dnn1",
            "--dnn1: the tiny net has no weights file; use --dnn1=train",
        )
        check(self.image_size is None or self.image_size >= 8, "image_size", "must be >= 8")
        check(
            self.arch != "caffenet" or self.image_size in (None, 256),
            "image_size",
            "--image_size: caffenet takes 256 x 256 images",
        )


def check_emitter_params(settings: TaskSettings, emitters: list[tuple[str, str, str]]) -> None:
    """Emitter settings that this encoding's emitters do not have (the original emitter's rates
    differ between direct and CPPN genomes), refused before anything is trained: `emitters`
    holds (spec, params text, its field) triples; "" specs are skipped."""
    kind = ENCODINGS[settings.encoding]()
    for spec, text, field in emitters:
        if not spec:
            continue
        try:
            emitter_text.parse_params(text, spec, kind)
        except ValueError as e:
            raise ConfigError(field, f"--{field}: {e}") from None


def check_files(settings: TaskSettings) -> None:
    """The files the settings name exist (read and checked later, by `setup`)."""
    if settings.dnn1 not in (None, "train"):
        kind = fileio.not_a_regular_file(settings.dnn1)
        if kind is not None:
            raise ConfigError("dnn1", f"not a regular file ({kind})")
        if not Path(settings.dnn1).is_file():
            raise ConfigError("dnn1", "no such file")


def setup(settings: TaskSettings, log: Callable[[str], None]) -> tuple[Task, Any, Params]:
    """(task, encoding, DNN_1 params or variables) of the settings; `log` gets the training's
    progress lines. A file that does not fit is a ConfigError naming its setting."""

    def progress(step: int, loss: float, rate: float) -> None:
        log(f"    step {step:>6}  loss {loss:.4f}  {rate:6.1f} steps/s")

    if settings.dataset == "mnist":
        return mnist_setup(settings, log, progress)
    return folder_setup(settings, log, progress)


def mnist_setup(s: TaskSettings, log, progress) -> tuple[Task, Any, Params]:
    """(task, encoding, DNN_1 params) for MNIST."""
    try:
        x, y = load_mnist(s.data_dir or BUNDLED_DIR, "train")
        xt, yt = load_mnist(s.data_dir or BUNDLED_DIR, "test")
    except MnistFormatError as e:
        raise ConfigError("data_dir", f"--data_dir: {e}") from None
    task = mnist_task(x, y, xt, yt, s.train_steps, s.batch_size, progress)
    if s.dnn1 == "train":
        log("training DNN_1 (10 outputs) on the real digits")
        dnn1 = train.train_lenet(
            x,
            y,
            steps=s.train_steps,
            batch_size=s.batch_size,
            seed=s.seed,
            log_fn=progress,
            log_every=max(1, s.train_steps // 5),
        )
    else:
        path = s.dnn1 or classifiers.MODELS["lenet"].default_weights
        try:
            variables, _ = npz.load_params(path)
            dnn1 = variables["params"]
            if train.num_outputs(dnn1) not in (10, 11):
                raise KeyError
        except (npz.WeightsFileError, KeyError, TypeError):
            raise ConfigError("dnn1", f"--dnn1={path}: not a LeNet weights .npz") from None
    shape = (28, 28, 1)
    if s.encoding == "direct":
        encoding = DirectEncoding(shape)
    else:
        encoding = CppnEncoding(shape, coords=s.cppn_coords)
    return task, encoding, dnn1


def folder_setup(s: TaskSettings, log, progress) -> tuple[Task, Any, Params]:
    """(task, encoding, DNN_1 variables) for an ImageNet-format folder."""
    size = s.image_size or (256 if s.arch == "caffenet" else 32)
    consts = {}
    dnn1 = None
    if s.arch == "caffenet":
        weights = s.dnn1 if s.dnn1 not in (None, "train") else classifiers.RANDOM_WEIGHTS
        try:
            _, params = classifiers.load_classifier("caffenet", weights, s.mean)
        except (ValueError, OSError) as e:
            raise ConfigError("dnn1", f"--dnn1/--mean: {e}") from None
        consts = {"mean_227": params["mean_227"]}
        if s.dnn1 not in (None, "train"):
            dnn1 = params["net"]
    optimizer = train_folder.caffe_step_optimizer(s.base_lr, s.lr_stepsize)
    root = Path(s.data_dir)
    try:
        task, real = folder_task(
            s.arch,
            root / "train",
            root / "val",
            image_size=size,
            steps=s.train_steps,
            batch_size=s.batch_size,
            optimizer=optimizer,
            consts=consts,
            log_fn=progress,
        )
    except ValueError as e:
        raise ConfigError("data_dir", f"--data_dir: {e}") from None
    if dnn1 is None:
        log(f"training DNN_1 ({task.num_real} outputs) on the real images")
        dnn1 = train_folder.train_folder_net(
            s.arch,
            task.num_real,
            real,
            consts,
            steps=s.train_steps,
            batch_size=s.batch_size,
            seed=s.seed,
            optimizer=optimizer,
            log_fn=progress,
            log_every=max(1, s.train_steps // 5),
        )
    elif retrain_nets.num_outputs(dnn1) != task.num_real:
        raise ConfigError(
            "dnn1",
            f"--dnn1 has {retrain_nets.num_outputs(dnn1)} outputs but --data_dir has "
            f"{task.num_real} classes",
        )
    return task, CppnEncoding((size, size, 3), coords=s.cppn_coords), dnn1
