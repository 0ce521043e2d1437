"""One-line errors for bad input, and the entry-point wrapper that prints them."""

from __future__ import annotations

import sys
from collections.abc import Callable


class SlamError(ValueError):
    """Bad input: the message is one line that names the problem and where it is."""


class ConfigError(SlamError):
    """A recipe YAML or command-line value is wrong."""


class DataError(SlamError):
    """A dataset row, column or file is wrong."""


EXIT_BAD_INPUT = 2


def first_line(err: BaseException) -> str:
    """The first line of an upstream exception's message (its type name when empty), for one-line errors."""
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


def first_line_and_cause(err: BaseException) -> str:
    """`first_line(err)`, then what it was raised from (`raise ... from cause`): its first line, and its last when it
    has more (`datasets` wraps a cast or JSON parse failure in "An error occurred while generating the dataset",
    whose cause says "Couldn't cast ... because column names don't match")."""
    text, cause = first_line(err), err.__cause__
    if cause is None:
        return text
    lines = str(cause).strip().splitlines() or [type(cause).__name__]
    return f"{text}: {lines[0]}" + (f" … {lines[-1].strip()}" if len(lines) > 1 else "")


def run_entry_point(main: Callable[[], object]) -> None:
    """Run a recipe's `main`; bad input exits with code 2 and a one-line `error: ...` on stderr, no traceback.
    `--help` is answered from the stored text when there is one (see `slam_recipes.recipe_help`)."""
    from slam_recipes.recipe_help import stored_help, wants_help

    if wants_help(sys.argv[1:]) and (text := stored_help(sys.argv[0], sys.argv[1:])) is not None:
        sys.stdout.write(text)
        sys.exit(0)
    try:
        main()
    except SlamError as err:
        message = " ".join(str(err).split())
        print(f"error: {message}", file=sys.stderr)
        sys.exit(EXIT_BAD_INPUT)
