"""PNG files and labelled galleries of elites (Pillow)."""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

import numpy as np
from PIL import Image, ImageDraw, ImageFont, UnidentifiedImageError

from jaxfool.base import fileio


def to_pil(image: np.ndarray) -> Image.Image:
    """uint8 [H, W, 1] or [H, W, 3] -> a Pillow image (grayscale or RGB)."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim != 3 or image.shape[-1] not in (1, 3):
        raise ValueError(f"expected uint8 [H, W, 1|3], got {image.dtype} {image.shape}")
    return Image.fromarray(image[..., 0] if image.shape[-1] == 1 else image)


def png_bytes(image: Image.Image) -> bytes:
    buf = io.BytesIO()
    image.save(buf, format="PNG")
    return buf.getvalue()


def save_png(path: str | Path, image: np.ndarray) -> Path:
    """Writes a uint8 HWC image as PNG, atomically and losslessly."""
    return fileio.write_bytes(path, png_bytes(to_pil(image)))


WIDE_GRAY_MODES = ("I;16", "I;16L", "I;16B", "I;16N", "I")  # 16-bit grayscale as Pillow reads it


def eight_bit(image: Image.Image) -> Image.Image:
    """A 16-bit grayscale image (Pillow mode I;16* or I) scaled to 8-bit "L": value / 257,
    rounded, so 65535 -> 255 and 257 * v -> v. Pillow's own convert("L") clips at 255
    instead (most of a 16-bit photo becomes white). Other modes come back unchanged; Pillow
    already reads 16-bit RGB(A) PNGs as 8-bit RGB(A), keeping each sample's high byte."""
    if image.mode not in WIDE_GRAY_MODES:
        return image
    wide = np.asarray(image).astype(np.int64)
    narrow = (np.clip(wide, 0, 65535) * 2 + 257) // 514  # round(v / 257), half up
    return Image.fromarray(narrow.astype(np.uint8))


class ImageFileError(ValueError):
    """An image file that is missing or cannot be decoded (the message names it)."""


READ_ERRORS = (OSError, ValueError, SyntaxError, EOFError, Image.DecompressionBombError)


def load_png(path: str | Path) -> np.ndarray:
    """Reads a PNG back as uint8 [H, W, C] (C = 1 for grayscale; 16-bit grayscale scaled).
    A missing, undecodable or not regular file (a FIFO, a device) raises `ImageFileError`."""
    kind = fileio.not_a_regular_file(path)
    if kind is not None:
        raise ImageFileError(f"{path}: not a regular file ({kind})")
    try:
        with Image.open(path) as im:
            array = np.asarray(eight_bit(im))
    except UnidentifiedImageError:
        raise ImageFileError(f"{path}: not a readable image (unknown format)") from None
    except READ_ERRORS as e:
        reason = " ".join(str(e).split()) or type(e).__name__
        raise ImageFileError(f"{path}: not a readable image ({reason})") from None
    return array[..., None] if array.ndim == 2 else array


def gallery(
    images: np.ndarray, captions: Sequence[str], tile: int = 112, columns: int | None = None
) -> Image.Image:
    """A grid of images [N, H, W, C] scaled to `tile` pixels, each with a caption below: the
    contact sheet of a run (the paper's Fig. 8 puts label and confidence under each image).

    Enlarged images keep their pixels (nearest); shrunk ones are area-averaged (box), which
    shows a high-frequency pattern as the average colour a viewer sees from afar.
    Captions may hold several lines separated by newlines.
    """
    resample = Image.NEAREST if len(images) and images.shape[1] <= tile else Image.BOX
    n = len(images)
    if n != len(captions):
        raise ValueError(f"{n} images but {len(captions)} captions")
    columns = columns or min(n, max(1, math.ceil(math.sqrt(n * 1.5))))
    rows = math.ceil(n / columns)
    font = ImageFont.load_default()
    line_h = 12
    lines = max(c.count("\n") + 1 for c in captions) if captions else 1
    pad = 6
    cell_w, cell_h = tile + 2 * pad, tile + 2 * pad + lines * line_h
    sheet = Image.new("RGB", (columns * cell_w, rows * cell_h), "white")
    draw = ImageDraw.Draw(sheet)
    for i, (image, caption) in enumerate(zip(images, captions, strict=True)):
        x, y = (i % columns) * cell_w + pad, (i // columns) * cell_h + pad
        sheet.paste(to_pil(image).convert("RGB").resize((tile, tile), resample), (x, y))
        for j, text in enumerate(caption.split("\n")):
            draw.text((x, y + tile + 2 + j * line_h), text, fill="black", font=font)
    return sheet


def save_gallery(path: str | Path, images: np.ndarray, captions: Sequence[str], **kw) -> Path:
    return fileio.write_bytes(path, png_bytes(gallery(images, captions, **kw)))
