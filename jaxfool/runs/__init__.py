"""Runs: a fooling run's settings, its assembly, its loop and its directory.

    config.RunConfig / LoopConfig   what a run computes / how it is driven (validated once)
    setup.build(config, loop)       the one way to assemble a run: classifier, EvolutionConfig
    loop.start / drive              the run loop of experiments/fool.py, as a library
    store                           the run directory's files: elites, checkpoint, metrics, resume
    rescore.rescore                 re-render and re-score a run's elites, bit for bit
    presets                         the original code's settings and the paper's figures
"""

from jaxfool.runs import presets, store
from jaxfool.runs.config import LoopConfig, RunConfig, parse_classes
from jaxfool.runs.loop import Run, chunk_sizes, chunks, drive, start
from jaxfool.runs import rescore
from jaxfool.runs.rundir import RunDir
from jaxfool.runs.setup import Setup, build

__all__ = [
    "LoopConfig",
    "Run",
    "RunConfig",
    "RunDir",
    "Setup",
    "build",
    "chunk_sizes",
    "chunks",
    "drive",
    "parse_classes",
    "presets",
    "rescore",
    "start",
    "store",
]
