"""A recipe's `--help`, answered in a fraction of a second.

The training recipes' options include every `transformers.TrainingArguments` field, and importing that class costs
torch, transformers, accelerate and PEFT (about 7 s on a 2-core CPU). So the first `--help` of a recipe builds the
text the usual way (`configs.parse_recipe_args`) and stores it; the next ones print the stored text before anything
heavy is imported. The stored text is keyed on everything it is made from: the script and the rest of the command
line (a `--config` recipe sets the defaults shown, so its content counts too), this package's sources, the
installed versions of the libraries whose fields it lists and Python's version. The text is wrapped at HELP_WIDTH
columns whatever the terminal's width, so a resized terminal finds it stored too. `make install` stores the
training recipes' plain help once.

Stored under `$SLAM_RECIPES_CACHE` (default: `$XDG_CACHE_HOME/slam_recipes`, else `~/.cache/slam_recipes`).
"""

from __future__ import annotations

import hashlib
import os
import sys

from slam_recipes.files import atomic_write

HELP_FLAGS = ("-h", "--help")
HELP_WIDTH = 100  # columns the recipes' --help is wrapped at
KEPT_PER_SCRIPT = 8  # stored help texts kept per recipe script (one per command line and source version)
_LIBRARIES = ("transformers", "trl", "accelerate", "peft")


def wants_help(argv: list[str]) -> bool:
    return any(arg in HELP_FLAGS for arg in argv)


def cache_dir() -> str:
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.environ.get("SLAM_RECIPES_CACHE") or os.path.join(base, "slam_recipes")


def help_path(script: str, argv: list[str]) -> str:
    """Where the help text of `script` run with `argv`, as this installation would print it, is stored."""
    from importlib.metadata import PackageNotFoundError, version

    digest = hashlib.sha256(repr(argv).encode())
    package = os.path.dirname(os.path.abspath(__file__))
    config = [argv[i + 1] for i, arg in enumerate(argv[:-1]) if arg == "--config"]
    config += [arg.split("=", 1)[1] for arg in argv if arg.startswith("--config=")]
    sources = (
        [os.path.abspath(script)]
        + [path for path in config if os.path.isfile(path)]
        + sorted(
            os.path.join(folder, name)
            for folder, _, names in os.walk(package)
            for name in names
            if name.endswith(".py")
        )
    )
    for path in sources:
        digest.update(path.encode())
        with open(path, "rb") as f:
            digest.update(f.read())
    for library in _LIBRARIES:
        try:
            digest.update(f"{library}=={version(library)}".encode())
        except PackageNotFoundError:
            digest.update(f"{library} absent".encode())
    digest.update(sys.version.encode())
    name = os.path.splitext(os.path.basename(script))[0]
    return os.path.join(cache_dir(), "help", f"{name}-{digest.hexdigest()[:24]}.txt")


def stored_help(script: str, argv: list[str]) -> str | None:
    """The stored help text of `script` with `argv`, or None when it has not been built for this installation yet."""
    try:
        with open(help_path(script, argv)) as f:
            return f.read()
    except OSError:
        return None


def store_help(script: str, argv: list[str], text: str) -> None:
    """Keep `text` for the next `--help` with the same `argv` (written to a temporary name, then renamed: never
    half-written), and only the KEPT_PER_SCRIPT newest texts of the script: every change of the sources makes new
    ones. A cache that cannot be written (read-only home) is skipped."""
    path = help_path(script, argv)
    folder, prefix = os.path.dirname(path), os.path.basename(path).rsplit("-", 1)[0] + "-"
    try:
        os.makedirs(folder, exist_ok=True)
        with atomic_write(path) as f:
            f.write(text)
        stored = [
            os.path.join(folder, n)
            for n in os.listdir(folder)
            if n.startswith(prefix) and n.endswith(".txt") and "-" not in n[len(prefix) :]  # not `<name>-x-<digest>`
        ]
        for old in sorted(stored, key=os.path.getmtime, reverse=True)[KEPT_PER_SCRIPT:]:
            os.remove(old)
    except OSError:
        pass
