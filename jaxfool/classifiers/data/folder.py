"""ImageNet-format image folders: one subfolder of images per class, read batch by batch.

`scan_image_folder` lists the files and labels, `load_images` decodes and resizes them, and
`FolderData` serves training batches of the real images (from disk) followed by in-memory
extra images under one label (the retraining experiment's fooling class).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image

from jaxfool.base import images

IMAGE_SUFFIXES = (".png", ".jpg", ".jpeg", ".bmp", ".ppm", ".gif", ".webp")


def scan_image_folder(root: str | Path) -> tuple[list[Path], np.ndarray, tuple[str, ...]]:
    """(paths, labels int32, class names) of an ImageNet-format folder: one subfolder per
    class (sorted names = class order, as torchvision's ImageFolder and the WNID order)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"{root}: not a directory")
    names = tuple(sorted(d.name for d in root.iterdir() if d.is_dir()))
    if not names:
        raise ValueError(f"{root}: no class subfolders")
    paths, labels = [], []
    for label, name in enumerate(names):
        files = sorted(p for p in (root / name).iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
        paths += files
        labels += [label] * len(files)
    if not paths:
        raise ValueError(f"{root}: no images in its class subfolders")
    return paths, np.asarray(labels, np.int32), names


def load_images(paths: Sequence[Path], size: int) -> np.ndarray:
    """uint8 RGB [N, size, size, 3]: each file resized (bilinear, aspect not kept) to size^2,
    as Caffe's convert_imageset --resize_height/width does for the ImageNet LMDB."""
    out = np.empty((len(paths), size, size, 3), np.uint8)
    for i, path in enumerate(paths):
        with Image.open(path) as im:
            im = images.eight_bit(im).convert("RGB")  # 16-bit gray: scaled, not clipped
            if im.size != (size, size):
                im = im.resize((size, size), Image.BILINEAR)
            out[i] = np.asarray(im)
    return out


@dataclass
class FolderData:
    """Real images (files, read per batch) followed by in-memory fooling images (each
    `repeats` times, labelled `fooling_label`)."""

    paths: list[Path]
    labels: np.ndarray
    image_size: int
    fooling: np.ndarray | None = None
    fooling_label: int = -1
    repeats: int = 0

    def __len__(self) -> int:
        extra = 0 if self.fooling is None else len(self.fooling) * self.repeats
        return len(self.paths) + extra

    def batch(self, index: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        real = index < len(self.paths)
        out = np.empty((len(index), self.image_size, self.image_size, 3), np.uint8)
        labels = np.empty(len(index), np.int32)
        if real.any():
            out[real] = load_images([self.paths[i] for i in index[real]], self.image_size)
            labels[real] = self.labels[index[real]]
        if (~real).any():
            j = (index[~real] - len(self.paths)) % len(self.fooling)
            out[~real] = self.fooling[j]
            labels[~real] = self.fooling_label
        return out, labels
