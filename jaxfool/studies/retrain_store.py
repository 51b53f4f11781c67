"""A retraining experiment's directory, and the experiment run into it (experiments/retrain.py).

    DIR/config.json     the command, its settings ("flags"), the encoding, the machine; on
                        --resume the same, with the new iterations and the resuming commands
    DIR/retrain.json    the table (one row per network) and the settings, after every round
    DIR/retrain.md      the table in markdown; DIR/confidence.png its chart (with matplotlib)
    DIR/dnn_XX.npz      every network, saved as soon as it is trained
    DIR/round_XX/       fooling.npz (images, log-probabilities, medians), gallery.png; with a
                        probe emitter also probe.npz and probe.png
    DIR/manifest.json   the files it wrote (all that --overwrite removes; see `runs.RunDir`)

A stopped experiment goes on from its files (`load_resume`) exactly as if it had not stopped;
its settings are the saved ones (`resumed_flags`, through `runs.store`'s helpers that fool.py's
resume uses too): only the number of iterations may change.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass, field
from pathlib import Path

import jax
import numpy as np

from jaxfool import plots
from jaxfool.base import fileio, images, npz
from jaxfool.base.errors import ConfigError, Interrupted
from jaxfool.base.signals import Stop
from jaxfool.classifiers import train
from jaxfool.runs import store
from jaxfool.runs.rundir import RunDir
from jaxfool.search import encodings
from jaxfool.studies import retrain, retrain_report, retrain_tasks
from jaxfool.studies.retrain import Resume, RetrainConfig
from jaxfool.studies.retrain_tasks import TaskSettings

# settings a resumed experiment may change or that say how it is driven (the rest are saved)
RESUMABLE = ("iterations", "resume", "out", "overwrite")
KEEPS = "a resumed experiment keeps its settings (only --iterations may change)"


def resumed_flags(resume: str | Path, values: dict, given: set[str]) -> tuple[dict, dict]:
    """The settings of the experiment in `resume` (its config.json) as `values` (the flags of
    retrain.py): every saved one but RESUMABLE's; a `given` one that differs is a ConfigError.
    Returns the kept values and the saved record."""
    record = store.saved_settings(resume, "retraining")
    ours = {k: v for k, v in values.items() if k not in RESUMABLE}
    return store.kept_settings(record["flags"], ours, given, KEEPS), record


def load_resume(out: Path, config: RetrainConfig, task) -> tuple[Resume, float]:
    """What retrain.json and the round files of a stopped experiment hold (`retrain.Resume`,
    and the wall seconds it has run), checked against `config`; a file that does not fit is a
    ConfigError naming it."""

    def bad(message: str) -> ConfigError:
        return ConfigError("resume", f"--resume: {message}")

    try:
        table = json.loads((out / "retrain.json").read_text())
        rows, seconds = table["rows"], float(table.get("wall_seconds", 0.0))
        if not isinstance(rows, list) or not rows:
            raise TypeError
    except FileNotFoundError:
        raise bad(f"{out}/retrain.json is missing (no round finished)") from None
    except (OSError, ValueError, KeyError, TypeError, UnicodeDecodeError):
        raise bad(f"{out}/retrain.json is not a retraining table") from None
    found, probes = [], []
    for i in range(1, len(rows) + 1):
        for name, into in (("fooling.npz", found), ("probe.npz", probes)):
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
                raise bad(f"{path} is missing or not this run's images") from None
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
            raise bad(f"{nxt} is not this run's next network") from None
        next_network = (params, fields)
    return Resume(rows, found, probes, next_network), seconds


def settings_record(record: dict | None, flags: dict, encoding, command: str, iterations: int):
    """config.json: a new experiment's command, settings, encoding and machine; a resumed
    one's saved record, with the new iterations and this command appended to "resumed"."""
    if record is None:
        return {
            "command": command,
            "flags": flags,
            "encoding": encodings.to_spec(encoding),
            "jax_version": jax.__version__,
            "devices": [str(d) for d in jax.devices()],
        }
    settings = {**record, "flags": {**record["flags"], "iterations": iterations}}
    settings["resumed"] = [*record.get("resumed", []), command]
    return settings


