"""Package list only; everything else is in pyproject.toml.

pyproject's packages.find cannot add a package from another folder, so the shipped-data package
``peft_studio.resources`` (the top-level resources/ folder, mapped in pyproject's package-dir) is added here.
"""

from setuptools import find_packages, setup

setup(packages=[*find_packages(include=["peft_studio*"]), "peft_studio.resources"])
