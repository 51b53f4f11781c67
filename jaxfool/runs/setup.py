"""One way to assemble a run from its settings: `build(config, loop) -> Setup`.

    RunConfig --load the classifier (or ensemble)--> classifier, params
              --the original's defaults for its image size--> population, eval chunk, generations
              --the encoding registry, the emitter text--> EvolutionConfig, emitter Params

Every caller that needs a run's classifier and evolution settings (the run loop, rescore, the
benchmarks, the emitter comparison) goes through `build`, so they cannot drift apart.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from jaxfool.base.errors import ConfigError
from jaxfool.base.npz import WeightsFileError
from jaxfool.classifiers import registry
from jaxfool.classifiers.ensemble import ensemble
from jaxfool.runs import emitter_text, presets
from jaxfool.runs.config import (
    TEN_CROP_MODELS,
    LoopConfig,
    RunConfig,
    ensemble_refs,
    parse_classes,
)
from jaxfool.search import encodings
from jaxfool.search.map_elites import EvolutionConfig


@dataclass(frozen=True)
class Setup:
    """What a run computes with: its settings (defaults filled in), classifier and params,
    the static evolution settings and the emitters' runtime Params (None: their defaults)."""

    config: RunConfig
    loop: LoopConfig
    classifier: Any
    params: Any
    evolution: EvolutionConfig
    emitter_params: tuple | None


def build(config: RunConfig, loop: LoopConfig | None = None, mesh: Any = None) -> Setup:
    """Loads the classifier and assembles the evolution settings of `config`; ConfigError
    naming the setting that does not work."""
    clf, params = load_classifier(config)
    config, loop = with_original_defaults(config, loop or LoopConfig(), clf.image_shape)
    evolution = evolution_config(config, clf, mesh)
    custom = config.emitter != "original" or config.emitter_params
    eparams = (
        emitter_text.runtime_params(config.emitter, config.emitter_params, evolution)
        if custom
        else None
    )
    return Setup(config, loop, clf, params, evolution, eparams)


def load_classifier(config: RunConfig):
    """The classifier and params of `config` (10-crop setting applied; an ensemble with
    `models`); ConfigError(model / models)."""
    if config.models:
        return load_ensemble(config)
    try:
        clf, params = registry.load_classifier(
            config.model, config.weights, config.mean, config.compute_dtype
        )
    except (WeightsFileError, ValueError, OSError) as e:
        raise ConfigError("model", str(e)) from None
    if not config.ten_crop:
        clf = registry.with_center_crop(clf)
    return clf, params


def load_ensemble(config: RunConfig):
    """The `models` of `config` as one classifier (`classifiers.ensemble`); ConfigError(models)."""
    refs = ensemble_refs(config.models)
    members = []
    for ref in refs:
        try:
            clf, params = registry.load_classifier(
                ref.name, ref.weights, ref.mean, config.compute_dtype
            )
            if not config.ten_crop and ref.name in TEN_CROP_MODELS:
                clf = registry.with_center_crop(clf)
        except (WeightsFileError, ValueError, OSError) as e:
            raise ConfigError("models", f"{ref.label()}: {e}") from None
        members.append((clf, params))
    try:
        return ensemble(members, config.ensemble_fitness, [r.label() for r in refs])
    except ValueError as e:
        raise ConfigError("models", str(e)) from None


def with_original_defaults(config: RunConfig, loop: LoopConfig, image_shape):
    """Fills the settings left None with the original's for images of `image_shape`."""
    defaults = presets.original_settings(image_shape, config.encoding)
    config = dataclasses.replace(
        config,
        population=config.population or defaults["population"],
        eval_chunk=config.eval_chunk or defaults["eval_chunk"],
    )
    if config.initial_population is None:
        config = dataclasses.replace(config, initial_population=config.population)
    if loop.generations is None:
        loop = dataclasses.replace(loop, generations=defaults["generations"])
    return config, loop


def build_encoding(config: RunConfig, image_shape):
    """The genome encoding of `config` for images of `image_shape` (the encoding registry)."""
    try:
        return encodings.build(config.encoding, image_shape, dataclasses.asdict(config))
    except ValueError as e:
        raise ConfigError("encoding", str(e)) from None


def evolution_config(config: RunConfig, clf, mesh=None) -> EvolutionConfig:
    """The static evolution settings of a run (config's defaults already filled in)."""
    try:
        classes = parse_classes(config.classes, clf.num_classes)
    except ValueError as e:
        raise ConfigError("classes", str(e)) from None
    encoding = build_encoding(config, clf.image_shape)
    return search_config(
        encoding, clf, classes, config.population, config.emitter, config.emitter_params,
        config.initial_population, config.eval_chunk, mesh,
    )  # fmt: skip


def search_config(
    encoding: Any,
    classifier: Any,
    classes: tuple[int, ...],
    population: int,
    emitter: str = "original",
    emitter_params: str = "",
    initial_population: int | None = None,
    eval_chunk: int | None = None,
    mesh: Any = None,
) -> EvolutionConfig:
    """EvolutionConfig from an encoding, a classifier, the archive's classes and the emitter
    texts (`--emitter`, `--emitter_params`, checked against this encoding's emitters);
    ConfigError(emitter / emitter_params)."""
    try:
        shares = emitter_text.build_emitters(emitter, encoding, population)
    except ValueError as e:
        raise ConfigError("emitter", str(e)) from None
    try:  # the fields of this encoding's Params (the original emitter's differ by encoding)
        emitter_text.parse_params(emitter_params, emitter, encoding)
    except ValueError as e:
        raise ConfigError("emitter_params", str(e)) from None
    return EvolutionConfig(
        encoding=encoding,
        classifier=classifier,
        classes=tuple(classes),
        population=population,
        initial_population=initial_population or population,
        eval_chunk=eval_chunk,
        mesh=mesh,
        emitters=shares,
    )