@dataclass
class ExperimentDir:
    """The files of an experiment being run: each round is written whole as soon as it ends."""

    run: RunDir
    settings: dict  # config.json
    thresholds: tuple[float, ...]
    emitter: str
    rows: list[dict] = field(default_factory=list)
    earlier_seconds: float = 0.0  # of the runs before a resume
    started: float = field(default_factory=time.perf_counter)

    @property
    def out(self) -> Path:
        return self.run.path

    def save_network(self, i: int, params, fields: dict) -> None:
        """dnn_XX.npz: network DNN_i and what it was trained on."""
        path = self.out / f"dnn_{i:02d}.npz"
        self.run.record(path)
        variables = params if "params" in params else {"params": params}  # LeNet: bare params
        npz.save_params(path, variables, {"network": f"DNN_{i}", "trained_on": fields})

    def save_images(self, path: Path, rnd: retrain.FoolingRound, network: str) -> None:
        """A round's fooling.npz (or probe.npz) and its gallery."""
        npz.save_params(
            path,
            {"images": rnd.images, "log_prob": rnd.log_prob, "medians": rnd.medians},
            {"network": network, "generations": rnd.generations.tolist()},
        )
        flat = rnd.images.reshape(-1, *rnd.images.shape[2:])
        conf = np.exp(rnd.log_prob.astype(np.float64)).reshape(-1)
        n = rnd.images.shape[1]
        captions = [
            f"run {k // n} class {k % n}\n{store.format_confidence(c)}" for k, c in enumerate(conf)
        ]
        gallery = path.with_name(path.stem.replace("fooling", "gallery") + ".png")
        tile = 56 if len(flat) > 20 else 112
        images.save_gallery(gallery, flat, captions, tile=tile)

    def save_round(self, i: int, params, rnd, row: dict, probe_rnd) -> None:
        """Round i's network, images and row, and the table, its markdown and chart."""
        out = self.out
        self.rows.append(row)
        names = ("retrain.json", "retrain.md", "confidence.png")
        rounds = [f"round_{i:02d}/fooling.npz", f"round_{i:02d}/gallery.png"]
        if probe_rnd is not None:
            rounds += [f"round_{i:02d}/probe.npz", f"round_{i:02d}/probe.png"]
        self.run.record(*(out / n for n in names + tuple(rounds)))
        trained = {k: row[k] for k in row if k.startswith("train")}
        self.save_network(i, params, trained)
        self.save_images(out / f"round_{i:02d}" / "fooling.npz", rnd, row["network"])
        if probe_rnd is not None:
            self.save_images(out / f"round_{i:02d}" / "probe.npz", probe_rnd, row["network"])
        summary = {
            "config": self.settings,
            "rows": self.rows,
            "wall_seconds": round(self.earlier_seconds + time.perf_counter() - self.started, 1),
        }
        fileio.write_json(out / "retrain.json", summary)
        table = retrain_report.markdown_table(self.rows, self.thresholds)
        fileio.write_text(out / "retrain.md", table)
        if plots.available():
            series = retrain_report.chart_series(self.rows, self.emitter)
            plots.save_figure(plots.retrain_confidence_figure(series), out / "confidence.png")


def experiment_path(out: str | None, resume: str | None, overwrite: bool) -> Path:
    """The experiment's directory: --out, or --resume's (a run resumes in place)."""
    if resume and out and Path(out).resolve() != Path(resume).resolve():
        message = "--out and --resume name different directories; a run resumes in place"
        raise ConfigError("out", message)
    if resume and overwrite:
        message = "--overwrite with --resume: a resumed experiment keeps its files"
        raise ConfigError("overwrite", message)
    if not (out or resume):
        raise ConfigError("out", "--out is required")
    return Path(out or resume)


def run_experiment(
    config: RetrainConfig,
    tasks: TaskSettings,
    out: str | None,
    resume: str | None = None,
    overwrite: bool = False,
    flags: dict | None = None,
    record: dict | None = None,
    command: str = "",
    stop: Stop | None = None,
) -> list[dict]:
    """The whole experiment of retrain.py into `out` (or on from `resume`, whose config.json is
    `record`): checks, the task's set-up (DNN_1), the loop, each round saved as it ends, and the
    table printed. `flags`: the settings to record. A signal in `stop` ends it at the next
    host-side point (`Interrupted`), keeping every finished round."""
    path = experiment_path(out, resume, overwrite)
    emitters = [
        (config.emitter, config.emitter_params, "emitter_params"),
        (config.probe_emitter, config.probe_emitter_params, "probe_emitter_params"),
    ]
    retrain_tasks.check_emitter_params(tasks, emitters)
    retrain_tasks.check_files(tasks)
    if not resume:
        RunDir.check_free(path, overwrite)  # refused now, not after DNN_1's training

    def stop_if_asked(where: str) -> None:
        if stop:
            raise Interrupted(stop.name, f"interrupted by {stop.name} {where}")

    def log(msg: str) -> None:
        stop_if_asked(f"in the middle of a round; finished rounds are in {path}")
        print(msg, flush=True)

    task, encoding, dnn1 = retrain_tasks.setup(tasks, log)
    resumed, earlier = load_resume(path, config, task) if resume else (None, 0.0)
    stop_if_asked("during start-up; nothing was written")
    run = RunDir.existing(path) if resumed else RunDir.create(path, overwrite)
    settings = settings_record(record, flags or {}, encoding, command, config.iterations)
    run.write_json("config.json", settings)
    exp = ExperimentDir(run, settings, config.thresholds, config.emitter, earlier_seconds=earlier)
    exp.rows = list(resumed.rows) if resumed else []
    verb = "resuming" if resumed else "retraining"
    print(
        f"{verb} in {run.path}: {config.iterations} rounds, {config.runs_per_iteration} runs "
        f"x {config.generations} generations per network"
        + (f" ({len(exp.rows)} networks done)" if resumed else ""),
        flush=True,
    )
    key = jax.random.key(tasks.seed)
    retrain.retrain(task, encoding, config, dnn1, key, log=log, on_round=exp.save_round,
                    on_trained=exp.save_network, resume=resumed)  # fmt: skip
    print(retrain_report.markdown_table(exp.rows, config.thresholds), end="")
    chart = (
        ", confidence.png" if plots.available() else f" (no confidence.png: {plots.INSTALL_HINT})"
    )
    print(f"wrote {run.path}/retrain.json, retrain.md{chart}")
    print(json.dumps({"out": str(run.path), "rounds": len(exp.rows)}))
    return exp.rows
