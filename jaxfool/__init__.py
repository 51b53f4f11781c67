"""jaxfool: evolve fooling images against image classifiers, on accelerators.

A JAX re-implementation of Nguyen, Yosinski & Clune, "Deep Neural Networks are Easily Fooled"
(CVPR 2015). Every stage of a generation (select, vary, express, score, insert) is a pure
function over arrays; see `jaxfool.search.map_elites` for how they compose.
"""

__version__ = "0.1.0"
