"""Classify images with any registered model: top-5 labels and probabilities per image.

    python experiments/classify.py --model=efficientnet_lite0 photos/*.png
    python experiments/classify.py --model=lenet runs/RUN/elites/*.png

Also how to score someone else's fooling images. Each image gets the model's own
preprocessing (docs/models.md); 16-bit images are scaled to 8 bits first.
"""

from __future__ import annotations

import functools
import json
from pathlib import Path

import jax
import numpy as np
from absl import flags, logging
from PIL import Image, UnidentifiedImageError

from jaxfool import classifiers
from jaxfool.base import cli, images
from jaxfool.base.cli import FlagError
from jaxfool.base.npz import WeightsFileError
from jaxfool.classifiers import scoring

FLAGS = flags.FLAGS
flags.DEFINE_string(
    "model",
    "efficientnet_lite0",
    f"Classifier: {', '.join(classifiers.MODELS)}, or your own as 'package.module:factory'.",
)
flags.DEFINE_string("weights", None, "Weights file (default: the model's own).")
flags.DEFINE_string("mean", None, "Mean image file (models that subtract one).")
flags.DEFINE_integer("top", 5, "How many classes to print per image.")
flags.DEFINE_bool("json", False, "Print one JSON object per image instead of text.")


def read_image(path: Path, channels: int) -> np.ndarray:
    """uint8 [H, W, C] from an image file: grayscale (C = 1) or RGB (C = 3)."""
    try:
        with Image.open(path) as im:
            return classifiers.photo_array(images.eight_bit(im), channels)
    except UnidentifiedImageError:
        raise FlagError(f"{path}: not a readable image (unknown format)") from None
    except images.READ_ERRORS as e:
        raise FlagError(f"{path}: not a readable image ({' '.join(str(e).split())})") from None


def image_paths(args: list[str]) -> list[Path]:
    """The image files named on the command line, each checked to exist."""
    paths = [Path(p) for p in args]
    if not paths:
        raise FlagError("name at least one image file")
    for path in paths:
        if path.is_dir():
            raise FlagError(f"{path}: a directory, not an image file")
        if not path.is_file():
            raise FlagError(f"{path}: no such image file")
    return paths


def main(argv):
    logging.set_verbosity(logging.WARNING)
    paths = image_paths(argv[1:])
    if FLAGS.top < 1:
        raise FlagError(f"--top={FLAGS.top}: must be >= 1")
    try:
        clf, params = classifiers.load_classifier(FLAGS.model, FLAGS.weights, FLAGS.mean)
    except (WeightsFileError, ValueError, OSError) as e:
        raise FlagError(f"--model={FLAGS.model}: {e}") from None
    if FLAGS.model in classifiers.MODELS:
        prepare = classifiers.MODELS[FLAGS.model].prepare_photo
    else:  # your own model: photos resized to its image shape
        height, width = clf.image_shape[:2]
        prepare = functools.partial(classifiers.resize_photo, height=height, width=width)
    log_probs = jax.jit(lambda p, x: scoring.score(clf.logits, p, x))
    for path in paths:
        image = prepare(read_image(path, clf.image_shape[-1]))
        lp = np.asarray(log_probs(params, image[None]))[0].astype(np.float64)
        top = np.argsort(-lp)[: FLAGS.top]
        rows = [(int(k), clf.labels[k], float(np.exp(lp[k]))) for k in top]
        if FLAGS.json:
            print(json.dumps({"image": str(path), "top": [list(r) for r in rows]}))
        else:
            print(f"{path}:")
            for k, label, p in rows:
                print(f"  {k:4d} {label:<30s} {p:.6f}")


if __name__ == "__main__":
    cli.run(main)
