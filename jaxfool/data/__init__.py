"""Datasets and label files."""
