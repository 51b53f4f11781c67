"""A run's settings as two config dataclasses that validate themselves once.

`RunConfig` is what a run computes (config.json records it and `--resume` keeps it); `LoopConfig`
is how it is driven (may change when it resumes: the results do not depend on it). A bad value
raises `ConfigError` naming the field, which a script reports as its flag.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass

from jaxfool import classifiers
from jaxfool.base.errors import ConfigError
from jaxfool.classifiers import custom
from jaxfool.runs import emitter_text
from jaxfool.search.encodings import ENCODINGS


def _check(ok: bool, field: str, message: str) -> None:
    if not ok:
        raise ConfigError(field, message)


@dataclass(frozen=True)
class RunConfig:
    """What a run computes: config.json records it and `--resume` keeps it (defaults: the
    original code's; None: the original's value for the kind of model, see
    `presets.original_settings`)."""

    model: str = "lenet"
    weights: str | None = None
    mean: str | None = None
    encoding: str = "cppn"
    population: int | None = None
    initial_population: int | None = None
    seed: int = 0
    classes: str | None = None
    eval_chunk: int | None = None
    ten_crop: bool = True
    compute_dtype: str = "float32"
    direct_genes: str = "auto"
    mutation_rate: float = 0.1
    mutation_schedule: str = "constant"
    crossover_rate: float = 0.5
    sbx_equal_genes: str = "copy"
    cppn_coords: str = "raw"
    cppn_color: str = "hls"
    max_nodes: int = 64
    max_edges: int = 256
    dense_layers: int = 4
    dense_width: int = 16
    dense_input_scale: float = 4.0
    emitter: str = "original"
    emitter_params: str = ""
    models: str = ""  # an ensemble 'name[:weights[:mean]],...' (replaces model/weights/mean)
    ensemble_fitness: str = "mean"

    @property
    def model_name(self) -> str:
        """What the run evolved against: `model`, or "ensemble" with `models`."""
        return "ensemble" if self.models else self.model

    def __post_init__(self):
        if not custom.is_spec(self.model):  # your own model is checked when it loads
            models = tuple(classifiers.MODELS)
            _check(
                self.model in models, "model", f"{self.model!r}: choose one of {', '.join(models)}"
            )
        choices = {
            "compute_dtype": classifiers.COMPUTE_DTYPES,
            "encoding": tuple(ENCODINGS),
            "direct_genes": ("auto", "float32", "uint8"),
            "mutation_schedule": ("constant", "halving"),
            "sbx_equal_genes": ("copy", "half"),
            "cppn_coords": ("raw", "normalized"),
            "cppn_color": ("hls", "hsv"),
        }
        for name, allowed in choices.items():
            value = getattr(self, name)
            _check(value in allowed, name, f"{value!r}: choose one of {', '.join(allowed)}")
        pop = self.population
        _check(pop is None or (pop >= 2 and pop % 2 == 0), "population", "must be even, >= 2")
        ini = self.initial_population
        _check(ini is None or ini >= 1, "initial_population", "must be >= 1")
        _check(self.seed >= 0, "seed", "must be >= 0")
        _check(self.eval_chunk is None or self.eval_chunk >= 1, "eval_chunk", "must be >= 1")
        for name in ("mutation_rate", "crossover_rate"):
            _check(0.0 <= getattr(self, name) <= 1.0, name, "must be in [0, 1]")
        check_emitter_settings(self.emitter, self.emitter_params, 2 * 10**6)  # any population
        if self.models:
            try:
                refs = ensemble_refs(self.models)
            except ValueError as e:
                raise ConfigError("models", str(e)) from None
            _check(len(refs) >= 2, "models", "an ensemble needs at least two networks")
            for ref in refs:
                known = ref.name in classifiers.MODELS or custom.is_spec(ref.name)
                _check(known, "models", f"{ref.name!r}: not a model; see --model")
        _check(
            self.ensemble_fitness in classifiers.ENSEMBLE_FITNESS,
            "ensemble_fitness",
            f"{self.ensemble_fitness!r}: choose mean or min",
        )
        _check(self.max_nodes >= 1, "max_nodes", "must be >= 1")
        _check(self.max_edges >= 1, "max_edges", "must be >= 1")
        _check(self.dense_layers >= 1, "dense_layers", "must be >= 1")
        _check(self.dense_width >= 1, "dense_width", "must be >= 1")
        _check(self.dense_input_scale > 0, "dense_input_scale", "must be > 0")
        ten_crop = [name for name in classifiers.MODELS if classifiers.has_ten_crop(name)]
        _check(
            self.ten_crop or self.model in ten_crop or bool(self.models),
            "ten_crop",
            f"--noten_crop: only {' and '.join(ten_crop)} score 10 crops",
        )


@dataclass(frozen=True)
class LoopConfig:
    """How a run is driven (may change when it resumes; the results do not depend on it).

    generations: total to reach (None: the original's); log_every: generations per host call
    (a progress line, a metrics row); checkpoint_every: also checkpoint every this many
    (0: at the end only); overwrite: replace a previous run's files in `out`.
    """

    out: str | None = None
    generations: int | None = None
    log_every: int = 25
    checkpoint_every: int = 0
    overwrite: bool = False
    shard: bool = True

    def __post_init__(self):
        gens = self.generations
        _check(gens is None or gens >= 0, "generations", "must be >= 0")
        _check(self.log_every >= 1, "log_every", "must be >= 1")
        _check(self.checkpoint_every >= 0, "checkpoint_every", "must be >= 0")


def check_emitter_settings(
    spec: str, text: str, population: int, fields: tuple[str, str] = ("emitter", "emitter_params")
) -> None:
    """An `--emitter` spec (names and fractions) and its `--emitter_params` text, checked
    before any encoding exists; ConfigError naming fields[0] or fields[1]."""
    try:
        emitter_text.parse_spec(spec, population)
    except ValueError as e:
        raise ConfigError(fields[0], str(e)) from None
    try:
        emitter_text.parse_params(text, spec)
    except ValueError as e:
        raise ConfigError(fields[1], str(e)) from None


def ensemble_refs(models: str) -> list:
    """`--models` 'name[:weights[:mean]],...' -> a classifiers.ModelRef per member (ValueError
    for a malformed one)."""
    return [classifiers.parse_model_ref(t) for t in models.split(",")]


def replace_checked(config, **changes):
    """dataclasses.replace, with a wrong type also reported as the field's ConfigError."""
    for name, value in changes.items():
        if value is not None and not isinstance(value, (int, float, str, bool)):
            raise ConfigError(name, f"{value!r} is not a plain value")
    return dataclasses.replace(config, **changes)


def _class_range(part: str) -> range:
    """'7' -> range(7, 8); '7-9' -> range(7, 10). ValueError for anything else."""
    try:
        if "-" not in part[1:]:
            return range(int(part), int(part) + 1)
        lo, hi = part.split("-", 1)
        lo, hi = int(lo), int(hi)
    except ValueError:
        raise ValueError(f"{part!r} is not an index or a range a-b") from None
    if lo > hi:
        raise ValueError(f"{part!r}: empty range ({lo} > {hi})")
    return range(lo, hi + 1)


def parse_classes(text: str | None, num_classes: int) -> tuple[int, ...]:
    """'0,3,7-9' -> (0, 3, 7, 8, 9); None or blank -> all classes. Bad lists raise ValueError."""
    if text is None or not text.strip():
        return tuple(range(num_classes))
    classes: list[int] = []
    for part in text.split(","):
        classes.extend(_class_range(part.strip()))
    bad = [c for c in classes if not 0 <= c < num_classes]
    if bad:
        raise ValueError(f"{bad} outside 0..{num_classes - 1}")
    if len(set(classes)) != len(classes):
        raise ValueError("an index appears twice")
    return tuple(classes)
