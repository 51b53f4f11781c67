"""Studies built on runs, each a library call that a thin script in experiments/ drives.

    transfer                        fooling images of one network scored by others
    retrain, retrain_tasks,         retraining with fooling images as an extra class (the loop,
    retrain_store, retrain_report   its tasks, its experiment directory, its report)
    compare_emitters                generations until every class passes, per emitter
    benchmark/                      the benchmark's cases (data) and its measuring
    numpy_baseline                  the per-individual NumPy loop the benchmark compares against

The modules are imported by name (`from jaxfool.studies import retrain`); this file imports none
of them, so a study loads only what it uses.
"""

__all__ = [
    "benchmark", "compare_emitters", "numpy_baseline", "retrain", "retrain_report",
    "retrain_store", "retrain_tasks", "transfer",
]  # fmt: skip
