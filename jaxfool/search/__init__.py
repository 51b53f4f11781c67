"""Search: the MAP-Elites archive and generation, genome encodings and emitters.

    archive        one elite per class cell; insert (each child competes in every cell), select
    map_elites     EvolutionConfig, init / step / ask / tell / run / run_many: one generation
                   (emit -> express -> score -> insert) as a pure function, many per host call
    encodings/     genome types (direct pixels, CPPN) behind one protocol, and their registry
    emitters/      how children are made (original, isoline, gradient), and their registry
    operators      SBX crossover and polynomial mutation, as the original code draws them
    gradient_ascent  the paper's other method: one image per class by gradient ascent

The search uses only the classifier protocol and scoring, never a concrete model.
"""

from jaxfool.search import archive, emitters, encodings, map_elites
from jaxfool.search.map_elites import (
    EvolutionConfig,
    EvolutionState,
    ask,
    init,
    run,
    run_keys,
    run_many,
    step,
    tell,
)

__all__ = [
    "EvolutionConfig",
    "EvolutionState",
    "archive",
    "ask",
    "emitters",
    "encodings",
    "init",
    "map_elites",
    "run",
    "run_keys",
    "run_many",
    "step",
    "tell",
]
