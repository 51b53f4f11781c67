"""Packaging beside pyproject.toml, for what its tables cannot say: the repository's `models/`
folder (the shipped weights and their model cards) goes into the package as the data-only
`jaxfool.models`, so that an installed jaxfool finds them without the checkout
(`jaxfool.classifiers.protocol.shipped_file`)."""

from setuptools import find_namespace_packages, setup

setup(
    packages=[*find_namespace_packages(include=["jaxfool*"]), "jaxfool.models"],
    package_dir={"jaxfool.models": "models"},
)
