"""Evolve fooling images: MAP-Elites over a classifier's classes (the paper's main experiment).

    python experiments/fool.py                      # MNIST LeNet, CPPN encoding, 200 gens
    python experiments/fool.py --model=lenet_paper --weights=PATH/lenet_iter_10000
    python experiments/fool.py --model=resnet50 --weights=resnet50-0676ba61.pth --classes=0-9
    python experiments/fool.py --models=lenet,lenet_paper:PATH/lenet_iter_10000  # an ensemble
    python experiments/fool.py --flagfile=experiments/configs/fig8_caffenet.flags
        --weights=bvlc_reference_caffenet.caffemodel    # the paper's ImageNet run (one line)

Flags -> `runs.RunConfig` (what is computed) and `LoopConfig` (how it is driven) ->
`runs.start` and `drive`. Writes DIR/summary.json, metrics.jsonl, progress.png,
gallery.png, classes.csv, config.json, manifest.json, elites/ and checkpoint/ (docs/running.md).
"""

from jaxfool.base import cli

STOP = cli.Stop()  # first of all: a Ctrl-C while JAX loads or compiles is handled too

import json
import shlex
import sys
from pathlib import Path

from absl import flags, logging

from jaxfool import classifiers, runs
from jaxfool.base.cli import FlagError
from jaxfool.runs import cluster
from jaxfool.search import encodings

FLAGS = flags.FLAGS
STR, INT, FLOAT, BOOL = (
    flags.DEFINE_string,
    flags.DEFINE_integer,
    flags.DEFINE_float,
    flags.DEFINE_bool,
)
CHUNK = runs.presets.IMAGENET_EVAL_CHUNK
# fmt: off
for define, name, default, text in [
    # what the run computes (runs.RunConfig; a resumed run keeps them)
    (STR, "model", "lenet", f"Classifier: {', '.join(classifiers.MODELS)}, or mod:factory."),
    (STR, "weights", None, "Weights file (default: the model's shipped weights)."),
    (STR, "mean", None, "Mean image (.binaryproto/.npy) to subtract (default: none)."),
    (STR, "models", "", "Ensemble instead of --model: 'name[:weights[:mean]],...' (transfer.py)."),
    (STR, "ensemble_fitness", "mean", "Ensemble fitness: mean or min of the log-probabilities."),
    (STR, "encoding", "cppn", f"Genome encoding: {', '.join(encodings.ENCODINGS)}."),
    (INT, "population", None, "Children per generation, even (default: 200; ImageNet CPPN 400)"),
    (INT, "initial_population", None, "Random genomes at the start (default: --population)."),
    (INT, "seed", 0, "Random seed; the same seed gives the same run on one machine."),
    (STR, "classes", None, "Class indices to evolve, e.g. '0,3,7' or '0-4' (default: all)."),
    (INT, "eval_chunk", None, f"Classifier batch per device (default: all; ImageNet {CHUNK})"),
    (BOOL, "ten_crop", True, "caffenet/alexnet_caffe: mean softmax of the 10 crops (original)."),
    (STR, "compute_dtype", "float32", "Classifier forward dtype: float32 or bfloat16 (GPU/TPU)."),
    (STR, "direct_genes", "auto", "float32 genes (original) or uint8; auto: uint8 for colour."),
    (FLOAT, "mutation_rate", 0.1, "Per-gene mutation probability (direct)."),
    (STR, "mutation_schedule", "constant", "constant (original) or halving every 1000 (paper)."),
    (FLOAT, "crossover_rate", 0.5, "SBX probability per parent pair (direct); 0: mutation only."),
    (STR, "sbx_equal_genes", "copy", "SBX on equal parent genes: copy, or half (original quirk)."),
    (STR, "cppn_coords", "raw", "CPPN x, y inputs: raw pixel indices (original) or normalized."),
    (STR, "cppn_color", "hls", "Colour CPPN outputs read as hls (original) or hsv."),
    (INT, "max_nodes", 64, "CPPN node capacity (inputs and outputs included)."),
    (INT, "max_edges", 256, "CPPN connection capacity."),
    (INT, "dense_layers", 4, "dense_cppn: hidden layers of the fixed-topology CPPN."),
    (INT, "dense_width", 16, "dense_cppn: units per hidden layer."),
    (FLOAT, "dense_input_scale", 4.0, "dense_cppn: coordinate scale (higher: finer patterns)."),
    (STR, "emitter", "original", "Variation: original, isoline, gradient, or a mix 'a:0.5,b:0.5'."),
    (STR, "emitter_params", "", "Emitter settings, e.g. 'gradient.step_max=0.1'."),
    # how it is driven (runs.LoopConfig)
    (INT, "generations", None, "Generations to reach (default: 200 MNIST, 5000 ImageNet)."),
    (STR, "out", None, "Run directory (default: runs/<time>_<model>_<encoding>_s<seed>)."),
    (BOOL, "overwrite", False, "Replace a previous run in --out (only the files it wrote)."),
    (INT, "log_every", 25, "Generations per host call: a progress line, a metrics row."),
    (INT, "checkpoint_every", 0, "Also checkpoint every this many generations (0: at the end)."),
    (STR, "resume", None, "Continue the run in this directory to --generations, exactly."),
    (BOOL, "shard", True, "Split each generation's population over all devices (when > 1)."),
    # multi-host: only process 0 writes files
    (STR, "coordinator_address", None, "Multi-host: process 0's host:port."),
    (INT, "num_processes", None, "Multi-host: number of processes."),
    (INT, "process_id", None, "Multi-host: this process's index (0 writes files)."),
    (BOOL, "distributed", False, "jax.distributed.initialize() finds the cluster (TPU, SLURM)."),
]:
    define(name, default, text)
# fmt: on


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.resume and FLAGS.out and Path(FLAGS.out).resolve() != Path(FLAGS.resume).resolve():
        raise FlagError("--out and --resume name different directories; a run resumes in place")
    if FLAGS.models:
        clash = [f"--{n}" for n in ("model", "weights", "mean") if FLAGS[n].present]
        if clash:
            raise FlagError(f"--models names the networks; drop {', '.join(clash)}")
    loop = cli.from_flags(runs.LoopConfig, out=FLAGS.resume or FLAGS.out)
    if FLAGS.resume:  # the saved settings first, then RunConfig's checks see them together
        values, given = cli.flag_values(runs.RunConfig), cli.given_flags()
        config, loop, _ = runs.store.resumed_configs(FLAGS.resume, values, loop, given)
    else:
        config = cli.from_flags(runs.RunConfig)
    multihost = (FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    cluster.join(*multihost, FLAGS.distributed)  # before anything touches the devices
    import jax

    def log(msg: str) -> None:
        if jax.process_index() == 0:
            print(msg, flush=True)

    resuming = bool(FLAGS.resume)
    run = runs.start(config, loop, resuming, STOP, shlex.join(sys.argv), log)
    out, cfg = run.dir.path, run.evolution
    if resuming:
        log(f"resuming {out} at generation {int(run.state.generation)}")
    log(
        f"run directory {out}  ({cfg.classifier.name}, {run.config.encoding}, "
        f"{len(cfg.classes)} classes, population {cfg.population}, "
        f"{run.loop.generations} generations, seed {run.config.seed})"
    )
    summary = runs.drive(run, STOP, resuming)
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
