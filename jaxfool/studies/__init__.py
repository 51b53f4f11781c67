"""Studies built on runs: transfer, retraining, benchmarks."""
