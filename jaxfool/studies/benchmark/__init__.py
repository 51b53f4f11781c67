"""The benchmark: how fast jaxfool evolves, against the limits of the machine it runs on.

    cases       `Case` and the suites' tables (the data); `select` picks a suite's cases
    timing      best-of and interleaved timing, throughput probes, FLOPs, limits
    generation  whole generations beside the classifier alone, each stage (every emitter's
                `emit`), the NumPy baseline
    startup     fool.py's cold and warm start (the compilation cache)
    kinds       the device, one network, the renderer, the insert, R runs in one call;
                `run_case` measures any case into its JSON row

experiments/benchmark.py is its command line.
"""

from jaxfool.studies.benchmark.cases import (
    GPU_SUITES,
    SUITES,
    Case,
    custom_case,
    select,
    suite_cases,
)
from jaxfool.studies.benchmark.kinds import run_case, run_isolated

__all__ = [
    "GPU_SUITES",
    "SUITES",
    "Case",
    "custom_case",
    "run_case",
    "run_isolated",
    "select",
    "suite_cases",
]
