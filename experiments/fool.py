"""Evolve fooling images: MAP-Elites over a classifier's classes (the paper's main experiment).

    python experiments/fool.py                      # MNIST LeNet, CPPN encoding, 200 gens
    python experiments/fool.py --model=lenet_paper --weights=PATH/lenet_iter_10000
    python experiments/fool.py --model=caffenet --weights=bvlc_reference_caffenet.caffemodel
                                                    # the paper's ImageNet run: 1000 classes,
                                                    # 256x256 HLS colour, population 400, 5000 gens

Writes DIR/summary.json, metrics.jsonl, gallery.png, config.json, elites/ and checkpoint/
(see README). Progress is logged every --log_every generations.
"""

from __future__ import annotations

import json
import shlex
import signal
import sys
import time
from pathlib import Path

import jax
import numpy as np
from absl import flags, logging

from jaxfool import classifiers, cli, evolve, images, runs
from jaxfool.cli import FlagError
from jaxfool.encodings.cppn import CppnEncoding
from jaxfool.encodings.direct import DirectEncoding
from jaxfool.weights.npz import WeightsFileError

ENCODINGS = ("cppn", "direct")

FLAGS = flags.FLAGS
flags.DEFINE_string("model", "lenet", f"Classifier: {', '.join(classifiers.MODELS)}.")
flags.DEFINE_string("weights", None, "Weights file (default: the model's shipped weights).")
flags.DEFINE_string(
    "mean",
    None,
    "Mean image (.binaryproto/.npy) subtracted before scaling, as the paper's "
    "MNIST evaluation prototxt does (mnist_mean.binaryproto). Default: none, as trained.",
)
flags.DEFINE_string("encoding", "cppn", f"Genome encoding: {', '.join(ENCODINGS)}.")
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
flags.DEFINE_bool("overwrite", False, "Replace an existing run in --out.")
flags.DEFINE_integer("log_every", 25, "Generations per host call: log, metrics line.")
flags.DEFINE_integer(
    "checkpoint_every", 0, "Also checkpoint every this many generations (0: at the end only)."
)
flags.DEFINE_string(
    "resume",
    None,
    "Continue the run in this directory up to --generations, exactly as if it "
    "had never stopped; its settings are kept (a conflicting flag is an error).",
)
flags.DEFINE_integer(
    "eval_chunk",
    None,
    "Images per classifier call, per device; bounds peak memory (CaffeNet: x10 crops). "
    f"Default: all for MNIST, {evolve.IMAGENET_EVAL_CHUNK} for ImageNet models.",
)
flags.DEFINE_bool(
    "ten_crop",
    True,
    "caffenet/alexnet_caffe fitness: softmax averaged over the 10 standard 227 crops "
    "(original); --noten_crop scores the centre crop only.",
)
flags.DEFINE_string(
    "direct_genes",
    "auto",
    "Direct genomes stored as float32 genes (original) or uint8 pixel bytes (compact: 4x "
    "smaller archive); auto: uint8 for colour images, float32 for MNIST.",
)
flags.DEFINE_bool(
    "shard", True, "Split each generation's population over all devices (when there are >1)."
)
flags.DEFINE_string(
    "coordinator_address",
    None,
    "Multi-host: host:port of process 0; with --num_processes and --process_id, calls "
    "jax.distributed.initialize. Only process 0 writes files.",
)
flags.DEFINE_bool(
    "distributed",
    False,
    "Multi-host without the three flags: jax.distributed.initialize() detects the cluster "
    "itself (Cloud TPU pod slices, SLURM).",
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


# The flags that decide what a run computes; a resumed run takes them from its config.json.
EVOLUTION_FLAGS = (
    "model", "weights", "mean", "encoding", "population", "initial_population", "seed",
    "classes", "eval_chunk", "mutation_rate", "mutation_schedule", "crossover_rate",
    "sbx_equal_genes", "cppn_coords", "cppn_color", "max_nodes", "max_edges", "ten_crop",
    "direct_genes",
)  # fmt: skip


def adopt_resumed_flags(out: Path) -> dict:
    """Sets the evolution flags from the resumed run's config.json; returns that config."""
    path = out / "config.json"
    if not path.is_file():
        raise FlagError(f"--resume={out}: no config.json there (not a run directory)")
    try:
        saved = json.loads(path.read_text())
        flags_saved = saved["flags"]
    except (ValueError, KeyError):
        raise FlagError(f"--resume={out}: {path} is not a run config") from None
    for name in EVOLUTION_FLAGS:
        if name not in flags_saved:
            continue
        if FLAGS[name].present and FLAGS[name].value != flags_saved[name]:
            raise FlagError(
                f"--{name}={FLAGS[name].value} conflicts with the resumed run's "
                f"{flags_saved[name]!r}; a resumed run keeps its settings"
            )
        setattr(FLAGS, name, flags_saved[name])
    if not FLAGS["generations"].present:
        FLAGS.generations = flags_saved.get("generations", FLAGS.generations)
    return saved


def parse_classes(text: str | None, num_classes: int) -> tuple[int, ...]:
    try:
        return runs.parse_classes(text, num_classes)
    except ValueError as e:
        raise FlagError(f"--classes: {e}") from None


def check_flags() -> None:
    if FLAGS.encoding not in ENCODINGS:
        raise FlagError(f"--encoding={FLAGS.encoding}: choose one of {', '.join(ENCODINGS)}")
    if FLAGS.model not in classifiers.MODELS:
        raise FlagError(f"--model={FLAGS.model}: choose one of {', '.join(classifiers.MODELS)}")
    if FLAGS.population is not None and (FLAGS.population < 2 or FLAGS.population % 2):
        raise FlagError(f"--population={FLAGS.population}: must be an even number >= 2")
    if FLAGS.initial_population is not None and FLAGS.initial_population < 1:
        raise FlagError("--initial_population must be >= 1")
    if FLAGS.generations is not None and FLAGS.generations < 0:
        raise FlagError(f"--generations={FLAGS.generations}: must be >= 0")
    if FLAGS.checkpoint_every < 0:
        raise FlagError(f"--checkpoint_every={FLAGS.checkpoint_every}: must be >= 0")
    if FLAGS.log_every < 1:
        raise FlagError(f"--log_every={FLAGS.log_every}: must be >= 1")
    if FLAGS.eval_chunk is not None and FLAGS.eval_chunk < 1:
        raise FlagError("--eval_chunk must be >= 1")
    if not 0.0 <= FLAGS.mutation_rate <= 1.0:
        raise FlagError(f"--mutation_rate={FLAGS.mutation_rate}: must be in [0, 1]")
    if not 0.0 <= FLAGS.crossover_rate <= 1.0:
        raise FlagError(f"--crossover_rate={FLAGS.crossover_rate}: must be in [0, 1]")
    if FLAGS.mutation_schedule not in ("constant", "halving"):
        raise FlagError(f"--mutation_schedule={FLAGS.mutation_schedule}: constant or halving")
    if FLAGS.sbx_equal_genes not in ("copy", "half"):
        raise FlagError(f"--sbx_equal_genes={FLAGS.sbx_equal_genes}: copy or half")
    if FLAGS.cppn_coords not in ("raw", "normalized"):
        raise FlagError(f"--cppn_coords={FLAGS.cppn_coords}: raw or normalized")
    if FLAGS.cppn_color not in ("hls", "hsv"):
        raise FlagError(f"--cppn_color={FLAGS.cppn_color}: hls or hsv")
    if FLAGS.direct_genes not in ("auto", "float32", "uint8"):
        raise FlagError(f"--direct_genes={FLAGS.direct_genes}: auto, float32 or uint8")
    if not FLAGS.ten_crop and FLAGS.model not in ("caffenet", "alexnet_caffe"):
        raise FlagError("--noten_crop: only caffenet and alexnet_caffe score 10 crops")
    multi = (FLAGS.coordinator_address, FLAGS.num_processes, FLAGS.process_id)
    if any(v is not None for v in multi) and any(v is None for v in multi):
        raise FlagError(
            "--coordinator_address, --num_processes and --process_id go together (multi-host)"
        )
    if FLAGS.num_processes is not None and not 0 <= FLAGS.process_id < FLAGS.num_processes:
        raise FlagError(f"--process_id={FLAGS.process_id}: must be in [0, --num_processes)")
    if FLAGS.seed < 0:
        raise FlagError("--seed must be >= 0")


def apply_defaults(clf) -> None:
    """Fills the flags left unset with the original's settings for this kind of model."""
    for name, value in evolve.original_settings(clf.image_shape, FLAGS.encoding).items():
        if FLAGS[name].value is None:
            setattr(FLAGS, name, value)


def build_encoding(image_shape):
    """The --encoding's settings for images of `image_shape`; bad settings are a FlagError."""
    try:
        if FLAGS.encoding == "cppn":
            return CppnEncoding(
                image_shape=image_shape,
                max_nodes=FLAGS.max_nodes,
                max_edges=FLAGS.max_edges,
                coords=FLAGS.cppn_coords,
                color=FLAGS.cppn_color,
            )
        genes = FLAGS.direct_genes
        if genes == "auto":
            genes = "uint8" if image_shape[-1] == 3 else "float32"
        return DirectEncoding(
            image_shape=image_shape,
            genes=genes,
            mutation_rate=FLAGS.mutation_rate,
            crossover_rate=FLAGS.crossover_rate,
            mutation_schedule=FLAGS.mutation_schedule,
            sbx_equal_genes=FLAGS.sbx_equal_genes,
        )
    except ValueError as e:
        raise FlagError(f"--encoding={FLAGS.encoding}: {e}") from None


def default_out() -> Path:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return Path("runs") / f"{stamp}_{FLAGS.model}_{FLAGS.encoding}_s{FLAGS.seed}"


def is_writer() -> bool:
    """Only process 0 of a multi-host run writes files and logs."""
    return jax.process_index() == 0


def log(msg: str) -> None:
    if is_writer():
        print(msg, flush=True)


def init_distributed() -> None:
    """Joins a multi-host run (before anything touches the devices)."""
    if FLAGS.coordinator_address is not None:
        jax.distributed.initialize(
            coordinator_address=FLAGS.coordinator_address,
            num_processes=FLAGS.num_processes,
            process_id=FLAGS.process_id,
        )
    elif FLAGS.distributed:
        jax.distributed.initialize()


def progress_line(row: dict, total: int, k: int) -> str:
    """One log line: progress, speed, ETA, confidences, classes above thresholds, improvements."""
    above = row["num_classes_above"]
    eta = (total - row["generation"]) / row["gens_per_s"]
    return (
        f"gen {row['generation']:>6}/{total} | {row['gens_per_s']:7.1f} gen/s | "
        f"{row['evals_per_s']:9.0f} evals/s | ETA {eta:7.1f}s | "
        f"median {row['median_confidence']:.8f} mean {row['mean_confidence']:.6f} "
        f"min {row['min_confidence']:.8f} | "
        f">=0.99 {above['0.99']}/{k} >=0.9999 {above['0.9999']}/{k} | improved {row['improved']}"
    )


def write_outputs(out, config, clf, params, state, loop_key, run_config, elapsed, status):
    archive = jax.device_get(state.archive)
    elite_images = np.asarray(jax.jit(config.encoding.express)(archive.genomes))
    records = runs.write_elites(
        out,
        config.classes,
        clf.labels,
        elite_images,
        archive.genomes,
        archive.log_prob,
        archive.last_improved,
        archive.takeovers,
        config.encoding,
    )
    images.save_gallery(
        out / "gallery.png",
        np.stack([elite_images[config.classes.index(r["index"])] for r in records]),
        [runs.caption(r["label"], r["index"], r["confidence"]) for r in records],
    )
    stats = runs.archive_stats(archive.log_prob)
    generations = int(state.generation)
    summary = {
        "model": FLAGS.model,
        "weights": run_config["weights"],
        "encoding": FLAGS.encoding,
        "population": config.population,
        "generations_completed": generations,
        "seed": FLAGS.seed,
        "status": status,
        "median_confidence": stats["median_confidence"],
        "mean_confidence": stats["mean_confidence"],
        "min_confidence": stats["min_confidence"],
        "num_classes_above": stats["num_classes_above"],
        "evaluations": int(state.evaluations),
        "nan_scores": int(state.nan_scores),
        "wall_seconds": round(elapsed, 3),
        "eval_chunk": config.eval_chunk,
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        **runs.peak_memory(),
        "classes": records,
    }
    runs.save_checkpoint(out, state, loop_key, run_config)
    runs.write_classes_csv(out / "classes.csv", records)
    runs.fileio.write_json(out / "summary.json", summary)
    return summary


def drop_metrics_after(path: Path, generation: int) -> None:
    """Keeps the metrics lines up to the checkpoint's generation (a killed run wrote more)."""
    if not path.exists():
        return
    rows = [line for line in path.read_text().splitlines() if line.strip()]
    kept = [line for line in rows if json.loads(line).get("generation", 0) <= generation]
    runs.fileio.write_text(path, "".join(line + "\n" for line in kept))


def install_stop_handlers() -> list:
    """SIGINT/SIGTERM end the run after the current chunk (outputs and checkpoint written)."""
    stop: list = []

    def handler(signum, frame):
        del frame
        stop.append(signal.Signals(signum).name)

    signal.signal(signal.SIGINT, handler)
    signal.signal(signal.SIGTERM, handler)
    return stop


def main(argv):
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise FlagError(f"unexpected arguments: {' '.join(argv[1:])}")
    if FLAGS.resume and FLAGS.out and Path(FLAGS.out).resolve() != Path(FLAGS.resume).resolve():
        raise FlagError("--out and --resume name different directories; a run resumes in place")
    saved_config = adopt_resumed_flags(Path(FLAGS.resume)) if FLAGS.resume else None
    check_flags()
    init_distributed()
    try:
        clf, params = classifiers.load_classifier(FLAGS.model, FLAGS.weights, FLAGS.mean)
    except (WeightsFileError, ValueError, OSError) as e:
        raise FlagError(f"--model={FLAGS.model}: {e}") from None
    if not FLAGS.ten_crop:
        clf = classifiers.with_center_crop(clf)
    apply_defaults(clf)
    classes = parse_classes(FLAGS.classes, clf.num_classes)
    mesh = evolve.population_mesh() if FLAGS.shard and jax.device_count() > 1 else None
    config = evolve.EvolutionConfig(
        encoding=build_encoding(clf.image_shape),
        classifier=clf,
        classes=classes,
        population=FLAGS.population,
        initial_population=FLAGS.initial_population or FLAGS.population,
        eval_chunk=FLAGS.eval_chunk,
        mesh=mesh,
    )
    init_key, loop_key = evolve.run_keys(FLAGS.seed)
    t_start = time.perf_counter()
    if saved_config is not None:
        out, run_config = Path(FLAGS.resume), saved_config
        template = jax.eval_shape(lambda p, k: evolve.init(config, p, k), params, init_key)
        state, saved_key, _ = runs.load_checkpoint(out, template)
        if not np.array_equal(jax.random.key_data(saved_key), jax.random.key_data(loop_key)):
            raise FlagError(f"--resume={out}: the checkpoint's key is not this seed's")
        if is_writer():
            drop_metrics_after(out / "metrics.jsonl", int(state.generation))
        log(f"resuming {out} at generation {int(state.generation)}")
    else:
        out = Path(FLAGS.out or default_out())
        if is_writer():
            runs.prepare_run_dir(out, FLAGS.overwrite)
        run_config = {
            "command": shlex.join(sys.argv),
            "flags": {f.name: f.value for f in FLAGS.get_key_flags_for_module(sys.argv[0])},
            "weights": str(FLAGS.weights or classifiers.MODELS[FLAGS.model].default_weights),
            "classes": list(classes),
            "jax_version": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
            "processes": jax.process_count(),
        }
        if is_writer():
            runs.fileio.write_json(out / "config.json", run_config)
        state = evolve.init(config, params, init_key)
    log(
        f"run directory {out}  ({clf.name}, {FLAGS.encoding}, {len(classes)} classes, "
        f"population {config.population}, {FLAGS.generations} generations, seed {FLAGS.seed})"
    )

    run_generations = evolve.run.lower(config, params, state, loop_key, 1).compile()
    jax.block_until_ready(state)
    log(f"compiled and scored the initial population in {time.perf_counter() - t_start:.1f}s")
    last_takeovers = int(np.sum(state.archive.takeovers))
    status = "completed"
    stop = install_stop_handlers()
    while int(state.generation) < FLAGS.generations:
        gen = int(state.generation)
        n = min(FLAGS.log_every, FLAGS.generations - gen)
        if FLAGS.checkpoint_every:
            n = min(n, FLAGS.checkpoint_every - gen % FLAGS.checkpoint_every)
        t0 = time.perf_counter()
        state = run_generations(params, state, loop_key, n)
        jax.block_until_ready(state)
        dt = time.perf_counter() - t0
        stats = runs.archive_stats(np.asarray(state.archive.log_prob))
        takeovers = int(np.sum(state.archive.takeovers))
        row = {
            "generation": int(state.generation),
            "seconds": round(dt, 4),
            "gens_per_s": n / dt,
            "evals_per_s": n * config.population / dt,
            "improved": takeovers - last_takeovers,
            "nan_scores": int(state.nan_scores),
            **stats,
            **runs.peak_memory(),
        }
        last_takeovers = takeovers
        if is_writer():
            runs.append_jsonl(out / "metrics.jsonl", row)
        log(progress_line(row, FLAGS.generations, len(classes)))
        if int(state.nan_scores):
            status = "stopped: NaN scores"
            break
        checkpoint_due = (
            FLAGS.checkpoint_every and int(state.generation) % FLAGS.checkpoint_every == 0
        )
        if checkpoint_due and is_writer():
            runs.save_checkpoint(out, state, loop_key, run_config)
        if stop:
            status = f"interrupted by {stop[0]} at generation {int(state.generation)}"
            break
    if not is_writer():
        return
    summary = write_outputs(
        out, config, clf, params, state, loop_key, run_config, time.perf_counter() - t_start, status
    )
    if int(state.nan_scores):
        print(
            f"fool.py: error: the classifier returned NaN scores for {int(state.nan_scores)} "
            f"images (check --weights/--mean); those never entered the archive; outputs are "
            f"in {out}",
            file=sys.stderr,
        )
        sys.exit(3)
    if stop:
        log(f"{status}; outputs and checkpoint written; continue with --resume={out}")
    above = summary["num_classes_above"]
    log(
        f"done: median confidence {summary['median_confidence']:.6f}, "
        f">=0.9999 {above['0.9999']}/{len(classes)} classes; peak host memory "
        f"{summary['peak_host_rss_mib']} MiB; wrote {out}/summary.json"
    )
    print(json.dumps({k: summary[k] for k in ("median_confidence", "num_classes_above")}))


if __name__ == "__main__":
    cli.run(main)
