"""Classifiers: the model protocol and registry, your own model, ensembles, scoring, and the
networks (`nets/`, one file per model with its converter) over their weight readers (`weights/`).

    from jaxfool import classifiers

    clf, params = classifiers.load_classifier("lenet")  # (Classifier, params pytree)
    log_p = classifiers.score_images(clf, params, images)  # uint8 [N, 28, 28, 1] -> [N, 10]

A `Classifier` maps uint8 images [B, H, W, C] to logits with its own preprocessing; its params
are a separate pytree. Adding a model is one file in `nets/` and one line in `registry.MODELS`;
your own model without editing the library is `--model=package.module:factory` (`custom`).
Training (`train`, `train_folder`, `retrain_nets`) and datasets (`data`) are modules of this
package, imported by their own path.
"""

from jaxfool.classifiers.ensembles import FITNESS as ENSEMBLE_FITNESS
from jaxfool.classifiers.ensembles import ensemble
from jaxfool.classifiers.nets.torchvision import TORCHVISION_NETS
from jaxfool.classifiers.protocol import (
    COMPUTE_DTYPES,
    DIGIT_LABELS,
    IMAGENET_SHAPE,
    MNIST_SHAPE,
    Classifier,
    InputSpace,
    ModelSpec,
    class_labels,
    imagenet_labels,
    photo_array,
    resize_photo,
    shipped_file,
)
from jaxfool.classifiers.provenance import weights_record
from jaxfool.classifiers.registry import (
    MODELS,
    RANDOM_WEIGHTS,
    ModelRef,
    fitness_name,
    has_ten_crop,
    load_classifier,
    parse_model_ref,
    register_torch_layout,
    weights_file,
    with_center_crop,
    with_compute_dtype,
)
from jaxfool.classifiers.scoring import log_probs, log_softmax, score, score_images

__all__ = [
    "COMPUTE_DTYPES",
    "DIGIT_LABELS",
    "ENSEMBLE_FITNESS",
    "IMAGENET_SHAPE",
    "MNIST_SHAPE",
    "MODELS",
    "RANDOM_WEIGHTS",
    "TORCHVISION_NETS",
    "Classifier",
    "InputSpace",
    "ModelRef",
    "ModelSpec",
    "class_labels",
    "ensemble",
    "fitness_name",
    "has_ten_crop",
    "imagenet_labels",
    "load_classifier",
    "log_probs",
    "log_softmax",
    "parse_model_ref",
    "photo_array",
    "register_torch_layout",
    "resize_photo",
    "score",
    "score_images",
    "shipped_file",
    "weights_file",
    "weights_record",
    "with_center_crop",
    "with_compute_dtype",
]
