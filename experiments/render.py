"""Re-render saved elite genomes at any resolution (CPPN images are resolution-independent).

    python experiments/render.py --size=1024 runs/RUN/elites/0003_3.npz
    python experiments/render.py --size=512 --out=posters runs/RUN      # every elite of a run

Writes <stem>_<size>.png next to each genome (or in --out). At the genome's native size the
render is byte-identical to the image that was scored. Direct genomes have one resolution.
"""

from __future__ import annotations

from pathlib import Path

import jax
import numpy as np
from absl import flags, logging

from jaxfool import cli, images, runs
from jaxfool.cli import FlagError
from jaxfool.encodings.cppn import CppnEncoding
from jaxfool.weights.npz import WeightsFileError

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
        elif path.is_file():
            files.append(path)
        else:
            raise FlagError(f"{path}: no such genome file or run directory")
    if not files:
        raise FlagError("name at least one genome file or run directory")
    return files


def render_file(path: Path, size: int | None) -> tuple[np.ndarray, int]:
    encoding, genome, _ = runs.load_genome(path)
    native = encoding.image_shape[0]
    size = size or native
    if isinstance(encoding, CppnEncoding):
        image = jax.jit(encoding.render, static_argnums=1)(genome, size)
    elif size == native:
        image = encoding.express(genome)
    else:
        raise FlagError(f"{path}: a direct genome has one resolution ({native}), not {size}")
    return np.asarray(image[0]), size


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if FLAGS.size is not None and not 2 <= FLAGS.size <= 16384:
        raise FlagError(f"--size={FLAGS.size}: must be in 2..16384")
    for path in genome_files(argv[1:]):
        try:
            image, size = render_file(path, FLAGS.size)
        except WeightsFileError as e:
            raise FlagError(str(e)) from None
        out_dir = Path(FLAGS.out) if FLAGS.out else path.parent
        target = out_dir / f"{path.stem}_{size}.png"
        if target.exists() and not FLAGS.overwrite:
            raise FlagError(f"{target} exists; pass --overwrite to replace it")
        images.save_png(target, image)
        print(target, flush=True)


if __name__ == "__main__":
    cli.run(main)
