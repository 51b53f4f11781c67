"""Adding a genome type, a model or an emitter is one class and one registry line each, from
outside the library: a toy of each, registered here, runs fool's library loop (and the run's
record re-scores), with nothing else in jaxfool told about them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import linen as nn
from flax import struct

from jaxfool import classifiers, runs
from jaxfool.search import archive, emitters, encodings, map_elites


# --- a toy genome: one gray level per image row ------------------------------------------------
@struct.dataclass
class RowRates:
    sigma: Any


@dataclass(frozen=True)
class RowsEncoding:
    """Genomes are float32 [H] row levels in [0, 1]; the image repeats each row across."""

    image_shape: tuple[int, int, int] = (28, 28, 1)
    sigma: float = 0.1

    @classmethod
    def from_settings(cls, image_shape, settings):
        del settings
        return cls(image_shape=tuple(image_shape))

    def init(self, key, n):
        return jax.random.uniform(key, (n, self.image_shape[0]))

    def express(self, genomes):
        h, w, c = self.image_shape
        rows = jnp.floor(genomes * 255.0).astype(jnp.uint8)
        return jnp.broadcast_to(rows[:, :, None, None], (genomes.shape[0], h, w, c))

    def default_rates(self):
        return RowRates(sigma=jnp.float32(self.sigma))

    def vary(self, key, parents_a, parents_b, generation, rates=None):
        del generation
        rates = self.default_rates() if rates is None else rates
        both = jnp.concatenate([parents_a, parents_b])
        return jnp.clip(both + rates.sigma * jax.random.normal(key, both.shape), 0.0, 1.0)

    def genes_of(self, genomes):
        return genomes

    def with_genes(self, genomes, genes):
        del genomes
        return genes

    def gene_mask(self, genomes):
        return jnp.ones(genomes.shape, jnp.float32)

    def partner_genes(self, a, b):
        del a
        return b

    def mutate_structure(self, key, genomes):
        del key
        return genomes

    def surrogate(self, genomes, genes, max_size):
        del genomes, max_size
        h, w, c = self.image_shape
        return jnp.broadcast_to(255.0 * genes[:, :, None, None], (genes.shape[0], h, w, c))

    def tuned(self, emitter):
        return {"gradient": {"step_min": 0.02, "step_max": 0.2}}.get(emitter, {})


# --- a toy model: a linear 4-class classifier on 28 x 28 gray images ---------------------------
class Linear(nn.Module):
    classes: int = 4

    @nn.compact
    def __call__(self, x):
        return nn.Dense(self.classes)(x.reshape(x.shape[0], -1) / 255.0 - 0.5)


@dataclass(frozen=True)
class LinearLogits:
    def __call__(self, params, images):
        return Linear().apply(params, images.astype(jnp.float32))


def build_linear(variables, mean):
    del mean
    labels = ("w", "x", "y", "z")
    return classifiers.Classifier("toy_linear", LinearLogits(), (28, 28, 1), labels), variables


def load_linear(path, mean):
    raise ValueError(f"{path}: the toy model has no weights files")


TOY_MODEL = classifiers.ModelSpec(
    name="toy_linear",
    description="a linear 4-class toy (random weights only)",
    image_shape=(28, 28, 1),
    default_weights=None,
    loader=load_linear,
    network=(Linear(), 28, 1),
    build=build_linear,
)


# --- a toy emitter: fresh random genomes, no parents -------------------------------------------
@struct.dataclass
class ResetParams:
    pass


@dataclass(frozen=True)
class UniformReset:
    encoding: Any

    def default_params(self):
        return ResetParams()

    def emit(self, key, archive, params, generation, n, context):
        del archive, params, generation, context
        return self.encoding.init(key, n)


@pytest.fixture
def registered():
    encodings.register("rows", RowsEncoding)
    classifiers.MODELS["toy_linear"] = TOY_MODEL  # the registry line a model file adds
    emitters.register("uniform_reset", UniformReset)
    yield
    encodings.ENCODINGS.pop("rows")
    classifiers.MODELS.pop("toy_linear")
    emitters.EMITTERS.pop("uniform_reset")


@pytest.mark.parametrize(
    "model, encoding, emitter",
    [
        ("lenet", "direct", "original:0.5,uniform_reset:0.5"),  # a new emitter
        ("lenet", "rows", "original:0.5,gradient:0.5"),  # a new genome, the built-in emitters
        ("toy_linear", "cppn", "isoline"),  # a new model
        ("toy_linear", "rows", "uniform_reset:0.5,isoline:0.5"),  # all three new
    ],
)
def test_a_toy_genome_model_and_emitter_run_in_the_library_loop(
    registered, tmp_path, model, encoding, emitter
):
    weights = "random" if model == "toy_linear" else None
    config = runs.RunConfig(
        model=model, weights=weights, encoding=encoding, population=20, emitter=emitter
    )
    loop = runs.LoopConfig(out=str(tmp_path / "run"), generations=3, log_every=3)
    summary = runs.drive(runs.start(config, loop, log=lambda m: None))
    assert summary["status"] == "completed" and summary["evaluations"] == 20 + 3 * 20
    assert summary["generations_completed"] == 3 and summary["classes"]
    result = runs.rescore.rescore(tmp_path / "run")  # its genome files read back as its type
    assert len(result.mismatches) == 0
    expected = {"lenet": 10, "toy_linear": 4}[model]
    assert len(result.elites) == expected


def test_the_toy_genome_is_varied_only_through_its_protocol(registered):
    """The gradient emitter moves the toy's genes uphill through the toy's own surrogate."""
    setup = runs.build(runs.RunConfig(encoding="rows", population=20, emitter="gradient"))
    evolution, params = setup.evolution, setup.params
    state = map_elites.init(evolution, params, jax.random.key(0))
    key = jax.random.key(1)
    cells = archive.select(state.archive, jax.random.split(key, 4)[0], 20)
    children = map_elites.emit(evolution, params, state.archive, key, state.generation)
    assert children.shape == (20, 28) and 0 <= float(children.min()) <= float(children.max()) <= 1
    after = np.asarray(map_elites.evaluate(evolution, params, children)[0])
    before = np.asarray(state.archive.log_prob)[np.asarray(cells)]
    assert np.mean(after[np.arange(20), np.asarray(cells)] > before) > 0.8
