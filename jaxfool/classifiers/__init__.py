"""Classifiers: the model protocol and registry, scoring, preprocessing, networks and
weight readers."""
