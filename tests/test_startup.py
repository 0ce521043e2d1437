"""Start-up cost: importing the package, and every recipe's `--help`, must not pay for torch, transformers and TRL.

Each check runs a fresh interpreter with `python -X importtime`, which lists every module the process imported: the
assertion is on what was imported, not on a time (times belong to `make bench`)."""

import glob
import os
import subprocess
import sys

import pytest
from conftest import REPO

HEAVY = ("torch", "transformers", "trl", "datasets", "accelerate", "peft")
RECIPES = sorted(glob.glob(os.path.join(REPO, "recipes", "*.py")))


def imported_modules(*args: str, env: dict | None = None) -> tuple[subprocess.CompletedProcess, set[str]]:
    result = subprocess.run(
        [sys.executable, "-X", "importtime", *args],
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=300,
        env={**os.environ, **(env or {})},
    )
    modules = {
        line.rsplit("|", 1)[1].strip()
        for line in result.stderr.splitlines()
        if line.startswith("import time:") and "|" in line
    }
    return result, modules


def heavy(modules: set[str]) -> list[str]:
    return sorted(m for m in modules if m.split(".")[0] in HEAVY)


@pytest.mark.parametrize("module", ["slam_recipes", "slam_recipes.errors", "slam_recipes.configs"])
def test_importing_the_package_and_its_configs_is_light(module):
    result, modules = imported_modules("-c", f"import {module}")
    assert result.returncode == 0, result.stderr[-2000:]
    assert module in modules and heavy(modules) == []


def test_package_names_load_on_first_use():
    code = (
        "import slam_recipes, sys; before = 'slam_recipes.modeling.unit_lm' in sys.modules; f = slam_recipes.build_unit_lm; "
        "print(before, f.__module__, 'torch' in sys.modules)"
    )
    result, _ = imported_modules("-c", code)
    assert result.stdout.split() == ["False", "slam_recipes.modeling.unit_lm", "False"], result.stderr[
        -2000:
    ]  # torch: at build
    result, _ = imported_modules("-c", "import slam_recipes; slam_recipes.no_such_name")
    assert "has no attribute 'no_such_name'" in result.stderr


def test_every_recipe_answers_help_without_heavy_imports(tmp_path):
    """The first --help of a training recipe builds its text (TrainingArguments: heavy) and stores it; every later
    --help imports none of the heavy libraries, and every other recipe's first one neither torch nor transformers.
    The stored text is the text."""
    env = {"SLAM_RECIPES_CACHE": str(tmp_path / "cache")}
    for script in RECIPES:
        name = os.path.basename(script)
        first, first_modules = imported_modules(script, "--help", env=env)
        assert first.returncode == 0 and first.stdout.startswith("usage:"), (name, first.stderr[-2000:])
        again, modules = imported_modules(script, "--help", env=env)
        assert again.returncode == 0 and again.stdout == first.stdout, name
        assert heavy(modules) == [], (name, heavy(modules)[:5])
        if name in ("pretrain.py", "dpo.py"):
            assert (
                "--time_budget" in first.stdout
                and "--learning_rate" in first.stdout
                and "--bf16_native_only" in first.stdout
            )
            assert "transformers" in first_modules  # built the slow way the first time
        else:  # the others are answered without torch or transformers the first time too (TRL's parser is light)
            assert not {"torch", "transformers"} & first_modules, name


def test_stored_help_follows_what_it_is_made_from(tmp_path, monkeypatch):
    """A different command line, recipe file content or script gets its own text, not a stale one; a different
    terminal width finds the same text, which is wrapped at a fixed width."""
    from slam_recipes import recipe_help

    monkeypatch.setenv("SLAM_RECIPES_CACHE", str(tmp_path / "cache"))
    script, recipe = tmp_path / "recipe.py", tmp_path / "r.yaml"
    script.write_text("print('v1')\n")
    recipe.write_text("learning_rate: 0.1\n")
    argv = ["--config", str(recipe), "--help"]
    recipe_help.store_help(str(script), argv, "usage: v1\n")
    assert recipe_help.stored_help(str(script), argv) == "usage: v1\n"
    assert recipe_help.stored_help(str(script), ["--help"]) is None
    monkeypatch.setenv("COLUMNS", "61")
    assert recipe_help.stored_help(str(script), argv) == "usage: v1\n"
    monkeypatch.delenv("COLUMNS")
    recipe.write_text("learning_rate: 0.2\n")  # a recipe's values are the defaults --help shows
    assert recipe_help.stored_help(str(script), argv) is None
    recipe.write_text("learning_rate: 0.1\n")
    script.write_text("print('v2')\n")
    assert recipe_help.stored_help(str(script), argv) is None


def test_help_is_wrapped_at_a_fixed_width(tmp_path, monkeypatch, capsys):
    """The stored text serves every terminal, so it is the same whatever `COLUMNS` says, and no wider than
    HELP_WIDTH (but for an option's own names and metavars, which argparse never breaks)."""
    from slam_recipes.configs import EvalArguments, parse_recipe_args
    from slam_recipes.recipe_help import HELP_WIDTH

    monkeypatch.setenv("SLAM_RECIPES_CACHE", str(tmp_path / "cache"))
    monkeypatch.setattr(sys, "argv", [os.path.join(REPO, "recipes", "evaluate.py"), "--help"])
    texts = []
    for columns in ("61", "200"):
        monkeypatch.setenv("COLUMNS", columns)
        with pytest.raises(SystemExit) as stopped:
            parse_recipe_args((EvalArguments,))
        assert stopped.value.code == 0
        texts.append(capsys.readouterr().out)
    assert texts[0] == texts[1] and "--max_pairs" in texts[0]
    wide = [line for line in texts[0].splitlines() if len(line) > HELP_WIDTH]
    assert all(line.startswith("  --") for line in wide), wide


def test_only_the_newest_help_texts_of_a_script_are_kept(tmp_path, monkeypatch):
    """Each command line (and each version of the sources) stores its own text; a script keeps its newest
    KEPT_PER_SCRIPT, and another script's texts are not touched."""
    from slam_recipes import recipe_help

    monkeypatch.setenv("SLAM_RECIPES_CACHE", str(tmp_path / "cache"))
    script, other = tmp_path / "recipe.py", tmp_path / "other.py"
    script.write_text("print('v1')\n")
    other.write_text("print('other')\n")
    recipe_help.store_help(str(other), ["--help"], "other\n")
    runs = [["--seed", str(i), "--help"] for i in range(recipe_help.KEPT_PER_SCRIPT + 3)]
    for i, argv in enumerate(runs):
        recipe_help.store_help(str(script), argv, f"text {i}\n")
        path = recipe_help.help_path(str(script), argv)
        os.utime(path, (1_000_000 + i, 1_000_000 + i))  # distinct ages, oldest first
    kept = [i for i, argv in enumerate(runs) if recipe_help.stored_help(str(script), argv) is not None]
    assert kept == list(range(3, len(runs)))
    assert recipe_help.stored_help(str(other), ["--help"]) == "other\n"
