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

Writes DIR/config.json, retrain.json (the table, rewritten after every round), retrain.md,
confidence.png, dnn_XX.npz (every network, saved as soon as it is trained) and round_XX/
(fooling.npz with the images and log-probabilities, gallery.png; probe.npz and probe.png)
and manifest.json (the files it wrote: all that --overwrite removes). Refuses an --out that
holds anything else.
Bad flags give a one-line error and exit code 2.
"""

from __future__ import annotations

import json
import shlex
import sys
import time
from pathlib import Path

from jaxfool.base import cli

STOP = cli.Stop()  # first: a signal while JAX loads, compiles or trains is handled the same way

from absl import flags, logging

from jaxfool.base.cli import FlagError
from jaxfool.base.errors import Interrupted
from jaxfool.runs.rundir import RunDir

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
# settings a resumed experiment may change (the rest must be as saved)
RESUMABLE = ("iterations", "resume", "out")


def check_flags() -> None:
    """The flags that RetrainConfig does not hold (the networks' training, the data)."""
    if FLAGS.resume and FLAGS.out and Path(FLAGS.out).resolve() != Path(FLAGS.resume).resolve():
        raise FlagError("--out and --resume name different directories; a run resumes in place")
    if FLAGS.resume and FLAGS.overwrite:
        raise FlagError("--overwrite with --resume: a resumed experiment keeps its files")
    FLAGS.out = FLAGS.out or FLAGS.resume
    if not FLAGS.out:
        raise FlagError("--out is required")
    if FLAGS.cppn_coords not in ("raw", "normalized"):
        raise FlagError(f"--cppn_coords={FLAGS.cppn_coords}: choose raw or normalized")
    if FLAGS.encoding not in ("direct", "cppn"):
        raise FlagError(f"--encoding={FLAGS.encoding}: choose direct or cppn")
    for name in ("train_steps", "batch_size", "lr_stepsize"):
        if FLAGS[name].value < 1:
            raise FlagError(f"--{name}={FLAGS[name].value}: must be >= 1")
    if not FLAGS.base_lr > 0:
        raise FlagError(f"--base_lr={FLAGS.base_lr}: must be > 0")
    if FLAGS.seed < 0:
        raise FlagError("--seed must be >= 0")
    if FLAGS.dataset == "folder":
        if not FLAGS.data_dir:
            raise FlagError("--data_dir is required with --dataset=folder")
        if FLAGS.encoding != "cppn":
            raise FlagError("--encoding: colour images need --encoding=cppn with --dataset=folder")
        if FLAGS.arch == "tiny" and FLAGS.dnn1 not in (None, "train"):
            raise FlagError("--dnn1: the tiny net has no weights file; use --dnn1=train")
        if FLAGS.image_size is not None and FLAGS.image_size < 8:
            raise FlagError(f"--image_size={FLAGS.image_size}: must be >= 8")
        if FLAGS.arch == "caffenet" and FLAGS.image_size not in (None, 256):
            raise FlagError("--image_size: caffenet takes 256 x 256 images")
    check_emitter_params()
    if FLAGS.dnn1 not in (None, "train") and not Path(FLAGS.dnn1).is_file():
        raise FlagError(f"--dnn1={FLAGS.dnn1}: no such file")


def check_emitter_params() -> None:
    """Emitter settings that this encoding's emitters do not have (the original emitter's rates
    differ between direct and CPPN genomes), refused before anything is trained."""
    from jaxfool import runs
    from jaxfool.search.encodings.cppn import CppnEncoding
    from jaxfool.search.encodings.direct import DirectEncoding

    kind = DirectEncoding() if FLAGS.encoding == "direct" else CppnEncoding()
    for spec, name in (
        (FLAGS.emitter, "emitter_params"),
        (FLAGS.probe_emitter, "probe_emitter_params"),
    ):
        if not spec:
            continue
        try:
            runs.emitter_text.parse_params(FLAGS[name].value, spec, kind)
        except ValueError as e:
            raise FlagError(f"--{name}: {e}") from None


def stop_if_asked(where: str) -> None:
    """Ends the experiment at a host-side point (between training steps or runs) once SIGINT
    or SIGTERM arrived: what is on disk stays (each finished round is written whole)."""
    if STOP:
        raise Interrupted(STOP.name, f"interrupted by {STOP.name} {where}")


def log(msg: str) -> None:
    stop_if_asked(f"in the middle of a round; finished rounds are in {FLAGS.out}")
    print(msg, flush=True)


def progress(step: int, loss: float, rate: float) -> None:
    log(f"    step {step:>6}  loss {loss:.4f}  {rate:6.1f} steps/s")


def mnist_setup():
    """(task, encoding, DNN_1 params) for MNIST."""
    from jaxfool.base import npz
    from jaxfool.classifiers import train
    from jaxfool.classifiers.data.mnist import BUNDLED_DIR, MnistFormatError, load_mnist
    from jaxfool.search.encodings.cppn import CppnEncoding
    from jaxfool.search.encodings.direct import DirectEncoding
    from jaxfool.studies import retrain

    try:
        x, y = load_mnist(FLAGS.data_dir or BUNDLED_DIR, "train")
        xt, yt = load_mnist(FLAGS.data_dir or BUNDLED_DIR, "test")
    except MnistFormatError as e:
        raise FlagError(f"--data_dir: {e}") from None
    task = retrain.mnist_task(x, y, xt, yt, FLAGS.train_steps, FLAGS.batch_size, progress)
    if FLAGS.dnn1 == "train":
        log("training DNN_1 (10 outputs) on the real digits")
        dnn1 = train.train_lenet(
            x,
            y,
            steps=FLAGS.train_steps,
            batch_size=FLAGS.batch_size,
            seed=FLAGS.seed,
            log_fn=progress,
            log_every=max(1, FLAGS.train_steps // 5),
        )
    else:
        from jaxfool.classifiers.registry import MODELS

        path = FLAGS.dnn1 or MODELS["lenet"].default_weights
        try:
            variables, _ = npz.load_params(path)
            dnn1 = variables["params"]
            if train.num_outputs(dnn1) not in (10, 11):
                raise KeyError
        except (npz.WeightsFileError, KeyError, TypeError):
            raise FlagError(f"--dnn1={path}: not a LeNet weights .npz") from None
    shape = (28, 28, 1)
    if FLAGS.encoding == "direct":
        encoding = DirectEncoding(shape)
    else:
        encoding = CppnEncoding(shape, coords=FLAGS.cppn_coords)
    return task, encoding, dnn1


def folder_setup():
    """(task, encoding, DNN_1 variables) for an ImageNet-format folder."""
    from jaxfool import classifiers
    from jaxfool.classifiers import retrain_nets, train_folder
    from jaxfool.search.encodings.cppn import CppnEncoding
    from jaxfool.studies import retrain

    size = FLAGS.image_size or (256 if FLAGS.arch == "caffenet" else 32)
    consts = {}
    dnn1 = None
    if FLAGS.arch == "caffenet":
        weights = FLAGS.dnn1 if FLAGS.dnn1 not in (None, "train") else classifiers.RANDOM_WEIGHTS
        try:
            _, params = classifiers.load_classifier("caffenet", weights, FLAGS.mean)
        except (ValueError, OSError) as e:
            raise FlagError(f"--dnn1/--mean: {e}") from None
        consts = {"mean_227": params["mean_227"]}
        if FLAGS.dnn1 not in (None, "train"):
            dnn1 = params["net"]
    optimizer = train_folder.caffe_step_optimizer(FLAGS.base_lr, FLAGS.lr_stepsize)
    root = Path(FLAGS.data_dir)
    try:
        task, real = retrain.folder_task(
            FLAGS.arch,
            root / "train",
            root / "val",
            image_size=size,
            steps=FLAGS.train_steps,
            batch_size=FLAGS.batch_size,
            optimizer=optimizer,
            consts=consts,
            log_fn=progress,
        )
    except ValueError as e:
        raise FlagError(f"--data_dir: {e}") from None
    if dnn1 is None:
        log(f"training DNN_1 ({task.num_real} outputs) on the real images")
        dnn1 = train_folder.train_folder_net(
            FLAGS.arch,
            task.num_real,
            real,
            consts,
            steps=FLAGS.train_steps,
            batch_size=FLAGS.batch_size,
            seed=FLAGS.seed,
            optimizer=optimizer,
            log_fn=progress,
            log_every=max(1, FLAGS.train_steps // 5),
        )
    elif retrain_nets.num_outputs(dnn1) != task.num_real:
        raise FlagError(
            f"--dnn1 has {retrain_nets.num_outputs(dnn1)} outputs but --data_dir has "
            f"{task.num_real} classes"
        )
    return task, CppnEncoding((size, size, 3), coords=FLAGS.cppn_coords), dnn1


def resumed_flags() -> dict:
    """config.json of --resume: its settings become the flags (a given flag that differs, other
    than --iterations, is a one-line error); returns the saved record."""
    path = Path(FLAGS.resume) / "config.json"
    try:
        record = json.loads(path.read_text())
        saved = record["flags"]
        if not isinstance(saved, dict):
            raise TypeError
    except FileNotFoundError:
        raise FlagError(
            f"--resume={FLAGS.resume}: no config.json there (not a retraining run)"
        ) from None
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise FlagError(f"--resume: {path} is not a retraining run's config") from None
    for name, value in saved.items():
        if name in RESUMABLE or name not in FLAGS:
            continue
        if FLAGS[name].present and FLAGS[name].value != value:
            raise FlagError(
                f"--{name}={FLAGS[name].value} conflicts with the resumed run's {value!r}; "
                "a resumed experiment keeps its settings (only --iterations may change)"
            )
        FLAGS[name].value = value
    return record


def load_resume(out: Path, config, task):
    """What retrain.json and the round files of a stopped experiment hold (`retrain.Resume`,
    and the wall seconds it has run), checked against `config`; a file that does not fit is a
    one-line error naming it."""
    import numpy as np

    from jaxfool.base import npz
    from jaxfool.classifiers import train
    from jaxfool.studies import retrain

    try:
        table = json.loads((out / "retrain.json").read_text())
        rows, seconds = table["rows"], float(table.get("wall_seconds", 0.0))
        if not isinstance(rows, list) or not rows:
            raise TypeError
    except FileNotFoundError:
        raise FlagError(f"--resume: {out}/retrain.json is missing (no round finished)") from None
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise FlagError(f"--resume: {out}/retrain.json is not a retraining table") from None
    images, probes = [], []
    for i in range(1, len(rows) + 1):
        for name, into in (("fooling.npz", images), ("probe.npz", probes)):
            path = out / f"round_{i:02d}" / name
            if name == "probe.npz" and not config.probe_emitter:
                into.append(None)
                continue
            runs = config.runs_per_iteration if name == "fooling.npz" else config.probe_runs
            try:
                arrays, _ = npz.load_params(path)
                x = np.asarray(arrays["images"])
                if x.dtype != np.uint8 or x.ndim != 5 or x.shape[:2] != (runs, task.num_real):
                    raise KeyError
            except (npz.WeightsFileError, KeyError):
                raise FlagError(f"--resume: {path} is missing or not this run's images") from None
            into.append(x)
    nxt = out / f"dnn_{len(rows) + 1:02d}.npz"
    next_network = None
    if nxt.is_file():
        try:
            variables, meta = npz.load_params(nxt)
            params = variables["params"]
            fields = meta["trained_on"]
            if task.num_real <= 10 and train.num_outputs(params) != task.num_real + 1:
                raise KeyError
        except (npz.WeightsFileError, KeyError, TypeError):
            raise FlagError(f"--resume: {nxt} is not this run's next network") from None
        next_network = (params, fields)
    return retrain.Resume(rows, images, probes, next_network), seconds


def main(argv: list[str]) -> None:
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    record = resumed_flags() if FLAGS.resume else None
    check_flags()
    if not FLAGS.resume:
        RunDir.check_free(FLAGS.out, FLAGS.overwrite)  # refused now, not after DNN_1's training

    import jax
    import numpy as np

    from jaxfool import plots, runs
    from jaxfool.base import fileio, images
    from jaxfool.base.npz import save_params
    from jaxfool.search import encodings
    from jaxfool.studies import retrain, retrain_report

    thresholds = retrain.parse_thresholds(FLAGS.thresholds)
    config = cli.from_flags(retrain.RetrainConfig, thresholds=thresholds, eval_chunk=None)
    task, encoding, dnn1 = mnist_setup() if FLAGS.dataset == "mnist" else folder_setup()
    resume, earlier_seconds = (
        load_resume(Path(FLAGS.out), config, task) if FLAGS.resume else (None, 0.0)
    )
    stop_if_asked("during start-up; nothing was written")
    run = RunDir.existing(FLAGS.out) if resume else RunDir.create(FLAGS.out, FLAGS.overwrite)
    out = run.path
    if record is None:
        settings = {
            "command": shlex.join(sys.argv),
            "flags": {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.argv[0])},
            "encoding": encodings.to_spec(encoding),
            "jax_version": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
        }
    else:  # the saved settings, with the new --iterations and this command
        settings = {**record, "flags": {**record["flags"], "iterations": FLAGS.iterations}}
        settings["resumed"] = [*record.get("resumed", []), shlex.join(sys.argv)]
    run.write_json("config.json", settings)
    rows: list[dict] = list(resume.rows) if resume else []
    t_start = time.perf_counter()

    def save_network(i, params, fields):
        run.record(out / f"dnn_{i:02d}.npz")
        variables = params if "params" in params else {"params": params}  # LeNet: bare params
        meta = {"network": f"DNN_{i}", "trained_on": fields}
        save_params(out / f"dnn_{i:02d}.npz", variables, meta)

    def save_images(path, rnd, network):
        save_params(
            path,
            {"images": rnd.images, "log_prob": rnd.log_prob, "medians": rnd.medians},
            {"network": network, "generations": rnd.generations.tolist()},
        )
        flat = rnd.images.reshape(-1, *rnd.images.shape[2:])
        conf = np.exp(rnd.log_prob.astype(np.float64)).reshape(-1)
        n = rnd.images.shape[1]
        captions = [
            f"run {k // n} class {k % n}\n{runs.store.format_confidence(c)}"
            for k, c in enumerate(conf)
        ]
        gallery = path.with_name(path.stem.replace("fooling", "gallery") + ".png")
        tile = 56 if len(flat) > 20 else 112
        images.save_gallery(gallery, flat, captions, tile=tile)

    def save(i, params, rnd, row, probe_rnd):
        rows.append(row)
        names = ("retrain.json", "retrain.md", "confidence.png")
        rounds = [f"round_{i:02d}/fooling.npz", f"round_{i:02d}/gallery.png"]
        if probe_rnd is not None:
            rounds += [f"round_{i:02d}/probe.npz", f"round_{i:02d}/probe.png"]
        run.record(*(out / n for n in names + tuple(rounds)))
        trained = {k: row[k] for k in row if k.startswith("train")}
        save_network(i, params, trained)
        save_images(out / f"round_{i:02d}" / "fooling.npz", rnd, row["network"])
        if probe_rnd is not None:
            save_images(out / f"round_{i:02d}" / "probe.npz", probe_rnd, row["network"])
        summary = {
            "config": settings,
            "rows": rows,
            "wall_seconds": round(earlier_seconds + time.perf_counter() - t_start, 1),
        }
        fileio.write_json(out / "retrain.json", summary)
        fileio.write_text(out / "retrain.md", retrain_report.markdown_table(rows, thresholds))
        if plots.available():
            series = retrain_report.chart_series(rows, FLAGS.emitter)
            plots.save_figure(plots.retrain_confidence_figure(series), out / "confidence.png")

    verb = "resuming" if resume else "retraining"
    print(
        f"{verb} in {out}: {config.iterations} rounds, {config.runs_per_iteration} runs "
        f"x {config.generations} generations per network"
        + (f" ({len(rows)} networks done)" if resume else ""),
        flush=True,
    )
    retrain.retrain(
        task,
        encoding,
        config,
        dnn1,
        jax.random.key(FLAGS.seed),
        log=log,
        on_round=save,
        on_trained=save_network,
        resume=resume,
    )
    print(retrain_report.markdown_table(rows, thresholds), end="")
    chart = (
        ", confidence.png" if plots.available() else f" (no confidence.png: {plots.INSTALL_HINT})"
    )
    print(f"wrote {out}/retrain.json, retrain.md{chart}")
    print(json.dumps({"out": str(out), "rounds": len(rows)}))


if __name__ == "__main__":
    cli.run(main)
