"""Flax ports of the classifiers the paper attacks."""
