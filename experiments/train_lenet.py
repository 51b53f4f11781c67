"""Trains Caffe's MNIST LeNet (Caffe's solver, reproduced with optax) and saves its weights.

    python experiments/train_lenet.py                      # bundled 8,000/2,000 digits, seed 0
    python experiments/train_lenet.py --data_dir=/path/to/full/mnist --out=/tmp/lenet.npz

Trains on the train split and reports top-1 accuracy on the test split. Writes a flat `.npz`
(`jaxfool.base.npz.save_params`) of the Flax variables {"params": ...}, keys such as
`params/conv1/kernel` as the classifier registry loads them, with the run's metadata; prints a
one-line JSON summary.
Bad flags give a one-line error naming the flag and exit code 2.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from absl import flags

from jaxfool.base import cli
from jaxfool.base.cli import FlagError
from jaxfool.classifiers.data.mnist import BUNDLED_DIR, MnistFormatError, load_mnist

REPO_ROOT = Path(__file__).resolve().parents[1]
SHIPPED = REPO_ROOT / "models" / "lenet_mnist.npz"  # made with --out=models/lenet_mnist.npz

_DATA_DIR = flags.DEFINE_string("data_dir", str(BUNDLED_DIR), "Directory of MNIST IDX files.")
_SEED = flags.DEFINE_integer("seed", 0, "Seed for the initial weights and the batch order.")
_STEPS = flags.DEFINE_integer("steps", 10000, "SGD iterations (Caffe's max_iter is 10,000).")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 64, "Batch size (Caffe's LeNet uses 64).")
_OUT = flags.DEFINE_string(
    "out", None, "The .npz weights file to write (default: runs/lenet_mnist_s<seed>.npz)."
)
_OVERWRITE = flags.DEFINE_bool("overwrite", False, "Replace --out if it already exists.")
_LOG_EVERY = flags.DEFINE_integer("log_every", 500, "Print a progress line every this many steps.")


def file_in_the_way(path: Path) -> Path | None:
    """The first of `path` and its parents that exists and is not a directory, if any."""
    for p in (path, *path.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def check_flags() -> None:
    """Raises `FlagError` for the first bad flag value (checked before any training)."""
    for flag in (_STEPS, _BATCH_SIZE, _LOG_EVERY):
        if flag.value < 1:
            raise FlagError(f"--{flag.name} must be >= 1, got {flag.value}")
    if _SEED.value < 0:
        raise FlagError(f"--seed must be >= 0, got {_SEED.value}")
    if _OUT.value is None:  # never the shipped models/lenet_mnist.npz unless asked for
        flags.FLAGS.out = f"runs/lenet_mnist_s{_SEED.value}.npz"
    out = Path(_OUT.value)
    if out.is_dir():
        raise FlagError(f"--out={out} is a directory; give the path of a .npz file")
    blocker = file_in_the_way(out.parent)
    if blocker is not None:
        raise FlagError(f"--out={out}: {blocker} is a file, not a directory")
    if out.exists() and not _OVERWRITE.value:
        raise FlagError(f"--out={out} already exists; pass --overwrite to replace it")


def load_split(split: str):
    """Loads one split of --data_dir, turning a bad directory into a `FlagError`."""
    try:
        return load_mnist(_DATA_DIR.value, split)
    except MnistFormatError as e:
        raise FlagError(f"--data_dir: {e}") from None


def run() -> dict:
    """Trains, evaluates and saves; returns the summary (also stored as the file's meta)."""
    check_flags()
    train_images, train_labels = load_split("train")
    test_images, test_labels = load_split("test")

    import jax  # imported late so that flag errors come back fast

    from jaxfool.base.npz import save_params
    from jaxfool.classifiers import train

    def log(step: int, loss: float, rate: float) -> None:
        print(f"step {step:>6}/{_STEPS.value}  loss {loss:.4f}  {rate:7.1f} steps/s", flush=True)

    print(
        f"training LeNet on {len(train_images)} digits from {_DATA_DIR.value}: "
        f"{_STEPS.value} steps, batch {_BATCH_SIZE.value}, seed {_SEED.value}",
        flush=True,
    )
    t0 = time.perf_counter()
    params = train.train_lenet(
        train_images,
        train_labels,
        steps=_STEPS.value,
        batch_size=_BATCH_SIZE.value,
        seed=_SEED.value,
        log_fn=log,
        log_every=_LOG_EVERY.value,
    )
    train_seconds = time.perf_counter() - t0
    test_accuracy = train.accuracy(params, test_images, test_labels)
    print(f"test accuracy {test_accuracy:.4f} on {len(test_images)} digits", flush=True)
    meta = {
        "model": "LeNet (Caffe examples/mnist), jaxfool.classifiers.nets.lenet.LeNet",
        "preprocessing": "pixel/256, white digit on black, NHWC [B, 28, 28, 1]",
        "data_dir": str(_DATA_DIR.value),
        "num_train": len(train_images),
        "num_test": len(test_images),
        "seed": _SEED.value,
        "steps": _STEPS.value,
        "batch_size": _BATCH_SIZE.value,
        "test_accuracy": test_accuracy,
        "train_seconds": round(train_seconds, 1),
        "jax_version": jax.__version__,
        "command": shlex.join(sys.argv),
    }
    if Path(_OUT.value).exists() and not _OVERWRITE.value:  # it may have appeared meanwhile
        raise FlagError(f"--out={_OUT.value} already exists; pass --overwrite to replace it")
    save_params(_OUT.value, {"params": params}, meta)  # Flax variables: keys params/conv1/...
    return {"out": str(_OUT.value), **meta}


def main(argv: list[str]) -> None:
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    print(json.dumps(run()))


if __name__ == "__main__":
    cli.run(main)
