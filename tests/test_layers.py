"""The layers import one way down (docs/architecture.md): checked on every module's imports, lazy ones too."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "encore"
DASK = ("dask", "distributed")

# layer -> the encore layers it may import (top-level modules: config, errors, schema; the command line,
# cli and __main__, imports anything)
MAY_IMPORT = {
    "core": {"core", "config", "errors"},
    "io": {"io", "config", "errors", "schema"},
    "dist": {"dist", "core", "config", "errors"},
    "report": {"report", "io", "config", "errors", "schema"},
    "job": {"job", "core", "dist", "io", "report", "config", "errors", "schema"},
    "config": {"errors"},
    "errors": set(),
    "schema": set(),
}
# Models that wrap a library (ALS: implicit; SANSA: sansa) import it inside fit only.
THIRD_PARTY_OF_CORE = {"numpy", "scipy", "numba", "implicit", "threadpoolctl", "sansa"}


def layer_of(path: Path) -> str:
    rel = path.relative_to(PACKAGE)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def imports(path: Path) -> set[str]:
    """Every module ``path`` imports, at any depth of the file (functions included)."""
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module)
            if node.module == "encore":
                found |= {f"encore.{alias.name}" for alias in node.names}
    return found


MODULES = sorted(p for p in PACKAGE.rglob("*.py") if layer_of(p) not in ("cli", "__init__", "__main__"))


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_each_module_imports_only_the_layers_below_it(path):
    layer = layer_of(path)
    used = {name.split(".")[1] for name in imports(path) if name.startswith("encore.")}
    assert used <= MAY_IMPORT[layer], f"{layer} may not import {sorted(used - MAY_IMPORT[layer])}"


@pytest.mark.parametrize("path", MODULES, ids=lambda p: str(p.relative_to(PACKAGE)))
def test_only_dist_imports_dask_and_core_only_numpy_scipy_numba(path):
    third = {name.split(".")[0] for name in imports(path)} - {"encore", "__future__"}
    if layer_of(path) != "dist":
        assert not third & set(DASK), f"{path.name} imports {sorted(third & set(DASK))}"
    if layer_of(path) == "core":
        import sys

        assert third - THIRD_PARTY_OF_CORE <= set(sys.stdlib_module_names), sorted(third - THIRD_PARTY_OF_CORE)


def test_the_rules_catch_a_violation(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("def f():\n    from encore.job import pipeline\n    import dask.dataframe\n")
    assert {"encore.job", "dask.dataframe"} <= imports(bad)


def test_import_encore_is_light_and_every_public_name_resolves():
    import subprocess
    import sys

    code = ("import sys, encore; heavy = {'numba', 'dask', 'distributed'} & set(sys.modules); "
            "assert not heavy, heavy; [getattr(encore, n) for n in encore.__all__]")
    subprocess.run([sys.executable, "-c", code], check=True, cwd=PACKAGE.parent)
