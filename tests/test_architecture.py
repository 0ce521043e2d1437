"""The library's layers (docs/architecture.md): every import of one part of `slam_recipes` from another points down,
including imports made inside functions, and the library never imports the speed harness or the recipes."""

import ast
import os

import pytest
from conftest import REPO

LIBRARY = os.path.join(REPO, "slam_recipes")
BASE = {"errors", "units", "precision", "recipe_help", "configs", "files"}
ALLOWED = {  # part -> the parts it may import (besides itself); docs/architecture.md's table
    "base": set(),
    "audio": {"base"},
    "modeling": {"base"},
    "data": {"base"},
    "evaluation": {"base", "audio", "modeling", "data"},
    "preference": {"base", "data", "evaluation"},
    "training": {"base", "audio", "modeling", "data", "evaluation", "preference"},
    "demo": {"base", "audio", "modeling", "data", "evaluation", "preference", "training"},
}
CONFIG_IMPORTS = {"slam_recipes.errors", "slam_recipes.recipe_help"}  # configs is a leaf: arguments only


def library_files() -> list[str]:
    return sorted(
        os.path.join(folder, name) for folder, _, names in os.walk(LIBRARY) for name in names if name.endswith(".py")
    )


def part_of(module: str) -> str:
    """`slam_recipes.training.hub` -> training; `slam_recipes.units` -> base."""
    parts = module.split(".")
    if len(parts) == 1:
        return "package"
    return "base" if parts[1] in BASE else parts[1]


def imports(path: str) -> list[tuple[int, str]]:
    """(line, module) of every import in the file, at any depth; `from a.b import c` gives a.b.c when c is a module
    of a.b, else a.b."""
    with open(path) as f:
        tree = ast.parse(f.read(), path)
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module:
            for alias in node.names:
                sub = os.path.join(REPO, *node.module.split("."), alias.name)
                is_module = os.path.isfile(sub + ".py") or os.path.isdir(sub)
                found.append((node.lineno, f"{node.module}.{alias.name}" if is_module else node.module))
    return found


def test_the_parts_are_the_documented_ones():
    folders = {name for name in os.listdir(LIBRARY) if os.path.isfile(os.path.join(LIBRARY, name, "__init__.py"))}
    modules = {name[:-3] for name in os.listdir(LIBRARY) if name.endswith(".py") and name != "__init__.py"}
    assert folders == set(ALLOWED) - {"base"}
    assert modules == BASE
    with open(os.path.join(REPO, "docs", "architecture.md")) as f:
        doc = f.read()
    assert all(f"`{name}/`" in doc for name in folders) and all(f"`{name}`" in doc for name in BASE)


@pytest.mark.parametrize("path", library_files(), ids=lambda p: os.path.relpath(p, LIBRARY))
def test_imports_point_down(path):
    relative = os.path.relpath(path, REPO)[: -len(".py")].replace(os.sep, ".")
    module = relative.removesuffix(".__init__")
    here = part_of(module)
    wrong = []
    for line, name in imports(path):
        top = name.split(".")[0]
        if top in ("bench", "recipes"):
            wrong.append(f"line {line}: {name} (the library never imports the speed harness or the recipes)")
        if top != "slam_recipes" or here == "package":
            continue
        there = part_of(name)
        if there == "package":
            wrong.append(f"line {line}: from slam_recipes import ... (import the module that defines the name)")
        elif there != here and there not in ALLOWED[here]:
            wrong.append(f"line {line}: {name} ({here} may not import {there})")
        elif module == "slam_recipes.configs" and name not in CONFIG_IMPORTS:
            wrong.append(f"line {line}: {name} (configs imports no domain code)")
    assert not wrong, f"{relative}: " + "; ".join(wrong)


def test_the_check_sees_an_upward_import(tmp_path):
    """The checker itself: an import inside a function, from a lower part to a higher one, is found."""
    source = tmp_path / "probe.py"
    source.write_text("def f():\n    from slam_recipes.training.records import PLOT_FILE\n")
    ((line, name),) = imports(str(source))
    assert (line, name) == (2, "slam_recipes.training.records")
    assert part_of(name) == "training" and "training" not in ALLOWED["data"]
