"""Classifiers: the model protocol and registry, scoring, preprocessing, networks and
weight readers."""

from jaxfool.classifiers.protocol import COMPUTE_DTYPES, Classifier, InputSpace, ModelSpec
from jaxfool.classifiers.registry import (
    MODELS,
    RANDOM_WEIGHTS,
    load_classifier,
    weights_file,
    with_center_crop,
    with_compute_dtype,
)

__all__ = [
    "COMPUTE_DTYPES",
    "MODELS",
    "RANDOM_WEIGHTS",
    "Classifier",
    "InputSpace",
    "ModelSpec",
    "load_classifier",
    "weights_file",
    "with_center_crop",
    "with_compute_dtype",
]
