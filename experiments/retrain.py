"""Retrain with fooling images as an extra class, and evolve again (paper §3.6).

    python experiments/retrain.py --out=runs/retrain --iterations=15 --encoding=direct
    python experiments/retrain.py --resume=runs/retrain --iterations=20   # go on
    python experiments/retrain.py --dataset=folder --data_dir=IMAGENET --arch=caffenet \\
        --dnn1=bvlc_reference_caffenet.caffemodel --mean=ilsvrc_2012_mean.npy --encoding=cppn ...

Round i evolves fooling images against DNN_i (--runs_per_iteration MAP-Elites runs whose cells
are the real classes only), then trains DNN_{i+1} from scratch on the real training data plus
those images as one extra class. Reports per network: test accuracy on the real held-out
data, how many of the previous round's fooling images it rejects (trained-on and held-out
runs), and the median / max confidence of the new fooling images and the generations the runs
needed to bring their median to each --thresholds value.

--dataset=mnist: --data_dir holds MNIST IDX files (default: the bundled 8,000/2,000 digits);
DNN_1 is --dnn1 (a LeNet .npz; default the shipped models/lenet_mnist.npz) or "train".
--dataset=folder: --data_dir holds train/ and val/, each with one subfolder of images per class
(ImageNet's layout); --arch=caffenet (DNN_1 = --dnn1 .caffemodel, or "train") or tiny (a
small convnet for smoke tests; DNN_1 is trained).

--emitter / --emitter_params choose the search whose images are trained on (fool.py's syntax);
--probe_emitter adds --probe_runs runs against every network that are only measured.
--resume=DIR goes on with a stopped experiment, or extends a finished one to a larger
--iterations, exactly as if it had run in one go (its other settings are the saved ones).

Flags -> `retrain.RetrainConfig` (the loop) and `retrain_tasks.TaskSettings` (data, networks,
genome) -> `retrain_store.run_experiment`. Writes DIR/config.json, retrain.json (the table,
rewritten after every round), retrain.md, confidence.png, dnn_XX.npz, round_XX/ and
manifest.json (see `jaxfool.studies.retrain_store`); refuses an --out that holds anything else.
Bad flags give a one-line error and exit code 2.
"""

from __future__ import annotations

import shlex
import sys

from jaxfool.base import cli

STOP = cli.Stop()  # first: a signal while JAX loads, compiles or trains is handled the same way

from absl import flags, logging

from jaxfool.base.cli import FlagError

FLAGS = flags.FLAGS
flags.DEFINE_string("out", None, "Output directory (empty, or a previous run with --overwrite).")
flags.DEFINE_bool(
    "overwrite", False, "Replace a previous retraining run in --out (its files only)."
)
flags.DEFINE_enum("dataset", "mnist", ["mnist", "folder"], "MNIST IDX files or an image folder.")
flags.DEFINE_string("data_dir", None, "MNIST directory, or a folder with train/ and val/.")
flags.DEFINE_string("encoding", "direct", "Genome encoding: direct or cppn.")
flags.DEFINE_integer("iterations", 15, "Retraining rounds (the paper: 15 for MNIST).")
flags.DEFINE_integer("runs_per_iteration", 10, "Independent MAP-Elites runs per network.")
flags.DEFINE_integer("holdout_runs", 1, "Runs per round whose images are not trained on.")
flags.DEFINE_integer("population", 200, "Children per generation (even).")
flags.DEFINE_integer("generations", 200, "Generations per run.")
flags.DEFINE_integer("log_every", 10, "Generations between median-confidence readings.")
flags.DEFINE_string("thresholds", "0.99,0.9999", "Median-confidence thresholds to time.")
flags.DEFINE_bool("cumulative", True, "Train on the fooling images of all rounds so far.")
flags.DEFINE_bool("balance", True, "Repeat fooling images up to a mean real class's size.")
flags.DEFINE_string("dnn1", None, "DNN_1 weights (default: shipped LeNet) or 'train'.")
flags.DEFINE_integer("train_steps", 10000, "SGD steps per trained network (LeNet: 10,000).")
flags.DEFINE_integer("batch_size", 64, "Training batch size (LeNet 64; CaffeNet 256).")
flags.DEFINE_enum("arch", "tiny", ["tiny", "caffenet"], "Folder network.")
flags.DEFINE_integer("image_size", None, "Folder image size (default: caffenet 256, tiny 32).")
flags.DEFINE_string("mean", None, "CaffeNet mean image (.npy/.binaryproto); default per channel.")
flags.DEFINE_float("base_lr", 0.01, "Folder nets: Caffe 'step' policy base learning rate.")
flags.DEFINE_integer("lr_stepsize", 100000, "Folder nets: lr x0.1 every this many steps.")
flags.DEFINE_integer("seed", 0, "Seed of the whole experiment.")
flags.DEFINE_string("cppn_coords", "raw", "CPPN x, y inputs: raw (original) or normalized.")
flags.DEFINE_string("emitter", "original", "Search of the trained-on runs (fool.py's syntax).")
flags.DEFINE_string("emitter_params", "", "Its settings, e.g. 'gradient.step_min=0.002'.")
flags.DEFINE_string("probe_emitter", "", "Also attack each net with this search (not trained on).")
flags.DEFINE_string("probe_emitter_params", "", "The probe emitter's settings.")
flags.DEFINE_integer("probe_runs", 2, "Probe runs per network.")
flags.DEFINE_string(
    "resume", None, "Continue the experiment in this directory (to --iterations, exactly)."
)


def flag_values() -> dict:
    """This script's flags: the settings config.json records."""
    return {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.argv[0])}


def main(argv: list[str]) -> None:
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    from jaxfool.studies import retrain, retrain_store, retrain_tasks

    record = None
    if FLAGS.resume:  # the saved settings become the flags (only --iterations may change)
        kept, record = retrain_store.resumed_flags(FLAGS.resume, flag_values(), cli.given_flags())
        for name, value in kept.items():
            FLAGS[name].value = value
    tasks = cli.from_flags(retrain_tasks.TaskSettings)
    thresholds = retrain.parse_thresholds(FLAGS.thresholds)
    config = cli.from_flags(retrain.RetrainConfig, thresholds=thresholds, eval_chunk=None)
    retrain_store.run_experiment(
        config, tasks, FLAGS.out, FLAGS.resume, FLAGS.overwrite, flag_values(), record,
        shlex.join(sys.argv), STOP,
    )  # fmt: skip


if __name__ == "__main__":
    cli.run(main)
