"""The original code's run settings and the paper's figures that runs and studies compare with.

Nguyen, Yosinski & Clune (CVPR 2015) ran MAP-Elites with the Sferes2 framework: MNIST with a
population of 200 for 200 generations (their code's runs went to 1001-1010), ImageNet with 400
CPPN genomes (200 direct) for 5000 generations on CaffeNet, ~4 days on 128 CPU cores.
"""

from __future__ import annotations

from typing import Any

# images per classifier call on ImageNet (x10 crops for CaffeNet): ~2 GiB peak on a CPU
IMAGENET_EVAL_CHUNK = 32

# Ten of the classes in the paper's Fig. 8 (peacock, king penguin, starfish, baseball, chainlink
# fence, computer keyboard, electric guitar, freight car, remote control, school bus): the
# 10-class ImageNet presets' archive.
FIG8_CLASSES = (84, 145, 327, 429, 489, 508, 546, 565, 761, 779)

# The original code's published cost, as evaluations per second: ImageNet 5000 generations of
# 400 in ~4 days on 128 cores; MNIST 200 generations of 200 in ~5 minutes on 4 cores.
ORIGINAL_COST = {
    "imagenet": {"evaluations_per_s": 5000 * 400 / (4 * 86400), "hardware": "128 CPU cores"},
    "mnist": {"evaluations_per_s": 200 * 200 / 300, "hardware": "4 CPU cores"},
}

# The paper's median confidence over its 1000-class ImageNet runs on CaffeNet (5000 generations):
# CPPN genomes 88.11%, direct genomes 21.59%.
PAPER_MEDIAN_IMAGENET = {"cppn": 0.8811, "direct": 0.2159}


def original_settings(image_shape: tuple[int, int, int], encoding: str) -> dict[str, Any]:
    """The original code's run settings for images of `image_shape`.

    ImageNet (colour): population 400 for CPPN, 200 for direct, 5000 generations, classifier
    chunks of IMAGENET_EVAL_CHUNK images. MNIST: population 200 and the paper's 200 generations,
    whole-population classifier calls.
    """
    if image_shape[-1] == 3:
        population = 400 if encoding == "cppn" else 200
        return {"population": population, "generations": 5000, "eval_chunk": IMAGENET_EVAL_CHUNK}
    return {"population": 200, "generations": 200, "eval_chunk": None}
