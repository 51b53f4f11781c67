"""Evolve fooling images: MAP-Elites over a classifier's classes (the paper's main experiment).

    python experiments/fool.py                      # MNIST LeNet, CPPN encoding, 200 gens
    python experiments/fool.py --model=lenet_paper --weights=PATH/lenet_iter_10000
    python experiments/fool.py --flagfile=experiments/configs/fig8_caffenet.flags \
        --weights=bvlc_reference_caffenet.caffemodel   # the paper's ImageNet run

Flags -> `experiment.RunConfig` (what is computed) and `LoopConfig` (how it is driven) ->
`experiment.start` and `drive`. Writes DIR/summary.json, metrics.jsonl, progress.png,
gallery.png, classes.csv, config.json, manifest.json, elites/ and checkpoint/ (see README).
"""

from jaxfool import cli

STOP = cli.Stop()  # first of all: a Ctrl-C while JAX loads or compiles is handled too

import json
import shlex
import sys
from pathlib import Path

from absl import flags, logging

from jaxfool import classifiers, evolve, experiment
from jaxfool.cli import FlagError

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lenet", f"Classifier: {', '.join(classifiers.MODELS)}.")
flags.DEFINE_string("weights", None, "Weights file (default: the model's shipped weights).")
flags.DEFINE_string(
    "mean",
    None,
    "Mean image (.binaryproto/.npy) subtracted before scaling, as the "
    "paper's MNIST evaluation prototxt does. Default: none, as trained.",
)
flags.DEFINE_string("encoding", "cppn", f"Genome encoding: {', '.join(experiment.ENCODINGS)}.")
flags.DEFINE_integer(
    "population",
    None,
    "Children per generation (even). Default: the original's, 400 for ImageNet CPPN, else 200.",
)
flags.DEFINE_integer(
    "initial_population", None, "Random genomes at the start (default: population)."
)
flags.DEFINE_integer(
    "generations",
    None,
    "Generations to run. Default: 200 for MNIST (the paper's figures), 5000 for ImageNet.",
)
flags.DEFINE_integer("seed", 0, "Random seed; the same seed gives the same run on one machine.")
flags.DEFINE_string(
    "classes", None, "Class indices to evolve, e.g. '0,3,7' or '0-4' (default: all)."
)
flags.DEFINE_string("out", None, "Run directory (default: runs/<time>_<model>_<encoding>_s<seed>).")
flags.DEFINE_bool("overwrite", False, "Replace a previous run in --out (only the files it wrote).")
flags.DEFINE_integer("log_every", 25, "Generations per host call: a progress line, a metrics row.")
flags.DEFINE_integer(
    "checkpoint_every", 0, "Also checkpoint every this many generations (0: at the end only)."
)
flags.DEFINE_string(
    "resume",
    None,
    "Continue the run in this directory up to --generations, exactly "
    "as if it had never stopped; its settings are kept.",
)
flags.DEFINE_integer(
    "eval_chunk",
    None,
    "Images per classifier call, per device; bounds peak memory "
    f"(CaffeNet: x10 crops). Default: all for MNIST, {evolve.IMAGENET_EVAL_CHUNK} "
    "for ImageNet models.",
)
flags.DEFINE_bool(
    "ten_crop",
    True,
    "caffenet/alexnet_caffe fitness: softmax averaged over the 10 "
    "standard 227 crops (original); --noten_crop: the centre crop only.",
)
flags.DEFINE_string(
    "direct_genes",
    "auto",
    "Direct genomes as float32 genes (original) or uint8 "
    "pixel bytes (4x smaller); auto: uint8 for colour, float32 for MNIST.",
)
flags.DEFINE_bool("shard", True, "Split each generation's population over all devices (when > 1).")
flags.DEFINE_string(
    "coordinator_address",
    None,
    "Multi-host: host:port of process 0; with "
    "--num_processes and --process_id. Only process 0 writes files.",
)
flags.DEFINE_bool(
    "distributed",
    False,
    "Multi-host: jax.distributed.initialize() detects the "
    "cluster itself (Cloud TPU pod slices, SLURM).",
)
flags.DEFINE_integer("num_processes", None, "Multi-host: number of processes.")
flags.DEFINE_integer("process_id", None, "Multi-host: this process's index (0 writes files).")
flags.DEFINE_float("mutation_rate", 0.1, "Per-gene mutation probability (direct).")
flags.DEFINE_string(
    "cppn_coords", "raw", "CPPN x, y inputs: raw pixel indices (original) or normalized [-1, 1]."
)
flags.DEFINE_string("cppn_color", "hls", "Colour CPPN outputs read as hls (original) or hsv.")
flags.DEFINE_integer("max_nodes", 64, "CPPN node capacity (inputs and outputs included).")
flags.DEFINE_integer("max_edges", 256, "CPPN connection capacity.")
flags.DEFINE_string(
    "mutation_schedule",
    "constant",
    "constant (original code) or halving: the rate halves every 1000 generations (paper).",
)
flags.DEFINE_float(
    "crossover_rate", 0.5, "SBX probability per parent pair (direct); 0: mutation only."
)
flags.DEFINE_string(
    "sbx_equal_genes",
    "copy",
    "SBX on equal parent genes: copy (default) or half, the original's 0.5-fill quirk.",
)


