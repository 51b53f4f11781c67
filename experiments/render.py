"""Re-render saved elite genomes at any resolution (CPPN images, `cppn` and `dense_cppn`,
are resolution-independent).

    python experiments/render.py --size=1024 runs/RUN/elites/0003_3.npz
    python experiments/render.py --size=512 --out=posters runs/RUN      # every elite of a run

Writes <stem>_<size>.png next to each genome (or in --out). At the genome's native size the
render is byte-identical to the image that was scored. Direct genomes have one resolution.
Every genome is read and every target checked before the first PNG is written.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from absl import flags, logging

from jaxfool import runs
from jaxfool.base import cli, fileio, images
from jaxfool.base.cli import FlagError
from jaxfool.base.npz import WeightsFileError

FLAGS = flags.FLAGS
flags.DEFINE_integer("size", None, "Output size in pixels (default: the genome's native size).")
flags.DEFINE_string("out", None, "Directory for the PNGs (default: beside each genome).")
flags.DEFINE_bool("overwrite", False, "Replace existing PNGs.")


def genome_files(args: list[str]) -> list[Path]:
    """Genome .npz files named on the command line; a run directory means its elites/*.npz."""
    files = []
    for arg in args:
        path = Path(arg)
        if path.is_dir():
            found = sorted((path / "elites").glob("*.npz"))
            if not found:
                raise FlagError(f"{path}: no elites/*.npz genome files (is it a run directory?)")
            files.extend(found)
        elif path.exists() and fileio.not_a_regular_file(path) is None:
            files.append(path)
        elif path.exists():
            raise FlagError(f"{path}: not a regular file ({fileio.not_a_regular_file(path)})")
        else:
            raise FlagError(f"{path}: no such genome file or run directory")
    if not files:
        raise FlagError("name at least one genome file or run directory")
    return files


def file_in_the_way(path: Path) -> Path | None:
    """The first of `path` and its parents that exists and is not a directory, if any."""
    for p in (path, *path.parents):
        if p.exists():
            return None if p.is_dir() else p
    return None


def check_out_dir(out: str | None) -> Path | None:
    """--out as a Path; a FlagError when it, or a parent, is a file."""
    if not out:
        return None
    path = Path(out)
    blocker = file_in_the_way(path)
    if blocker == path:
        raise FlagError(f"--out={out}: a file, not a directory")
    if blocker is not None:
        raise FlagError(f"--out={out}: {blocker} is a file, not a directory")
    return path


def load(path: Path, size: int | None) -> tuple[object, object, int]:
    """(encoding, genome, size to render) of a genome file, checked before any rendering."""
    try:
        encoding, genome, _ = runs.store.load_genome(path)
    except WeightsFileError as e:
        raise FlagError(str(e)) from None
    native = encoding.image_shape[0]
    size = size or native
    if not hasattr(encoding, "render") and size != native:
        raise FlagError(f"{path}: a direct genome has one resolution ({native}), not {size}")
    return encoding, genome, size


def render(encoding, genome, size: int) -> np.ndarray:
    """uint8 [size, size, C]: a CPPN (either kind) at any size, a direct genome at its own."""
    if hasattr(encoding, "render"):
        return np.asarray(jax.jit(encoding.render, static_argnums=1)(genome, size)[0])
    return np.asarray(encoding.express(genome)[0])


def plan(files: list[Path], out_dir: Path | None) -> list[tuple[Path, Path]]:
    """(genome, target PNG) pairs, every genome read once and every target checked: none may
    exist (unless --overwrite) or be named twice."""
    jobs, seen = [], set()
    for path in files:
        _, _, size = load(path, FLAGS.size)
        target = (out_dir or path.parent) / f"{path.stem}_{size}.png"
        if target in seen:
            raise FlagError(f"{target}: two genomes would render to the same file")
        if target.is_dir():
            raise FlagError(f"{target}: a directory is in the way of the PNG")
        if target.exists() and not FLAGS.overwrite:
            raise FlagError(f"{target} exists; pass --overwrite to replace it")
        seen.add(target)
        jobs.append((path, target))
    return jobs


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if FLAGS.size is not None and not 2 <= FLAGS.size <= 16384:
        raise FlagError(f"--size={FLAGS.size}: must be in 2..16384")
    out_dir = check_out_dir(FLAGS.out)
    for path, target in plan(genome_files(argv[1:]), out_dir):
        image = render(*load(path, FLAGS.size))
        try:
            images.save_png(target, image)
        except OSError as e:
            raise FlagError(f"{target}: cannot write ({e.strerror or e})") from None
        print(target, flush=True)


if __name__ == "__main__":
    cli.run(main)
