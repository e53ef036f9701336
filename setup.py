"""Packages are found, never listed: a new folder under controller/, agent/ or inventory/ ships by itself.

The three source trees install as crashfleet.controller, crashfleet.agent and crashfleet.inventory
(package-dir), so setuptools' own discovery, which names packages after their folders, cannot find
them under those names; this does, folders without __init__.py (agent/bt) included. Their data
files are declared by pattern in pyproject.toml; tests/packaging checks the built wheel against git.
"""

from setuptools import find_namespace_packages, setup

ROOTS = ("controller", "agent", "inventory")

packages = find_namespace_packages(
    include=[*ROOTS, *(f"{root}.*" for root in ROOTS)], exclude=["*.__pycache__", "*.__pycache__.*"]
)
setup(
    packages=[f"crashfleet.{name}" for name in packages],
    package_dir={f"crashfleet.{root}": root for root in ROOTS},
)