def join_cluster() -> None:
    """Multi-host: joins the other processes (before anything touches the devices)."""
    import jax

    multi = (FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    if any(v is not None for v in multi) and any(v is None for v in multi):
        raise FlagError("--coordinator_address, --num_processes and --process_id go together")
    if FLAGS.num_processes is not None and not 0 <= FLAGS.process_id < FLAGS.num_processes:
        raise FlagError(f"--process_id={FLAGS.process_id}: must be in [0, --num_processes)")
    if FLAGS.coordinator_address is not None:
        jax.distributed.initialize(FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    elif FLAGS.distributed:
        jax.distributed.initialize()


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.resume and FLAGS.out and Path(FLAGS.out).resolve() != Path(FLAGS.resume).resolve():
        raise FlagError("--out and --resume name different directories; a run resumes in place")
    config = cli.from_flags(experiment.RunConfig)
    loop = cli.from_flags(experiment.LoopConfig, out=FLAGS.resume or FLAGS.out)
    if FLAGS.resume:
        given = cli.given_flags()
        config, loop, _ = experiment.resumed_configs(FLAGS.resume, config, loop, given)
    join_cluster()
    import jax

    def log(msg: str) -> None:
        if jax.process_index() == 0:
            print(msg, flush=True)

    resuming = bool(FLAGS.resume)
    run = experiment.start(config, loop, resuming, STOP, shlex.join(sys.argv), log)
    out, cfg = run.dir.path, run.evolution
    if resuming:
        log(f"resuming {out} at generation {int(run.state.generation)}")
    log(
        f"run directory {out}  ({cfg.classifier.name}, {run.config.encoding}, "
        f"{len(cfg.classes)} classes, population {cfg.population}, "
        f"{run.loop.generations} generations, seed {run.config.seed})"
    )
    summary = experiment.drive(run, STOP, resuming)
    if not run.writer:
        return
    if summary["nan_scores"]:
        cli.fail(
            f"the classifier returned NaN scores for {summary['nan_scores']} images (check "
            f"--weights/--mean); those never entered the archive; outputs are in {out}",
            code=3,
        )
    if STOP:
        log(f"{summary['status']}; outputs and checkpoint written; continue with --resume={out}")
    above = summary["num_classes_above"]
    log(
        f"done: median confidence {summary['median_confidence']:.6f}, >=0.9999 "
        f"{above['0.9999']}/{len(cfg.classes)} classes; peak host memory "
        f"{summary['peak_host_rss_mib']} MiB; wrote {out}/summary.json"
    )
    print(json.dumps({k: summary[k] for k in ("median_confidence", "num_classes_above")}))


if __name__ == "__main__":
    cli.run(main)
