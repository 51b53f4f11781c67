"""MNIST IDX reader: the bundled digits, gzip and raw files, and clear errors."""

import gzip
import struct

import numpy as np
import pytest

from jaxfool.classifiers.data import mnist


def test_bundled_digits():
    x, y = mnist.load_mnist(mnist.BUNDLED_DIR, "train")
    assert x.shape == (8000, 28, 28) and x.dtype == np.uint8 and y.shape == (8000,)
    assert list(np.bincount(y)) == [807, 896, 814, 815, 785, 690, 808, 854, 750, 781]
    xt, yt = mnist.load_mnist(mnist.BUNDLED_DIR, "test")
    assert xt.shape == (2000, 28, 28)
    assert list(np.bincount(yt)) == [194, 231, 177, 217, 195, 173, 206, 216, 194, 197]
    assert x.max() == 255 and (x == 0).mean() > 0.7  # white digit on black


def write_split(d, images, labels, gz, prefix="t10k"):
    def blob(magic, arr):
        return struct.pack(">I", magic) + struct.pack(f">{arr.ndim}I", *arr.shape) + arr.tobytes()

    for name, data in (
        (f"{prefix}-images-idx3-ubyte", blob(0x803, images)),
        (f"{prefix}-labels-idx1-ubyte", blob(0x801, labels)),
    ):
        if gz:
            (d / f"{name}.gz").write_bytes(gzip.compress(data))
        else:
            (d / name).write_bytes(data)


@pytest.mark.parametrize("gz", [True, False])
def test_reads_gzip_and_raw(tmp_path, gz):
    imgs = np.random.default_rng(0).integers(0, 256, (5, 28, 28), dtype=np.uint8)
    labels = np.array([1, 2, 3, 4, 5], np.uint8)
    write_split(tmp_path, imgs, labels, gz)
    x, y = mnist.load_mnist(tmp_path, "test")
    np.testing.assert_array_equal(x, imgs)
    np.testing.assert_array_equal(y, labels)


def test_errors_name_the_file(tmp_path):
    imgs = np.zeros((3, 28, 28), np.uint8)
    write_split(tmp_path, imgs, np.zeros(2, np.uint8), gz=False)
    with pytest.raises(mnist.MnistFormatError, match="2 labels for 3 images"):
        mnist.load_mnist(tmp_path, "test")
    path = tmp_path / "t10k-images-idx3-ubyte"
    path.write_bytes(path.read_bytes()[:-10])
    with pytest.raises(mnist.MnistFormatError, match="t10k-images-idx3-ubyte.*declares shape"):
        mnist.load_mnist(tmp_path, "test")
    path.write_bytes(b"\x00\x00\x08\x01" + b"\x00" * 20)
    with pytest.raises(mnist.MnistFormatError, match="bad IDX magic"):
        mnist.load_mnist(tmp_path, "test")
    path.write_bytes(b"\x1f\x8b garbage")
    with pytest.raises(mnist.MnistFormatError, match="corrupt gzip"):
        mnist.load_mnist(tmp_path, "test")
    with pytest.raises(mnist.MnistFormatError, match="no train-images"):
        mnist.load_mnist(tmp_path, "train")
    with pytest.raises(mnist.MnistFormatError, match="not a directory"):
        mnist.load_mnist(tmp_path / "nope", "train")
