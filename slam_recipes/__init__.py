"""slam-recipes: train a speech language model the Slamming way (one GPU, one day) with the Hugging Face stack.

Importing the package is cheap: the names below are loaded from their modules on first use (PEP 562), so a recipe's
`--help` or a configuration check does not pay for torch, transformers and TRL. `attn_implementation:
sdpa_varlen` is registered with transformers when a model asks for it (`slam_recipes.modeling.unit_lm`), or by importing
`slam_recipes.modeling.attention`.
"""

from __future__ import annotations

import importlib

__version__ = "0.1.0"

_EXPORTS = {
    "configs": ("DataArguments", "parse_recipe_args"),
    "data.packing": ("build_collator", "check_packing", "pack"),
    "data.sources": ("build_pretraining_datasets", "load_unit_datasets"),
    "errors": ("ConfigError", "DataError", "SlamError"),
    "modeling.unit_lm": (
        "build_unit_lm",
        "check_vocab",
        "count_parameters",
        "flops_per_token",
        "load_or_build_tokenizer",
    ),
    "training.arguments": ("ModelArguments", "PretrainConfig", "PretrainModelArguments", "TimeBudgetArguments"),
    "training.callbacks": (
        "CALLBACKS",
        "BudgetSchedule",
        "TimeBudgetCallback",
        "build_callbacks",
        "parse_time_budget",
    ),
    "training.trainer": ("SlamTrainerMixin", "UnitLMTrainer"),
    "units": ("build_unit_tokenizer",),
}
_WHERE = {name: module for module, names in _EXPORTS.items() for name in names}
__all__ = sorted(_WHERE)


def __getattr__(name: str):
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'slam_recipes' has no attribute {name!r}")
    value = getattr(importlib.import_module(f"slam_recipes.{module}"), name)
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted(set(globals()) | set(__all__))
